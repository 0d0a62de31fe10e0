"""Frame CNN family: a 2D CNN applied to every frame, then a recurrent cell over time (family CNN+RNN), or no
temporal model at all (the single-frame control, family static).

* `r18_lstm`: timm ResNet-18 per frame + 1-layer LSTM(512), last state classified: the DFEW/FERV39k/MAFW
  dataset papers' CNN+RNN baseline (Jiang et al., DFEW, ACM MM 2020; code github.com/jiangxingxun/DFEW,
  `ResLSTM.py`). 13.28 M params / 7.78 GMACs at 16x112² (baselines.md §12 [meas]; the tables' 7.78 G leaves
  the LSTM's 0.03 G out because fvcore does not see aten::lstm, our profile counts it).
* `r18_gru`: the same trunk + 1-layer GRU(512), last state classified (the tables' "ResNet18-GRU", DFEW paper).
  12.76 M params / 7.80 GMACs at 16x112² (trunk 11,176,512 + GRU 1,575,936 + fc; the GRU adds 0.025 G, counted
  by our profile's recurrent handler; no official code exists for it, so the figure is the analytic one).
* `vgg13_lstm` / `vgg16_lstm`: torchvision VGG-13/16 per frame (conv stages, the 7x7 adaptive pool, fc6 4096 and
  fc7 4096 with their ReLU + dropout 0.5, fc8 removed) + 1-layer LSTM(4096 -> 256), last state classified: the
  FERV39k paper's "VGG13-LSTM" / "VGG16-LSTM" (Wang et al., CVPR 2022; no code released; its model zoo lists
  133 M / 138 M). Measured at 16x112² (notes cnn3d §5, tv vgg): 133.41 M / 46.72 GMACs and 138.72 M /
  63.37 GMACs (LSTM included; the batch-norm default adds 0.006 M and ~0.1 G). Head choice (`head` switch):
  two heads give the zoo's sizes, fc6+fc7 -> LSTM(256) (133.41 / 138.72 M) and fc6 only -> LSTM(1024)
  (133.16 / 138.47 M, variants `vgg13_lstm.fc6` / `vgg16_lstm.fc6`). We default to fc6+fc7 + LSTM(256): the
  same zoo's "VGG13 128 M" / "VGG16 134 M" rows are the complete 7-class torchvision VGGs (128.98 / 134.29 M),
  so the LSTM row most plausibly keeps that network and replaces only its last classifier layer (fc8) by the
  recurrent head; 256 hidden units is also the LRCN-style CNN+LSTM default. timm's vgg13_bn pre-logits +
  LSTM(512) (baselines.md §12: 138.4 M) does not match the table. `bn=True` (default) uses torchvision's
  vgg*_bn (the zoo trains from scratch; a 13/16-layer plain VGG from scratch is fragile without batch norm,
  and the parameter count cannot tell the two apart); `bn=False` is the plain VGG. Minimum input 32 px (five
  max-pools); at 112² the adaptive pool replicates the 3x3 map to 7x7, so fc6 keeps its 25088 inputs.
* `static_r18`: the same trunk with a linear classifier per frame and logits averaged over the clip. It sees
  exactly the frames a temporal method sees but cannot use their order, so on a dataset whose emotion is
  carried by dynamics (`synthetic`) it must score clearly below the temporal methods.

All train from scratch in the dataset papers (FERV39k model zoo "Pre-trained: -"); an ImageNet ResNet-18 (or
VGG, torchvision or timm names) state_dict can initialise the trunk (`--init imagenet:resnet18.pth`). The
recipe is the harness's one recipe for the family (the dataset papers publish none for these rows); the VGG
models use it with a smaller synthetic entry (their cost is ~6x a ResNet-18's).
"""

from __future__ import annotations

import timm
import torch
import torch.nn as nn
import torchvision

from bench.api import InputSpec, Paper, Recipe, WeightsSource, register_method, register_variant

