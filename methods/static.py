"""Single-frame control (family: static): a frame classifier whose logits are averaged over the clip's frames.

It sees exactly the frames a temporal method sees but cannot use their order or change over time, so on a
dataset whose emotion is carried by dynamics (`synthetic`) it must score clearly below the temporal methods.
"""

from __future__ import annotations

import timm
import torch
import torch.nn as nn

from bench.api import InputSpec, WeightsSource, register_method
from bench.methods.r18_lstm import FRAME_CNN_RECIPE, load_imagenet_trunk


class FrameAverage(nn.Module):
    """timm 2D CNN on every frame, linear classifier per frame, logits averaged over time."""

    def __init__(self, num_classes: int, backbone: str = "resnet18", dropout: float = 0.0):
        super().__init__()
        self.trunk = timm.create_model(backbone, pretrained=False, num_classes=0)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(self.trunk.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        logits = self.fc(self.drop(self.trunk(x.transpose(1, 2).reshape(b * t, c, h, w))))
        return logits.view(b, t, -1).mean(dim=1)


@register_method(
    "static_r18", family="static", input=InputSpec(16, 112), test_views="1 clip x 1 crop",
    paper="control: per-frame ResNet-18, logits averaged over frames",
    recipe=FRAME_CNN_RECIPE,
    weights={"imagenet": WeightsSource("ImageNet ResNet-18 state_dict for the frame trunk", "resnet18.pth",
                                       load=load_imagenet_trunk)},
)
def static_r18(num_classes: int = 7, frames: int = 16, size: int = 112, dropout: float = 0.0) -> nn.Module:
    """Per-frame ResNet-18 with logits averaged over the clip: no temporal modelling."""
    return FrameAverage(num_classes, "resnet18", dropout)
