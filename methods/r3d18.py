"""3D ResNet-18 (family: 3D CNN), in the variant DFER tables quote and in torchvision's variant.

DFER papers cite "3D ResNet-18, 33 M params, 8.3 GFLOPs" at 16x112²: that is Hara et al.'s network, whose
stem is a 7x7x7 conv (stride 1,2,2) followed by a 3D max-pool. torchvision's `r3d_18` uses a 3x7x7 stem
without the max-pool and costs ~40.7 GMACs at the same input. Both are registered; tables say which ran.
The residual stages are torchvision's `VideoResNet` blocks (BasicBlock, Conv3DSimple).
"""

from __future__ import annotations

import torch.nn as nn
from torchvision.models.video.resnet import BasicBlock, Conv3DSimple, VideoResNet

from bench.api import InputSpec, Paper, Recipe, WeightsSource, register_method

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


def _r3d18(num_classes: int, stem: type[nn.Module], dropout: float) -> nn.Module:
    model = VideoResNet(block=BasicBlock, conv_makers=[Conv3DSimple] * 4, layers=[2, 2, 2, 2], stem=stem,
                        num_classes=num_classes)
    if dropout > 0:
        model.fc = nn.Sequential(nn.Dropout(dropout), model.fc)
    return model


DFEW_3DCNN_RECIPE = Recipe(
    # DFEW's own 3D-CNN baselines (shared by the 3D CNN files): from scratch, Adam 1e-3, batch 32, 16 frames at
    # 112² (jiangxingxun/DFEW).
    defaults={
        "data": {"sampler": "segment", "rrc_scale": [0.8, 1.0], "flip": True,
                 "mean": [0.45, 0.45, 0.45], "std": [0.225, 0.225, 0.225]},
        "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "schedule": "cosine", "warmup_epochs": 2},
        "train": {"epochs": 50, "batch_size": 32},
        "reg": {"label_smoothing": 0.1},
    },
    datasets={
        # CPU-sized: 8 segments at 48x48, 10 epochs (~40 s/epoch on 2 cores; the same budget as the frame-CNN
        # baselines and the static control); stated in every result's protocol.
        "synthetic": {"data": {"frames": 8, "size": 48, "rrc_scale": [0.85, 1.0]},
                      "optim": {"lr": 2e-3, "warmup_epochs": 1}, "train": {"epochs": 10, "batch_size": 16}},
    },
)
_WEIGHTS = {"kinetics400": WeightsSource("torchvision R3D_18 Kinetics-400 state_dict (stem differs for the Hara variant)",
                                         "r3d_18-b3b3357e.pth")}


@register_method("r3d18", family="3D CNN", input=InputSpec(16, 112), paper=HARA, recipe=DFEW_3DCNN_RECIPE, weights=_WEIGHTS,
                 literature=("3D ResNet-18",))
def r3d18(num_classes: int, frames: int, size: int, dropout: float = 0.0) -> nn.Module:
    """3D ResNet-18, Hara stem (7x7x7 conv + max-pool): the '33 M / 8.3 G' of DFER tables."""
    return _r3d18(num_classes, HaraStem, dropout)


@register_method("r3d18_tv", family="3D CNN", input=InputSpec(16, 112), paper=TRAN, recipe=DFEW_3DCNN_RECIPE, weights=_WEIGHTS)
def r3d18_tv(num_classes: int, frames: int, size: int, dropout: float = 0.0) -> nn.Module:
    """3D ResNet-18 with torchvision's stem (no max-pool): same params, ~5x the compute."""
    return _r3d18(num_classes, TorchvisionStem, dropout)
