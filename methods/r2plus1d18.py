"""R(2+1)D-18 (family: 3D CNN): torchvision's `r2plus1d_18`, every 3D conv factored into a spatial (1x3x3) and a
temporal (3x1x1) conv with the mid-channel count chosen to match the 3D conv's parameters (Tran et al., "A
Closer Look at Spatiotemporal Convolutions for Action Recognition", CVPR 2018, arXiv 1711.11248).

The DFEW code (github.com/jiangxingxun/DFEW @ 7c1ba78, `libs/Performer.py`) builds torchvision's `r2plus1d_18`
and trains it from scratch with its trainer: protocol `dfew_code` (default; methods/_baseline_recipes.py: Adam 1e-3
constant, batch 32, 500 epochs, no augmentation, [0, 1] pixels, the DFEW sampler, best epoch on test, kaiming
re-init of the fc as its `model_init` does; r2plus1d_18 has no config file of its own and shares the others'
constants). Protocol `bench3d` = this harness's own shared 3D-CNN recipe (AdamW + cosine, crop + flip, mean/std).
Literature: the DFEW row "R(2+1)D-18 42.79 / 53.22" is the DFEW paper's Table 4 row "R3D18 [38]" ([38] = Tran et
al. 2018, time-interpolated clips), which Former-DFER's Table 4 re-labels "R(2+1)D18 [61] TI"; both names point to
Tran et al.'s paper, which defines both networks, so which of the two the DFEW authors trained is not settled by
the sources (r3d18_tv is the other candidate). The FERV39k row (31.55 / 41.28) is the FERV39k paper's.

Size at 16x112²: 31.30 M params / 40.6 GMACs (fvcore; torchvision's model built here, baselines.md §11 [meas]).
DFER tables do not list its cost. The network is torchvision's own class, so nothing differs from it; the head
has the dataset's classes (7, or 11 for MAFW) instead of Kinetics' 400.
"""

from __future__ import annotations

from torch import nn
from torchvision.models.video import r2plus1d_18 as tv_r2plus1d_18

from bench.api import InputSpec, Paper, WeightsSource, register_method
from bench.methods._baseline_recipes import BENCH3D, dfew_code, dfew_linear_init, with_protocols
from bench.methods.r3d18 import DFEW_INIT, TV3D_SYNTHETIC

PAPER = Paper(authors="Tran et al.", title="A Closer Look at Spatiotemporal Convolutions for Action Recognition",
              venue="CVPR", year=2018, arxiv="1711.11248", code="torchvision.models.video.r2plus1d_18")

KINETICS = WeightsSource("torchvision R2Plus1D_18 Kinetics-400 state_dict (same key names; the 400-way fc is "
                         "reported as mismatched and left at random init)", "r2plus1d_18-91a641e6.pth")


RECIPE = with_protocols("dfew_code", dfew_code={**dfew_code("r2plus1d_18", TV3D_SYNTHETIC), **DFEW_INIT},
                        bench3d=BENCH3D)


@register_method("r2plus1d18", family="3D CNN", input=InputSpec(16, 112), paper=PAPER, recipe=RECIPE,
                 weights={"kinetics400": KINETICS}, literature=("R(2+1)D-18",),
                 test_views_note="dfew_code: 16 random sorted frames (train) / linspace (test), 1 view, epoch "
                                 "picked on test")
def r2plus1d18(num_classes: int, frames: int, size: int, dropout: float = 0.0, dfew_init: bool = False) -> nn.Module:
    """torchvision R(2+1)D-18: (2+1)D factorised 3D ResNet-18."""
    model = tv_r2plus1d_18(num_classes=num_classes)
    if dropout > 0:
        model.fc = nn.Sequential(nn.Dropout(dropout), model.fc)
    if dfew_init:
        dfew_linear_init(model)
    return model
