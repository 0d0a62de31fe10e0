"""`test_tiny`: a registered method of a few hundred parameters for the harness's own end-to-end tests (as timm
registers `test_*` models). A 3D conv, pooling and a linear head; it trains on `synthetic` in seconds. It also
defines a tiny pre-training objective (predict each clip's per-frame mean colour from the conv features), so
`bench pretrain` -> `bench run --init` is tested end to end without a ViT. Hidden from `bench list methods`
unless `--all`; never part of a comparison."""

from __future__ import annotations

import torch
from torch import nn

from bench.api import InputSpec, Paper, PretrainSpec, Recipe, WeightsSource, register_method

TINY = Paper(authors="dfer-bench", title="tiny 3D CNN for CI", venue="tests", year=2026)


class TinyNet(nn.Module):
    def __init__(self, num_classes: int, width: int = 8):
        super().__init__()
        self.conv = nn.Conv3d(3, width, kernel_size=3, stride=(1, 2, 2), padding=1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3, 4)))


class TinyPretrainer(nn.Module):
    """Self-supervised toy objective: regress the clip's per-frame mean colour from the pooled conv features."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.encoder = nn.Conv3d(3, width, kernel_size=3, stride=(1, 2, 2), padding=1)
        self.decoder = nn.Linear(width, 3)

    def forward(self, x: torch.Tensor) -> dict:
        feats = torch.relu(self.encoder(x)).mean(dim=(3, 4)).transpose(1, 2)  # B, T, width
        target = x.mean(dim=(3, 4)).transpose(1, 2)  # B, T, 3
        loss = torch.nn.functional.mse_loss(self.decoder(feats), target)
        return {"loss": loss, "parts": {"colour": float(loss.detach())}}


def build_tiny_pretrainer(frames: int, size: int, width: int = 8) -> nn.Module:
    return TinyPretrainer(width)


def convert_tiny_pretrain(sd: dict, model: nn.Module, notes: dict) -> dict:
    """A `bench pretrain` checkpoint of test_tiny: encoder -> conv; the decoder is dropped (notes['dropped'])."""
    notes["dropped"] = sorted(k for k in sd if k.startswith("decoder."))
    return {k.replace("encoder.", "conv.", 1): v for k, v in sd.items() if k.startswith("encoder.")}


@register_method("test_tiny", family="test", input=InputSpec(8, 32), paper=TINY,
                 recipe=Recipe(defaults={"optim": {"lr": 3e-3, "warmup_epochs": 0},
                                         "train": {"epochs": 2, "batch_size": 8}}),
                 weights={"tiny_pretrain": WeightsSource("a `bench pretrain -m test_tiny` checkpoint", "pretrained.pt",
                                                         convert_tiny_pretrain)},
                 pretrain=PretrainSpec(build=build_tiny_pretrainer, loads_with="tiny_pretrain",
                                       recipe=Recipe(defaults={"optim": {"lr": 3e-3, "warmup_epochs": 0},
                                                               "train": {"epochs": 2, "batch_size": 8}}),
                                       description="test_tiny colour-regression pre-training"))
def test_tiny(num_classes: int, frames: int, size: int, width: int = 8) -> nn.Module:
    """A 3D conv + linear head for the harness's own tests."""
    return TinyNet(num_classes, width)
