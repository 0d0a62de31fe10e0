"""3D ResNet-18 (family: 3D CNN), in the variant DFER tables quote (Hara et al.) and in torchvision's variant.

`r3d18` is Hara, Kataoka & Satoh's network (github.com/kenshohara/3D-ResNets-PyTorch, `models/resnet.py`,
`generate_model(18)`): a 7x7x7 stem conv (stride 1,2,2) followed by a 3D max-pool (3, stride 2, padding 1), four
stages of BasicBlocks [2, 2, 2, 2] with 1x1x1 conv + BN shortcuts (`--resnet_shortcut B`, the repository's
default; `shortcut="A"`: the parameter-free zero-padded identity of its CVPR2018 branch's resnet-18-kinetics.pth),
global average pool, fc. 33.21 M params / 8.32 GMACs at 16x112². `r3d18_tv` is torchvision's `r3d_18` (Tran et
al.): a 3x7x7 stem without the max-pool, same params, 40.7 GMACs. The residual stages are torchvision's
`VideoResNet` blocks (BasicBlock, Conv3DSimple) in both.

Which network and recipe produced the row "3D ResNet-18 46.52 / 58.27, 8 GFLOPs" (DFEW) that every later table
quotes (SVFAP Table 8 "3D ResNet-18 [39]", [39] = Hara et al. CVPR 2018; IFDD's lineage):
* The row is Former-DFER's (Zhao & Liu, ACM MM 2021, Table 4: "3D Resnet18 [24] | DS | 46.52 | 58.27 | 8.32",
  [24] = Hara et al., "Can spatiotemporal 3D CNNs retrace the history of 2D CNNs and ImageNet?", CVPR 2018), one
  of the baselines Former-DFER trained itself with its dynamic sampling ("Our Former-DFER and baseline models are
  all trained by dynamic sampling"; the Awesome-DFER list marks it "3DR18#", # = the same dynamic sampling).
* It is not the DFEW paper's: DFEW (Jiang et al., ACM MM 2020) Table 4 has "3D Resnet18 [12] 44.73 / 54.98"
  ([12] = Hara et al., ICCV Workshops 2017, the same network family) on time-interpolated 16-frame clips, which
  Former-DFER copies as its "TI" row.
* Its 8.32 GFLOPs is Hara's network at 16x112² (8.32 GMACs, fvcore) and not torchvision's r3d_18 (40.7 G).
* The DFEW repository's code builds torchvision's r3d_18 (`r3d18_tv` here); its README's re-run (45.11 / 55.70,
  plain extracted frames, released per-fold weights) is that network under the DFEW trainer.
So `r3d18` (Hara) carries the "3D ResNet-18" literature row, and its default protocol is `former_dfer`, the recipe
that produced it (methods/_baseline_recipes.py: Former-DFER's trainer and sampling: SGD 0.01, /10 every 40 epochs,
100 epochs, batch 32, 8 segments x 2 frames at 112², random-sized crop + flip, [0, 1] pixels, best test WAR). The
FERV39k row (26.67 / 37.57, "3D-R18 33M" in the FERV39k model zoo) comes from the FERV39k paper, whose code and
recipe are unreleased: the same protocol is used there and the difference is unknown.

Protocols (`--protocol`): `former_dfer` (default for r3d18), `dfew_code` (the DFEW trainer, constant for constant:
methods/_baseline_recipes.py; default for r3d18_tv, whose network it builds), `bench3d` (this harness's own tuned
3D-CNN recipe, shared with r2plus1d18 / mc3_18 / c3d / i3d: AdamW, cosine, crop + flip, mean/std, smoothing 0.1).
`dfew_init=True` (set by `dfew_code`) re-draws the fc weight with kaiming_normal(fan_in) as the DFEW trainer does
for every nn.Linear / nn.Conv2d (the 3D convs keep their init).

Weights (`r3d18_tv` also takes `dfew`: the DFEW README's per-fold r3d_18 files as the DFEW trainer saves them,
'module.'-prefixed 'model_state_dict'): `kinetics400` = torchvision's R3D_18 Kinetics-400 state_dict (torchvision's names; for `r3d18` the 7x7x7
stem conv is reported as mismatched: its stem differs); `hara` = a 3D-ResNets-PyTorch checkpoint
({'epoch','arch','state_dict',...}: r3d18_K_200ep.pth, Kinetics-700, 700 classes; r3d18_KM_200ep.pth, 1039 classes;
or the CVPR2018 branch's resnet-18-kinetics.pth, 400 classes, DataParallel 'module.' prefix, shortcut A), renamed
to torchvision's layout (conv1/bn1 -> stem.0/stem.1, layerX.Y.conv1/bn1 -> conv1.0/conv1.1, conv2/bn2 ->
conv2.0/conv2.1); the fc of another class count is dropped (notes['dropped']). A shortcut-A file into a shortcut-B
model (or the reverse) is refused with the switch to set. The master branch's models were trained on [0, 1] frames
normalised with the Kinetics mean [0.4345, 0.4051, 0.3775] and std [0.2768, 0.2713, 0.2737] (`mean.py`, the default
`--mean_dataset kinetics --value_scale 1`): set data.mean/std to these when fine-tuning from them; the protocols here
train from scratch.
"""

