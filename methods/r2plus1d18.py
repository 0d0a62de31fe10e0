"""R(2+1)D-18 (family: 3D CNN): torchvision's `r2plus1d_18`, every 3D conv factored into a spatial (1x3x3) and a
temporal (3x1x1) conv with the mid-channel count chosen to match the 3D conv's parameters (Tran et al., "A
Closer Look at Spatiotemporal Convolutions for Action Recognition", CVPR 2018, arXiv 1711.11248).

It is one of the DFEW/FERV39k dataset papers' 3D-CNN baselines, trained from scratch there with the 3D ResNet
recipe (Adam 1e-3, batch 32, 16 frames at 112²; github.com/jiangxingxun/DFEW), which this file shares.

Size at 16x112²: 31.30 M params / 40.6 GMACs (fvcore; torchvision's model built here, baselines.md §11 [meas]).
DFER tables do not list its cost. The network is torchvision's own class, so nothing differs from it; the head
has the dataset's classes (7, or 11 for MAFW) instead of Kinetics' 400.
"""

from __future__ import annotations

from torch import nn
from torchvision.models.video import r2plus1d_18 as tv_r2plus1d_18

from bench.api import InputSpec, Paper, WeightsSource, register_method
from bench.methods.r3d18 import DFEW_3DCNN_RECIPE

PAPER = Paper(authors="Tran et al.", title="A Closer Look at Spatiotemporal Convolutions for Action Recognition",
              venue="CVPR", year=2018, arxiv="1711.11248", code="torchvision.models.video.r2plus1d_18")

KINETICS = WeightsSource("torchvision R2Plus1D_18 Kinetics-400 state_dict (same key names; the 400-way fc is "
                         "reported as mismatched and left at random init)", "r2plus1d_18-91a641e6.pth")


@register_method("r2plus1d18", family="3D CNN", input=InputSpec(16, 112), paper=PAPER, recipe=DFEW_3DCNN_RECIPE,
                 weights={"kinetics400": KINETICS}, literature=("R(2+1)D-18",))
def r2plus1d18(num_classes: int, frames: int, size: int, dropout: float = 0.0) -> nn.Module:
    """torchvision R(2+1)D-18: (2+1)D factorised 3D ResNet-18."""
    model = tv_r2plus1d_18(num_classes=num_classes)
    if dropout > 0:
        model.fc = nn.Sequential(nn.Dropout(dropout), model.fc)
    return model
