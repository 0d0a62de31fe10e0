"""C3D (Tran, Bourdev, Fergus, Torresani & Paluri, "Learning Spatiotemporal Features with 3D Convolutional Networks",
ICCV 2015, arXiv 1412.0767) as the DFEW paper's 3D-CNN baseline.

Official code of the DFER baseline: jiangxingxun/DFEW @ 7c1ba78f6fb13b59333b3e831d46d83ab812b10f
`makemodel/c3d.py` (no licence file: read for facts only, nothing copied). Reference C3D without BN:
open-mmlab/mmaction2 `mmaction/models/backbones/c3d.py` (Apache-2.0) and DavideA/c3d-pytorch @ 076d40e (MIT, the
PyTorch port of the Sports-1M Caffe model, `c3d.pickle`).

Network: 8 Conv3d (k 3x3x3, stride 1, padding 1, with bias) 64-128-256-256-512-512-512-512, each followed by ReLU;
pool1 (1,2,2)/(1,2,2); pool2, pool3, pool4 2/2; pool5 2/2 with padding (0,1,1) (Caffe's ceil-mode 7x7 -> 4x4);
flatten -> fc6 4096 -> ReLU -> Dropout 0.5 -> fc7 4096 -> ReLU -> Dropout 0.5 -> fc8 (classes).
`bn=True` (default) is the DFEW baseline's variant: a BatchNorm3d after every conv (conv bias kept), as in the DFEW
code whose results the literature row "C3D" reports; `bn=False` (variant `c3d.nobn`) is the original C3D (mmaction2,
Sports-1M weights). The module names are the DFEW code's (conv1, bn1, conv2, bn2, conv3a, bn3a, ..., fc6, fc7, fc8),
which are also the names of DavideA's c3d.pickle without the bn modules.

The fc6 input is derived from frames/size: 512 x (T // 16) x (s4 // 2 + 1)², s4 = size // 16 (16x112²: 512x1x4x4 =
8192, the official constant). Minimum input: 16 frames (pool5 needs 2 frames left) and 16 px.

Sizes at 16x112², 7 classes, measured from the DFEW code / mmaction2: with BN 78.03 M / 38.59 GMACs (fvcore; the BN
adds 5,504 params and ~0.04 G); without BN 78.02 M / 38.55 G. The tables' "78 M" is this 7-class C3D (fc6 = 8192);
101 classes 78.41 M, 487 classes (Sports-1M) 79.99 M. (The 72.9 M / 38.5 G quoted by Res3D papers use another
head.) DFER tables give no GFLOPs for C3D.

Recipe: the DFEW code's trainer (protocol `dfew_code`, methods/_baseline_recipes.py): Adam 1e-3, no weight decay,
constant lr, no augmentation, [0, 1] inputs, best epoch on test; c3d.yaml: batch 32 (per DDP process; the number of
processes for c3d is not given), 112²; no launch line for c3d exists, so the epochs are main.py's DDP default 500.
Protocol `bench3d` = the harness's own shared 3D-CNN recipe (methods/_baseline_recipes.py), not the DFEW code's.
Differences from the DFEW code (the frame indices are its rule exactly, the `dfew` sampler; the rest as in
mc3_18.py): `h.view(-1, 8192)` becomes `flatten(1)` with a derived width (the same at 16x112²); `dfew_init=True` re-initialises fc6/fc7/fc8 weights with
kaiming_normal(fan_in, relu) as the DFEW code does for nn.Linear (Conv3d/BN3d keep PyTorch's init); mmaction2 inits
(kaiming convs, normal std 0.005 fc) are not used. The DFEW repo released no C3D weights.
In training mode the model returns {"logits", "features"} (features = the fc7 activation before its dropout, the
clip feature the classifier sees), so a shared loss such as `ec_stfl` (EC-STFL was also reported on C3D) can be
added with `--set model.loss.terms.ec_stfl.weight=10`.

Weights source `sports1m`: DavideA/c3d-pytorch's `c3d.pickle` (bare state_dict, keys conv1.weight/bias, conv2,
conv3a, conv3b, conv4a, conv4b, conv5a, conv5b, fc6, fc7, fc8 [487]; loaded strictly into a C3D without BN): use it
with `bn=False` (variant `c3d.nobn`) and 16x112² (fc6 expects 8192 inputs). fc8 (Sports-1M classes) is dropped. That
model was fed RGB frames in [0, 255] (predict.py: resize to 112x200, centre crop, no mean subtraction), so with this
init set `--set data.mean=[0,0,0] --set data.std=[0.00392157,0.00392157,0.00392157]` (maps [0,1] to [0,255]); this
is a documented choice left to the user, not part of the DFEW recipe (which trains from scratch).
"""

from __future__ import annotations

import torch
from torch import nn

from bench.api import InputSpec, Paper, WeightsSource, register_method, register_variant
from bench.methods._baseline_recipes import bench3d_at, dfew_code, dfew_linear_init, with_protocols

PAPER = Paper(authors="Tran, Bourdev, Fergus, Torresani & Paluri",
              title="Learning Spatiotemporal Features with 3D Convolutional Networks", venue="ICCV", year=2015,
              arxiv="1412.0767", code="github.com/jiangxingxun/DFEW (makemodel/c3d.py)")

