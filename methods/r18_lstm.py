"""ResNet-18 + LSTM (family: CNN+RNN): a timm ResNet-18 trunk per frame, an LSTM over time, the last state
classified. The DFEW/FERV39k/MAFW dataset papers' CNN+RNN baseline (13.3 M params, 7.8 GMACs at 16x112²)."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
import torch.nn as nn

from bench.api import InputSpec, Recipe, WeightsSource, register_method
from bench.weights import load_matching, load_state_dict_file


class FrameCNNRNN(nn.Module):
    """Per-frame 2D CNN features (B*T,C,H,W) -> (B,T,D) -> LSTM -> last hidden state -> linear."""

    def __init__(self, num_classes: int, backbone: str = "resnet18", hidden: int = 512, dropout: float = 0.0):
        super().__init__()
        self.trunk = timm.create_model(backbone, pretrained=False, num_classes=0)
        self.rnn = nn.LSTM(self.trunk.num_features, hidden, num_layers=1, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        feats = self.trunk(x.transpose(1, 2).reshape(b * t, c, h, w)).view(b, t, -1)
        out, _ = self.rnn(feats)
        return self.fc(self.drop(out[:, -1]))


def load_imagenet_trunk(model: nn.Module, path: Path) -> dict:
    """ImageNet ResNet-18 weights (a timm/torchvision state_dict) into the per-frame trunk; the fc is dropped."""
    return load_matching(model.trunk, {k: v for k, v in load_state_dict_file(path).items() if not k.startswith("fc.")})


# Shared with the static control (methods/static.py), so the control differs only in temporal modelling.
FRAME_CNN_RECIPE = Recipe(
    defaults={
        "data": {"frames": 16, "size": 112, "sampler": "segment", "rrc_scale": [0.8, 1.0],
                 "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "warmup_epochs": 2},
        "train": {"epochs": 50, "batch_size": 32, "grad_clip": 5.0},
        "reg": {"label_smoothing": 0.1},
    },
    # CPU-sized: 8 segments at 48x48, 10 epochs of 420 clips (~40 s/epoch on 2 cores). The LSTM needs ~5 epochs
    # before it starts to generalise (6 epochs: 13.8% UAR, 12 epochs: 30.0% on fold 1), so 10, not r3d18's 6.
    datasets={"synthetic": {"data": {"frames": 8, "size": 48, "rrc_scale": [0.85, 1.0]}, "optim": {"lr": 2e-3, "warmup_epochs": 1},
                            "train": {"epochs": 10, "batch_size": 16}}},
)


@register_method(
    "r18_lstm", family="CNN+RNN", input=InputSpec(16, 112), test_views="1 clip x 1 crop",
    paper="Jiang et al., DFEW (ACM MM 2020) ResNet-18+LSTM baseline",
    recipe=FRAME_CNN_RECIPE,
    weights={"imagenet": WeightsSource("ImageNet ResNet-18 state_dict for the frame trunk (timm or torchvision)",
                                       "resnet18.pth", load=load_imagenet_trunk)},
)
def r18_lstm(num_classes: int = 7, frames: int = 16, size: int = 112, hidden: int = 512, dropout: float = 0.0) -> nn.Module:
    """timm ResNet-18 per frame + 1-layer LSTM(512) over time."""
    return FrameCNNRNN(num_classes, "resnet18", hidden, dropout)