from __future__ import annotations

import re

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.video.resnet import BasicBlock, Conv3DSimple, VideoResNet

from bench.api import InputSpec, Paper, WeightsSource, register_method
from bench.methods._baseline_recipes import (
    BENCH3D,
    convert_dfew,
    dfew_code,
    dfew_linear_init,
    former_dfer,
    with_protocols,
)

HARA = Paper(authors="Hara, Kataoka & Satoh", title="Can Spatiotemporal 3D CNNs Retrace the History of 2D CNNs and "
             "ImageNet?", venue="CVPR", year=2018, code="github.com/kenshohara/3D-ResNets-PyTorch")
TRAN = Paper(authors="Tran et al.", title="A Closer Look at Spatiotemporal Convolutions for Action Recognition",
             venue="CVPR", year=2018, arxiv="1711.11248", code="torchvision.models.video.r3d_18")


class HaraStem(nn.Sequential):
    """7x7x7 conv, stride (1,2,2), BN, ReLU, 3D max-pool (3, stride 2): the 'ResNets for action recognition' stem."""

    def __init__(self) -> None:
        super().__init__(
            nn.Conv3d(3, 64, kernel_size=7, stride=(1, 2, 2), padding=3, bias=False),
            nn.BatchNorm3d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=3, stride=2, padding=1),
        )