# (name, in, out) of the 8 convs; a pool follows the names in POOLS
CONVS = (("conv1", 3, 64), ("conv2", 64, 128), ("conv3a", 128, 256), ("conv3b", 256, 256), ("conv4a", 256, 512),
         ("conv4b", 512, 512), ("conv5a", 512, 512), ("conv5b", 512, 512))
POOLS = {"conv1": ((1, 2, 2), (0, 0, 0)), "conv2": ((2, 2, 2), (0, 0, 0)), "conv3b": ((2, 2, 2), (0, 0, 0)),
         "conv4b": ((2, 2, 2), (0, 0, 0)), "conv5b": ((2, 2, 2), (0, 1, 1))}


def pool5_grid(frames: int, size: int) -> tuple[int, int, int]:
    """(T, H, W) after pool5: T // 16 (pools 2-5 halve time, no temporal padding); space halves four times, then
    pool5 with padding 1 gives s // 2 + 1 (7 -> 4)."""
    t = frames // 16
    s = size
    for _ in range(4):
        s //= 2
    s = s // 2 + 1
    if t < 1 or size // 16 < 1:
        raise ValueError(f"C3D needs at least 16 frames and 16 px (got {frames} x {size}²)")
    return t, s, s


class C3D(nn.Module):
    """8 conv3d (+ optional BN3d) with the C3D pools -> fc6/fc7 4096 (ReLU, dropout 0.5) -> fc8."""

    def __init__(self, num_classes: int = 7, frames: int = 16, size: int = 112, bn: bool = True,
                 dropout: float = 0.5):
        super().__init__()
        self.names = [n for n, _, _ in CONVS]
        self.use_bn = bn
        for name, cin, cout in CONVS:
            setattr(self, name, nn.Conv3d(cin, cout, kernel_size=3, padding=1))
            if bn:
                setattr(self, "bn" + name[4:], nn.BatchNorm3d(cout))
            if name in POOLS:
                kernel, pad = POOLS[name]
                setattr(self, "pool" + name[4], nn.MaxPool3d(kernel, stride=kernel, padding=pad))
        t, h, w = pool5_grid(frames, size)
        self.fc6 = nn.Linear(512 * t * h * w, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, num_classes)
        self.dropout = nn.Dropout(dropout)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        for name in self.names:
            x = getattr(self, name)(x)
            if self.use_bn:
                x = getattr(self, "bn" + name[4:])(x)
            x = self.relu(x)
            if name in POOLS:
                x = getattr(self, "pool" + name[4])(x)
        x = self.dropout(self.relu(self.fc6(x.flatten(1))))
        features = self.relu(self.fc7(x))
        logits = self.fc8(self.dropout(features))
        if self.training:
            return {"logits": logits, "features": features}
        return logits


def convert_sports1m(sd: dict, model: nn.Module, notes: dict) -> dict:
    """DavideA c3d.pickle -> ours: the names already match (conv1 ... fc7); fc8 (487 Sports-1M classes) dropped.
    A model with BN keeps its BN at init (reported as missing): use bn=False for this file."""
    if "conv1.weight" not in sd:
        raise KeyError("conv1.weight (not a C3D state_dict)")
    notes["dropped"] = sorted(k for k in sd if k.startswith("fc8."))
    return {k: v for k, v in sd.items() if not k.startswith("fc8.")}


WEIGHTS = {
    "sports1m": WeightsSource("DavideA/c3d-pytorch c3d.pickle: C3D without BN trained on Sports-1M (Caffe port), "
                              "keys conv1..conv5b, fc6, fc7 (fc8 dropped); use with bn=False (c3d.nobn) at 16x112²; "
                              "fed RGB in [0, 255]", "c3d.pickle", convert_sports1m),
}

# CPU-sized deviation (<= 10 min on 2 cores): C3D needs 16 frames (pool5 keeps T // 16 >= 1); 16x32² is 3.2 GMACs per
# clip (a training step measured 1.47x the Hara r3d18's synthetic step: ~6 min for 6 epochs), batch 16, last-epoch
# selection. The rest is the DFEW-code recipe.
SYNTHETIC = {"data": {"frames": 16, "size": 32}, "train": {"epochs": 6, "batch_size": 16, "selection": "last"}}

RECIPE = with_protocols("dfew_code", dfew_code=dfew_code("c3d", SYNTHETIC), bench3d=bench3d_at(SYNTHETIC))


@register_method("c3d", family="3D CNN", input=InputSpec(16, 112), paper=PAPER, recipe=RECIPE, weights=WEIGHTS,
                 literature=("C3D",),
                 test_views_note="dfew_code: 16 random sorted frames (train) / linspace (test), 1 view, epoch "
                                 "picked on test")
def c3d(num_classes: int, frames: int, size: int, bn: bool = True, dropout: float = 0.5,
        dfew_init: bool = True) -> nn.Module:
    """C3D, 8 conv3d + fc6/fc7 4096; BatchNorm after each conv as in the DFEW baseline (bn=False: original)."""
    model = C3D(num_classes, frames, size, bn=bn, dropout=dropout)
    if dfew_init:
        dfew_linear_init(model)
    return model


register_variant("c3d.nobn", variant_of="c3d", kwargs={"bn": False},
                 description="original C3D without batch norm (mmaction2, Sports-1M c3d.pickle): 78.02 M / 38.55 G")
