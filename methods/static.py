"""Single-frame control (family: static): a frame classifier whose logits are averaged over the clip's frames.

It sees exactly the frames a temporal method sees but cannot use their order or change over time, so on a
dataset whose emotion is carried by dynamics (`synthetic`) it must score clearly below the temporal methods.
"""

from __future__ import annotations

import timm
import torch
import torch.nn as nn

from bench.api import InputSpec, Recipe, WeightsSource, register_method
from bench.methods.r18_lstm import load_imagenet_trunk


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
    recipe=Recipe(
        defaults={
            "data": {"frames": 16, "size": 112, "sampler": "segment", "rrc_scale": [0.8, 1.0],
                     "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
            "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "warmup_epochs": 2},
            "train": {"epochs": 50, "batch_size": 32},
            "reg": {"label_smoothing": 0.1},
        },
        datasets={"synthetic": {"data": {"size": 64, "rrc_scale": [0.85, 1.0]}, "optim": {"lr": 2e-3, "warmup_epochs": 1},
                                "train": {"epochs": 8, "batch_size": 16}}},
    ),
    weights={"imagenet": WeightsSource("ImageNet ResNet-18 state_dict for the frame trunk", "resnet18.pth",
                                       load=load_imagenet_trunk)},
)
def static_r18(num_classes: int = 7, frames: int = 16, size: int = 112, dropout: float = 0.0) -> nn.Module:
    """Per-frame ResNet-18 with logits averaged over the clip: no temporal modelling."""
    return FrameAverage(num_classes, "resnet18", dropout)
