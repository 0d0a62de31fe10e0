"""`test_tiny`: a registered method of a few thousand parameters for the harness's own end-to-end tests (as timm
registers `test_*` models). A 3D conv, pooling and a linear head; it trains on `synthetic` in seconds.
Hidden from `bench list methods` unless `--all`; never part of a comparison."""

from __future__ import annotations

import torch
from torch import nn

from bench.api import InputSpec, Paper, Recipe, register_method

TINY = Paper(authors="dfer-bench", title="tiny 3D CNN for CI", venue="tests", year=2026)


class TinyNet(nn.Module):
    def __init__(self, num_classes: int, width: int = 8):
        super().__init__()
        self.conv = nn.Conv3d(3, width, kernel_size=3, stride=(1, 2, 2), padding=1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3, 4)))


@register_method("test_tiny", family="test", input=InputSpec(8, 32), paper=TINY,
                 recipe=Recipe(defaults={"optim": {"lr": 3e-3, "warmup_epochs": 0},
                                         "train": {"epochs": 2, "batch_size": 8}}))
def test_tiny(num_classes: int, frames: int, size: int, width: int = 8) -> nn.Module:
    """A 3D conv + linear head for the harness's own tests."""
    return TinyNet(num_classes, width)
