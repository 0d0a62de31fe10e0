"""Frame CNN family: a 2D CNN applied to every frame, then a recurrent cell over time (family CNN+RNN), or no
temporal model at all (the single-frame control, family static).

* `r18_lstm`: the DFEW code's "ResNet18-LSTM" exactly (Jiang et al., DFEW, ACM MM 2020; github.com/jiangxingxun/DFEW
  @ 7c1ba78, `DataDistributedParallel/makemodel/ResLSTM.py` `resnet18_LSTM`, built by `libs/Performer.py`; no
  licence file: facts only): a ResNet of **Bottleneck** units [2, 2, 2, 2] (stride in the first 1x1 conv, 2048-d per
  frame), max-pool k3 s2 without padding in ceil mode, AvgPool2d(4) (the final 4x4 grid at 112²; derived from the
  input here), a **3-layer** LSTM(2048 -> 256) and one Linear over **all** T outputs (T x 256 -> classes). 17,388,871
  params / 9.18 GMACs at 16x112² (fvcore 9.12 + the LSTM's 0.055, counted by our profile), measured from the
  official file (tests/data/dfew_reslstm.json: its key names and shapes, and its logits on a fixed input and
  fixed weights, which this port reproduces). Module names are the official ones, so a DFEW checkpoint
  (`model_state_dict`, 'module.' prefix) loads as saved (source `dfew`). Init: the trainer's `model_init`
  (kaiming_normal fan_in on every Conv2d / Linear, BN 1/0; the LSTM keeps PyTorch's). Protocol `dfew_code`
  (default) = the DFEW trainer, constant for constant (config/reslstm.yaml + main.py: Adam 1e-3 constant, batch 32,
  500 epochs, no augmentation, [0, 1] pixels, the `dfew` sampler, best epoch on test; methods/_baseline_recipes.py);
  `bench2d` = the harness's own frame-CNN recipe. Its published number is the DFEW paper's Table 4 row
  "Resnet18+LSTM 42.86 / 53.08" (time-interpolated 16-frame clips, metrics over the pooled predictions of the 5
  folds), row "ResNet18-LSTM (DFEW paper, TIM)" of results/reference/literature_added.csv.
* `r18_lstm512`: timm ResNet-18 (BasicBlock, 512-d) per frame + 1-layer LSTM(512), last state classified. 13.28 M
  params / 7.81 GMACs at 16x112² (fvcore counts the trunk's 7.778 G; the LSTM adds 0.03 G). It carries the tables'
  "ResNet18-LSTM" rows. Evidence for DFEW's "ResNet18-LSTM 51.32 / 63.85" (SVFAP Table 8 cites it as "ResNet-18+LSTM
  [13]", [13] = Former-DFER): it is Former-DFER's (Zhao & Liu, ACM MM 2021) Table 4 row "ResNet18+LSTM | DS |
  51.32 | 63.85 | 7.78", a baseline Former-DFER trained itself with its dynamic sampling and recipe (SGD 0.01, /10
  every 40 epochs, 100 epochs, batch 32, from scratch, 8 segments x 2 frames at 112²), not the DFEW paper's
  (42.86 / 53.08, above). Its 7.78 GFLOPs is a BasicBlock ResNet-18 over 16 frames at 112² (7.778 GMACs; the DFEW
  ResLSTM is 9.18). The hidden size, depth and readout of its RNN are not published (Former-DFER's repository has
  no code for these baselines); 1 layer of 512, last state, is the common CNN+RNN head and costs the 0.03 G the
  rounding leaves. Default protocol `former_dfer` (methods/_baseline_recipes.py: that recipe, its exact sampler);
  `bench2d` = the harness's own recipe. The FERV39k row (30.92 / 42.59) is the FERV39k paper's (its model zoo
  lists "R18-LSTM" at 132 M params, which no ResNet-18 + LSTM reaches: unexplained; code unreleased) and the MAFW
  row (28.08 / 39.38) the MAFW paper's (Table 4: batch 16, 224², Adam-style lr 1e-4 lowered x0.2 on plateaus, all
  frames of a clip); their networks' heads are not published either.
* `r18_gru`: the same trunk + 1-layer GRU(512), last state classified: the tables' "ResNet18-GRU", which is also
  Former-DFER's Table 4 row ("Resnet18+GRU | DS | 51.68 | 64.02 | 7.78") and its ablation baseline ("ResNet18 + GRU
  (Baseline)", Table 1). 12.76 M params / 7.80 GMACs at 16x112² (trunk 11,176,512 + GRU 1,575,936 + fc; the GRU
  adds 0.025 G, counted by our profile's recurrent handler; no official code exists for it, so the figure is the
  analytic one). Default protocol `former_dfer`; `bench2d`.
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
  carried by dynamics (`synthetic`) it must score clearly below the temporal methods. Protocols `bench2d`
  (default) and `former_dfer`, so it can be compared with the temporal models under either.

The BasicBlock networks train from scratch in the papers (FERV39k model zoo "Pre-trained: -"); an ImageNet
ResNet-18 (or VGG, torchvision or timm names) state_dict can initialise the trunk (`--init imagenet:resnet18.pth`).
`bench2d` is the harness's one recipe for the family (not a paper's: AdamW 1e-3, cosine with warm-up, 50 epochs,
crop + flip, ImageNet mean/std, label smoothing 0.1); the VGG models use it with a smaller synthetic entry (their
cost is ~6x a ResNet-18's).
"""