DFEW_PAPER = Paper(authors="Jiang et al.", title="DFEW: A Large-Scale Database for Recognizing Dynamic Facial "
                   "Expressions in the Wild", venue="ACM MM", year=2020, code="github.com/jiangxingxun/DFEW")
FERV39K_PAPER = Paper(authors="Wang et al.", title="FERV39k: A Large-Scale Multi-Scene Dataset for Facial Expression "
                      "Recognition in Videos", venue="CVPR", year=2022, arxiv="2203.09463",
                      code="github.com/wangyanckxx/FERV39k")
CONTROL = Paper(authors="dfer-bench", title="single-frame control: per-frame CNN, logits averaged over the clip",
                venue="this harness", year=2026)


def frames_to_batch(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B*T, C, H, W), frame-major within each clip."""
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w)


class FrameCNNRNN(nn.Module):
    """Per-frame 2D CNN features -> (B, T, D) -> recurrent cell -> last hidden state -> linear."""

    def __init__(self, num_classes: int, backbone: str = "resnet18", cell: str = "lstm", hidden: int = 512,
                 dropout: float = 0.0, trunk: nn.Module | None = None):
        super().__init__()
        # `trunk`: any per-frame feature module with `num_features` (the VGG trunk); default a timm backbone
        self.trunk = trunk if trunk is not None else timm.create_model(backbone, pretrained=False, num_classes=0)
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


@register_method("r18_gru", family="CNN+RNN", input=InputSpec(16, 112), paper=DFEW_PAPER, recipe=FRAME_CNN_RECIPE,
                 weights={"imagenet": IMAGENET}, literature=("ResNet18-GRU",))
def r18_gru(num_classes: int, frames: int, size: int, hidden: int = 512, dropout: float = 0.0) -> nn.Module:
    """timm ResNet-18 per frame + 1-layer GRU(512) over time."""
    return FrameCNNRNN(num_classes, "resnet18", "gru", hidden, dropout)


# ----------------------------------------------------------------------------------------------------------
# VGG + LSTM (FERV39k baselines)

_VGG_HIDDEN = {"fc7": 256, "fc6": 1024}  # the hidden size that gives the zoo's 133 M / 138 M with each head


class VGGTrunk(nn.Module):
    """torchvision VGG per frame up to fc7 (`head='fc7'`) or fc6 (`head='fc6'`): a 4096-d feature per frame.
    Module names are torchvision's (features.*, classifier.0 = fc6, classifier.3 = fc7)."""

    def __init__(self, depth: int, bn: bool, head: str, vgg_dropout: float):
        super().__init__()
        if head not in _VGG_HIDDEN:
            raise ValueError(f"VGG head must be one of {sorted(_VGG_HIDDEN)}, got {head!r}")
        name = f"vgg{depth}{'_bn' if bn else ''}"
        vgg = getattr(torchvision.models, name)(weights=None, dropout=vgg_dropout)
        self.features, self.avgpool = vgg.features, vgg.avgpool
        self.classifier = vgg.classifier[:6] if head == "fc7" else vgg.classifier[:3]
        self.num_features = 4096

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class VGGRNN(FrameCNNRNN):
    """Per-frame VGG 4096-d features -> (B, T, 4096) -> LSTM -> last hidden state -> linear."""

    def __init__(self, num_classes: int, depth: int, head: str, hidden: int, bn: bool, vgg_dropout: float,
                 dropout: float):
        super().__init__(num_classes, cell="lstm", hidden=hidden, dropout=dropout,
                         trunk=VGGTrunk(depth, bn, head, vgg_dropout))