class TorchvisionStem(nn.Sequential):
    """torchvision r3d_18 stem: 3x7x7 conv, stride (1,2,2), BN, ReLU, no pooling."""

    def __init__(self) -> None:
        super().__init__(
            nn.Conv3d(3, 64, kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
            nn.BatchNorm3d(64),
            nn.ReLU(inplace=True),
        )


class ZeroPadShortcut(nn.Module):
    """Hara's shortcut A: the input subsampled by the stride and zero-padded to the new width (no parameters)."""

    def __init__(self, planes: int, stride: int):
        super().__init__()
        self.planes, self.stride = planes, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.avg_pool3d(x, kernel_size=1, stride=self.stride)
        return F.pad(out, (0, 0, 0, 0, 0, 0, 0, self.planes - out.shape[1]))


def _r3d18(num_classes: int, stem: type[nn.Module], dropout: float, shortcut: str = "B",
           dfew_init: bool = False) -> nn.Module:
    if shortcut not in ("A", "B"):
        raise ValueError(f"shortcut must be 'A' (zero-padded identity) or 'B' (1x1x1 conv + BN), got {shortcut!r}")
    model = VideoResNet(block=BasicBlock, conv_makers=[Conv3DSimple] * 4, layers=[2, 2, 2, 2], stem=stem,
                        num_classes=num_classes)
    if shortcut == "A":
        for stage, planes in ((model.layer2, 128), (model.layer3, 256), (model.layer4, 512)):
            stage[0].downsample = ZeroPadShortcut(planes, 2)
    if dropout > 0:
        model.fc = nn.Sequential(nn.Dropout(dropout), model.fc)
    if dfew_init:
        dfew_linear_init(model)
    return model


_HARA_NAMES = ((r"^conv1\.", "stem.0."), (r"^bn1\.", "stem.1."),
               (r"^(layer\d\.\d)\.conv1\.", r"\1.conv1.0."), (r"^(layer\d\.\d)\.bn1\.", r"\1.conv1.1."),
               (r"^(layer\d\.\d)\.conv2\.", r"\1.conv2.0."), (r"^(layer\d\.\d)\.bn2\.", r"\1.conv2.1."))


def convert_hara(sd: dict, model: nn.Module, notes: dict) -> dict:
    """A kenshohara/3D-ResNets-PyTorch ResNet-18 state_dict -> torchvision's layout; an fc of another class count
    is dropped. Refuses a file whose shortcut type differs from the model's (the one switch to set)."""
    if "conv1.weight" not in sd or "layer1.0.conv1.weight" not in sd:
        raise KeyError("conv1.weight / layer1.0.conv1.weight (not a 3D-ResNets-PyTorch ResNet)")
    file_b = any(k.startswith("layer2.0.downsample.") for k in sd)
    model_b = "layer2.0.downsample.0.weight" in model.state_dict()
    if file_b != model_b:
        want = "B" if file_b else "A"
        raise ValueError(f"the file has shortcut {want} and the model shortcut {'B' if model_b else 'A'}: add "
                         f"--set model.kwargs.shortcut={want}")
    own = model.state_dict()
    out, dropped = {}, []
    for key, value in sd.items():
        name = key
        for pattern, repl in _HARA_NAMES:
            name = re.sub(pattern, repl, name)
        fc = "fc.1." + name[3:] if name.startswith("fc.") and "fc.1.weight" in own else name
        if fc.startswith(("fc.", "fc.1.")) and (fc not in own or own[fc].shape != value.shape):
            dropped.append(key)
            continue
        out[fc] = value
    notes["dropped"] = sorted(dropped)
    notes["shortcut"] = "B" if file_b else "A"
    return out


_WEIGHTS = {
    "kinetics400": WeightsSource("torchvision R3D_18 Kinetics-400 state_dict (torchvision names; the 7x7x7 stem of "
                                 "the Hara variant is reported as mismatched)", "r3d_18-b3b3357e.pth"),
    "hara": WeightsSource("kenshohara/3D-ResNets-PyTorch ResNet-18 checkpoint (r3d18_K_200ep.pth / r3d18_KM_200ep.pth, "
                          "shortcut B; CVPR2018 resnet-18-kinetics.pth, shortcut A): renamed to torchvision's "
                          "layout, fc of another class count dropped", "r3d18_K_200ep.pth", convert_hara),
}

# the DFEW trainer's own CPU-sized `synthetic` entry for the 40-GMAC torchvision 3D CNNs: 7 epochs
TV3D_SYNTHETIC = {"data": {"frames": 8, "size": 48}, "train": {"epochs": 7, "batch_size": 16, "selection": "last"}}
DFEW_INIT = {"model": {"kwargs": {"dfew_init": True}}}

R3D18_RECIPE = with_protocols("former_dfer", former_dfer=former_dfer(), bench3d=BENCH3D,
                              dfew_code={**dfew_code("r3d_18"), **DFEW_INIT})
R3D18_TV_RECIPE = with_protocols("dfew_code", dfew_code={**dfew_code("r3d_18", TV3D_SYNTHETIC), **DFEW_INIT},
                                 bench3d=BENCH3D)


@register_method("r3d18", family="3D CNN", input=InputSpec(16, 112), paper=HARA, recipe=R3D18_RECIPE,
                 weights=_WEIGHTS, literature=("3D ResNet-18",),
                 test_views_note="former_dfer: 1 clip of 8 segment centres x 2 frames; epoch chosen on test WAR")
def r3d18(num_classes: int, frames: int, size: int, dropout: float = 0.0, shortcut: str = "B",
          dfew_init: bool = False) -> nn.Module:
    """3D ResNet-18, Hara stem (7x7x7 conv + max-pool): the '33 M / 8.3 G' of DFER tables."""
    return _r3d18(num_classes, HaraStem, dropout, shortcut, dfew_init)


# the DFEW README's released per-fold r3d_18 weights are torchvision's network, saved by the DFEW trainer
_TV_WEIGHTS = {**_WEIGHTS, "dfew": WeightsSource(
    "a DFEW-repo r3d_18 checkpoint (README release or its trainer: r3d_18_fold{k}_epo{NNN}_UAR.._WAR...pth, "
    "'model_state_dict', 'module.' prefix; 7 classes; trained on [0,1] inputs without normalisation)",
    "r3d_18_fold1_epo*.pth", convert_dfew)}


@register_method("r3d18_tv", family="3D CNN", input=InputSpec(16, 112), paper=TRAN, recipe=R3D18_TV_RECIPE,
                 weights=_TV_WEIGHTS, literature=("r3d_18 (DFEW repo)",),
                 test_views_note="dfew_code: 16 random sorted frames (train) / linspace (test), 1 view, epoch "
                                 "picked on test")
def r3d18_tv(num_classes: int, frames: int, size: int, dropout: float = 0.0, dfew_init: bool = False) -> nn.Module:
    """3D ResNet-18 with torchvision's stem (no max-pool): the DFEW code's r3d_18; same params, ~5x the compute."""
    return _r3d18(num_classes, TorchvisionStem, dropout, "B", dfew_init)
