"""Frame CNN family: a 2D CNN applied to every frame, then a recurrent cell over time (family CNN+RNN), or no
temporal model at all (the single-frame control, family static).

* `r18_lstm`: timm ResNet-18 per frame + 1-layer LSTM(512), last state classified: the DFEW/FERV39k/MAFW
  dataset papers' CNN+RNN baseline (Jiang et al., DFEW, ACM MM 2020; code github.com/jiangxingxun/DFEW,
  `ResLSTM.py`). 13.28 M params / 7.78 GMACs at 16x112² (baselines.md §12 [meas]; the tables' 7.78 G leaves
  the LSTM's 0.03 G out because fvcore does not see aten::lstm, our profile counts it).
* `static_r18`: the same trunk with a linear classifier per frame and logits averaged over the clip. It sees
  exactly the frames a temporal method sees but cannot use their order, so on a dataset whose emotion is
  carried by dynamics (`synthetic`) it must score clearly below the temporal methods.

Both train from scratch in the dataset papers (FERV39k model zoo "Pre-trained: -"); an ImageNet ResNet-18
state_dict can initialise the trunk (`--init imagenet:resnet18.pth`).
"""

from __future__ import annotations

import timm
import torch
import torch.nn as nn

from bench.api import InputSpec, Paper, Recipe, WeightsSource, register_method

DFEW_PAPER = Paper(authors="Jiang et al.", title="DFEW: A Large-Scale Database for Recognizing Dynamic Facial "
                   "Expressions in the Wild", venue="ACM MM", year=2020, code="github.com/jiangxingxun/DFEW")
CONTROL = Paper(authors="dfer-bench", title="single-frame control: per-frame CNN, logits averaged over the clip",
                venue="this harness", year=2026)


def frames_to_batch(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B*T, C, H, W), frame-major within each clip."""
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w)


class FrameCNNRNN(nn.Module):
    """Per-frame 2D CNN features -> (B, T, D) -> recurrent cell -> last hidden state -> linear."""

    def __init__(self, num_classes: int, backbone: str = "resnet18", cell: str = "lstm", hidden: int = 512,
                 dropout: float = 0.0):
        super().__init__()
        self.trunk = timm.create_model(backbone, pretrained=False, num_classes=0)
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = rnn(self.trunk.num_features, hidden, num_layers=1, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.trunk(frames_to_batch(x)).view(x.shape[0], x.shape[2], -1)
        out, _ = self.rnn(feats)
        return self.fc(self.drop(out[:, -1]))


class FrameAverage(nn.Module):
    """2D CNN on every frame, linear classifier per frame, logits averaged over time."""

    def __init__(self, num_classes: int, backbone: str = "resnet18", dropout: float = 0.0):
        super().__init__()
        self.trunk = timm.create_model(backbone, pretrained=False, num_classes=0)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(self.trunk.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.fc(self.drop(self.trunk(frames_to_batch(x))))
        return logits.view(x.shape[0], x.shape[2], -1).mean(dim=1)


def convert_imagenet_trunk(sd: dict, model: nn.Module, notes: dict) -> dict:
    """An ImageNet classifier state_dict (timm or torchvision names) -> the per-frame trunk; its classifier is
    dropped (notes['dropped'])."""
    head = ("fc.", "classifier.", "head.")
    notes["dropped"] = sorted(k for k in sd if k.startswith(head))
    return {f"trunk.{k}": v for k, v in sd.items() if not k.startswith(head)}


IMAGENET = WeightsSource("ImageNet classifier state_dict for the frame trunk (timm or torchvision names)",
                         "resnet18.pth", convert_imagenet_trunk)

# One recipe for the family, so the control differs from the temporal models only in temporal modelling.
FRAME_CNN_RECIPE = Recipe(
    defaults={
        "data": {"sampler": "segment", "rrc_scale": [0.8, 1.0],
                 "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "warmup_epochs": 2},
        "train": {"epochs": 50, "batch_size": 32, "grad_clip": 5.0},
        "reg": {"label_smoothing": 0.1},
    },
    # CPU-sized deviation (<= 10 min on 2 cores): 8 segments at 48x48, 10 epochs of 420 clips.
    datasets={"synthetic": {"data": {"frames": 8, "size": 48, "rrc_scale": [0.85, 1.0]},
                            "optim": {"lr": 2e-3, "warmup_epochs": 1}, "train": {"epochs": 10, "batch_size": 16}}},
)


@register_method("r18_lstm", family="CNN+RNN", input=InputSpec(16, 112), paper=DFEW_PAPER, recipe=FRAME_CNN_RECIPE,
                 weights={"imagenet": IMAGENET}, literature=("ResNet18-LSTM",))
def r18_lstm(num_classes: int, frames: int, size: int, hidden: int = 512, dropout: float = 0.0) -> nn.Module:
    """timm ResNet-18 per frame + 1-layer LSTM(512) over time."""
    return FrameCNNRNN(num_classes, "resnet18", "lstm", hidden, dropout)


@register_method("static_r18", family="static", input=InputSpec(16, 112), paper=CONTROL, recipe=FRAME_CNN_RECIPE,
                 weights={"imagenet": IMAGENET}, literature=("ResNet-18 (frame-level)",))
def static_r18(num_classes: int, frames: int, size: int, dropout: float = 0.0) -> nn.Module:
    """Per-frame ResNet-18 with logits averaged over the clip: no temporal modelling."""
    return FrameAverage(num_classes, "resnet18", dropout)