def convert_imagenet_vgg(sd: dict, model: nn.Module, notes: dict) -> dict:
    """An ImageNet VGG state_dict -> the frame trunk. torchvision names (features.*, classifier.0/3/6) or timm
    names (features.*, pre_logits.fc1/fc2 as 7x7 / 1x1 convs, reshaped to Linear, head.fc). fc8 (classifier.6 /
    head.fc) is dropped, and fc7 too when the model's head stops at fc6 (notes['dropped'])."""
    own = model.state_dict()
    timm_names = {"pre_logits.fc1.": "classifier.0.", "pre_logits.fc2.": "classifier.3."}
    out, dropped = {}, []
    for k, v in sd.items():
        name = k
        for old, new in timm_names.items():
            if k.startswith(old):
                name = new + k[len(old):]
                if v.ndim == 4:  # timm ConvMlp: conv weights (out, in, kh, kw) == Linear over the flattened map
                    v = v.reshape(v.shape[0], -1)
        target = f"trunk.{name}"
        if name.startswith(("features.", "classifier.")) and (target in own or not name.startswith("classifier.")):
            out[target] = v
        else:
            dropped.append(k)
    notes["dropped"] = sorted(dropped)
    return out


IMAGENET_VGG = WeightsSource("ImageNet VGG classifier state_dict (torchvision or timm names); fc8 dropped",
                             "vgg13_bn.pth", convert_imagenet_vgg)

VGG_RECIPE = Recipe(
    defaults=FRAME_CNN_RECIPE.defaults,
    # CPU-sized deviation (<= 10 min on 2 cores): 8 segments at 32x32 (the VGG minimum: five max-pools), 3 epochs
    # of 420 clips. VGG-13+LSTM costs 2.82 GMACs per 8x32² clip (3.5x ResNet-18+LSTM at 8x48²), so the family's
    # 48² / 10-epoch entry would take ~1 h; this run exercises the pipeline and is too short to learn much.
    datasets={"synthetic": {"data": {"frames": 8, "size": 32, "rrc_scale": [0.85, 1.0]},
                            "optim": {"lr": 5e-4, "warmup_epochs": 0.5}, "train": {"epochs": 3, "batch_size": 16}}},
)


def _vgg_lstm(num_classes: int, depth: int, head: str, hidden: int | None, bn: bool, vgg_dropout: float,
              dropout: float) -> nn.Module:
    return VGGRNN(num_classes, depth, head, _VGG_HIDDEN.get(head, 256) if hidden is None else int(hidden), bn,
                  vgg_dropout, dropout)


@register_method("vgg13_lstm", family="CNN+RNN", input=InputSpec(16, 112), paper=FERV39K_PAPER, recipe=VGG_RECIPE,
                 weights={"imagenet": IMAGENET_VGG}, literature=("VGG13-LSTM",))
def vgg13_lstm(num_classes: int, frames: int, size: int, head: str = "fc7", hidden: int | None = None,
               bn: bool = True, vgg_dropout: float = 0.5, dropout: float = 0.0) -> nn.Module:
    """torchvision VGG-13 (bn) to fc7 per frame + LSTM(4096 -> 256) over time (FERV39k's VGG13-LSTM)."""
    return _vgg_lstm(num_classes, 13, head, hidden, bn, vgg_dropout, dropout)


@register_method("vgg16_lstm", family="CNN+RNN", input=InputSpec(16, 112), paper=FERV39K_PAPER, recipe=VGG_RECIPE,
                 weights={"imagenet": IMAGENET_VGG}, literature=("VGG16-LSTM",))
def vgg16_lstm(num_classes: int, frames: int, size: int, head: str = "fc7", hidden: int | None = None,
               bn: bool = True, vgg_dropout: float = 0.5, dropout: float = 0.0) -> nn.Module:
    """torchvision VGG-16 (bn) to fc7 per frame + LSTM(4096 -> 256) over time (FERV39k's VGG16-LSTM)."""
    return _vgg_lstm(num_classes, 16, head, hidden, bn, vgg_dropout, dropout)


for _depth in (13, 16):
    register_variant(f"vgg{_depth}_lstm.fc6", variant_of=f"vgg{_depth}_lstm",
                     description=f"VGG-{_depth} to fc6 only + LSTM(4096 -> 1024): the other head that gives the "
                                 f"FERV39k zoo's size", kwargs={"head": "fc6", "hidden": 1024})