from __future__ import annotations

import timm
import torch
import torch.nn as nn
import torchvision

from bench.api import InputSpec, Paper, WeightsSource, register_method, register_variant
from bench.methods._baseline_recipes import (
    BENCH2D,
    convert_dfew,
    dfew_code,
    dfew_linear_init,
    former_dfer,
    with_protocols,
    with_synthetic,
)

DFEW_PAPER = Paper(authors="Jiang et al.", title="DFEW: A Large-Scale Database for Recognizing Dynamic Facial "
                   "Expressions in the Wild", venue="ACM MM", year=2020, code="github.com/jiangxingxun/DFEW")
FERV39K_PAPER = Paper(authors="Wang et al.", title="FERV39k: A Large-Scale Multi-Scene Dataset for Facial Expression "
                      "Recognition in Videos", venue="CVPR", year=2022, arxiv="2203.09463",
                      code="github.com/wangyanckxx/FERV39k")
FORMER_DFER_PAPER = Paper(authors="Zhao & Liu", title="Former-DFER: Dynamic Facial Expression Recognition Transformer "
                          "(its dynamic-sampling CNN+RNN baselines, Table 4)", venue="ACM MM", year=2021,
                          code="github.com/zengqunzhao/Former-DFER (no code for these baselines)")
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


class DFEWBottleneck(nn.Module):
    """The DFEW code's residual unit: 1x1 (stride here, Caffe-style) -> 3x3 -> 1x1 (x4 width), BN after each."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class DFEWResNetLSTM(nn.Module):
    """The DFEW code's "ResNet18-LSTM" (`makemodel/ResLSTM.py`, `resnet18_LSTM`): a ResNet of Bottleneck units
    [2, 2, 2, 2] (2048-d per frame), max-pool k3 s2 without padding in ceil mode, an average pool over the final
    grid, a 3-layer LSTM(2048 -> 256) and one Linear over all T outputs (T x 256 -> classes).

    Module names are the official ones (conv1, bn1, layer1-4, LSTM, output), so a DFEW checkpoint loads as saved.
    The official pool is AvgPool2d(4, stride 1), which is the final grid at 112²; here the kernel is the final grid
    at any size (the official forward hard-codes 112x112 inputs)."""

    def __init__(self, num_classes: int, frames: int, size: int, dfew_init: bool = True):
        super().__init__()
        self.frames, self.grid = frames, self.final_grid(size)
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True)
        self.layer1 = self._stage(64, 2)
        self.layer2 = self._stage(128, 2, stride=2)
        self.layer3 = self._stage(256, 2, stride=2)
        self.layer4 = self._stage(512, 2, stride=2)
        self.avgpool = nn.AvgPool2d(self.grid, stride=1)
        self.LSTM = nn.LSTM(2048, 256, num_layers=3, batch_first=True)  # noqa: N815 (the official name)
        self.output = nn.Linear(frames * 256, num_classes)
        if dfew_init:
            # ResLSTM's own init (normal(0, sqrt(2 / (k*k*out))) on convs, BN 1/0) is overwritten by the trainer's
            # `model_init`: kaiming_normal(fan_in, relu) on every Conv2d and Linear, BN2d 1/0; the LSTM keeps
            # PyTorch's default
            dfew_linear_init(self)

    @staticmethod
    def final_grid(size: int) -> int:
        """Side of layer4's output: conv1 (s2, p3), max-pool (k3, s2, ceil), three stride-2 stages."""
        side = (size + 2 * 3 - 7) // 2 + 1
        side = -(-(side - 3) // 2) + 1
        for _ in range(3):
            side = (side - 1) // 2 + 1
        if side < 1 or size < 19:
            raise ValueError(f"DFEW ResNet18-LSTM needs frames of at least 19 px, got {size}")
        return side

    def _stage(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, kernel_size=1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes * 4))
        units = [DFEWBottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        units += [DFEWBottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*units)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        x = self.maxpool(self.relu(self.bn1(self.conv1(frames_to_batch(x)))))
        x = self.avgpool(self.layer4(self.layer3(self.layer2(self.layer1(x)))))
        out, _ = self.LSTM(x.reshape(b, self.frames, 2048))
        return self.output(out.reshape(b, self.frames * 256))


def convert_imagenet_trunk(sd: dict, model: nn.Module, notes: dict) -> dict:
    """An ImageNet classifier state_dict (timm or torchvision names) -> the per-frame trunk; its classifier is
    dropped (notes['dropped'])."""
    head = ("fc.", "classifier.", "head.")
    notes["dropped"] = sorted(k for k in sd if k.startswith(head))
    return {f"trunk.{k}": v for k, v in sd.items() if not k.startswith(head)}


IMAGENET = WeightsSource("ImageNet classifier state_dict for the frame trunk (timm or torchvision names)",
                         "resnet18.pth", convert_imagenet_trunk)

DFEW_WEIGHTS = WeightsSource("a DFEW-repo ResLSTM checkpoint (its trainer's reslstm_fold{k}_epo{NNN}_UAR.._WAR...pth: "
                              "'model_state_dict', 'module.' prefix; 7 classes, [0,1] inputs): names match",
                              "reslstm_fold1_epo*.pth", convert_dfew)
FORMER_BASELINE_RECIPE = with_protocols("former_dfer", former_dfer=former_dfer(), bench2d=BENCH2D)
STATIC_RECIPE = with_protocols("bench2d", bench2d=BENCH2D, former_dfer=former_dfer())
# CPU-sized dfew_code entry for the DFEW ResLSTM (0.84 GMACs per 8x48² clip, ~r18_gru's cost): 10 epochs of batch 16
DFEW_RESLSTM_RECIPE = with_protocols("dfew_code", dfew_code=dfew_code("reslstm"), bench2d=BENCH2D)


@register_method("r18_lstm", family="CNN+RNN", input=InputSpec(16, 112), paper=DFEW_PAPER, recipe=DFEW_RESLSTM_RECIPE,
                 weights={"dfew": DFEW_WEIGHTS}, literature=("ResNet18-LSTM (DFEW paper, TIM)",),
                 test_views_note="dfew_code: 16 random sorted frames (train) / linspace (test), 1 view, epoch "
                                 "picked on test")
def r18_lstm(num_classes: int, frames: int, size: int, dfew_init: bool = True) -> nn.Module:
    """The DFEW code's ResNet18-LSTM: Bottleneck ResNet [2,2,2,2] + 3-layer LSTM(256) over all frames."""
    return DFEWResNetLSTM(num_classes, frames, size, dfew_init)


@register_method("r18_lstm512", family="CNN+RNN", input=InputSpec(16, 112), paper=FORMER_DFER_PAPER,
                 recipe=FORMER_BASELINE_RECIPE, weights={"imagenet": IMAGENET}, literature=("ResNet18-LSTM",),
                 test_views_note="former_dfer: 1 clip of 8 segment centres x 2 frames; epoch chosen on test WAR")
def r18_lstm512(num_classes: int, frames: int, size: int, hidden: int = 512, dropout: float = 0.0) -> nn.Module:
    """timm ResNet-18 per frame + 1-layer LSTM(512), last state: the tables' ResNet18-LSTM (Former-DFER's DS row)."""
    return FrameCNNRNN(num_classes, "resnet18", "lstm", hidden, dropout)


@register_method("static_r18", family="static", input=InputSpec(16, 112), paper=CONTROL, recipe=STATIC_RECIPE,
                 weights={"imagenet": IMAGENET}, literature=("ResNet-18 (frame-level)",))
def static_r18(num_classes: int, frames: int, size: int, dropout: float = 0.0) -> nn.Module:
    """Per-frame ResNet-18 with logits averaged over the clip: no temporal modelling."""
    return FrameAverage(num_classes, "resnet18", dropout)


@register_method("r18_gru", family="CNN+RNN", input=InputSpec(16, 112), paper=FORMER_DFER_PAPER,
                 recipe=FORMER_BASELINE_RECIPE, weights={"imagenet": IMAGENET}, literature=("ResNet18-GRU",),
                 test_views_note="former_dfer: 1 clip of 8 segment centres x 2 frames; epoch chosen on test WAR")
def r18_gru(num_classes: int, frames: int, size: int, hidden: int = 512, dropout: float = 0.0) -> nn.Module:
    """timm ResNet-18 per frame + 1-layer GRU(512), last state: the tables' ResNet18-GRU (Former-DFER's baseline)."""
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

# CPU-sized deviation (<= 10 min on 2 cores): 8 segments at 32x32 (the VGG minimum: five max-pools), 3 epochs
# of 420 clips. VGG-13+LSTM costs 2.82 GMACs per 8x32² clip (3.5x ResNet-18+LSTM at 8x48²), so the family's
# 48² / 10-epoch entry would take ~1 h; this run exercises the pipeline and is too short to learn much.
VGG_RECIPE = with_protocols("bench2d", bench2d=with_synthetic(BENCH2D, {"data": {"size": 32},
                                                                      "optim": {"lr": 5e-4, "warmup_epochs": 0.5},
                                                                      "train": {"epochs": 3}}))


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
