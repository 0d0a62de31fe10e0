"""I3D-RGB (Carreira & Zisserman, "Quo Vadis, Action Recognition? A New Model and the Kinetics Dataset", CVPR 2017,
arXiv 1705.07750): Inception-v1 inflated to 3D, as the DFEW paper's 3D-CNN baseline.

Official code of the DFER baseline: jiangxingxun/DFEW @ 7c1ba78f6fb13b59333b3e831d46d83ab812b10f `makemodel/i3d.py`
(no licence file: read for facts only), which is piergiaj/pytorch-i3d @ 05783d11f9632b25fe3d50395a9c9bb51f848d6d
`pytorch_i3d.py` (Apache-2.0; the PyTorch port of DeepMind's kinetics-i3d) with the logits reshaped to [B, C].
Written here from the facts (layer list, dims, key names); no source is copied.

Network, exact to piergiaj's layer list (shapes at 16x224²):
  Conv3d_1a_7x7 (3->64, k7, s2) -> MaxPool3d_2a_3x3 (k 1x3x3, s 1x2x2) -> Conv3d_2b_1x1 (64) -> Conv3d_2c_3x3 (192)
  -> MaxPool3d_3a_3x3 (k 1x3x3, s 1x2x2) -> Mixed_3b (256), Mixed_3c (480) -> MaxPool3d_4a_3x3 (k3, s2)
  -> Mixed_4b..4f (512, 512, 512, 528, 832) -> MaxPool3d_5a_2x2 (k2, s2) -> Mixed_5b (832), Mixed_5c (1024)
  -> AvgPool3d (2,7,7), stride 1 -> Dropout(0.5) -> logits = 1x1x1 Conv3d 1024->C with bias (no BN, no ReLU).
  Unit3D = Conv3d without bias + BatchNorm3d (eps 1e-3, momentum 0.01) + ReLU. Every conv and max-pool pads
  TF-"SAME" at run time (total pad = max(k - s, 0) if the size divides by s, else max(k - size % s, 0); front
  floor(pad/2), back the rest); max-pools pad with zeros (equal to TF's -inf here: their inputs follow a ReLU).
  Inception branches [b0 1x1, b1a 1x1 -> b1b 3x3x3, b2a 1x1 -> b2b 3x3x3, b3a max-pool 3x3x3/1 -> b3b 1x1].
  The module names are piergiaj's end-point names (Conv3d_1a_7x7.conv3d.weight, .bn.*, Mixed_3b.b1b.conv3d.weight,
  logits.conv3d.{weight,bias}), so its files load without renaming.
The average-pool kernel is derived from frames/size: the whole final grid (ceil(T/8), ceil(S/32), ceil(S/32)), which
is the official (2, 7, 7) at 16x224² and gives the 1x1x1 output the DFEW copy's reshape to [B, C] requires at any
input (piergiaj's fixed kernel would leave T' > 1 / fail at other sizes). Builds and runs down to 1 frame and 32 px;
training a batch of one clip needs a final grid above 1x1x1 (e.g. 48 px), else BatchNorm refuses it.

Sizes at 16x224², 7 classes: 12.29 M params / 27.83 GMACs (fvcore), measured from the DFEW/piergiaj code (notes
/work/notes/cnn3d/NOTES.md §4); 400 classes 12.70 M. The tables' "12 M" matches; they give no GFLOPs.

Recipe: the DFEW code's trainer (protocol `dfew_code`, methods/_baseline_recipes.py): Adam 1e-3, no weight decay,
constant lr, no augmentation, [0, 1] inputs, best epoch on test; i3d.yaml: batch 32 (per DDP process), 224²
(`size_Resize_te: 224`); no launch line for i3d exists, so the epochs are main.py's DDP default 500. The DFEW I3D is
trained from scratch (nothing loaded; its init touches no I3D layer since there is no nn.Linear/nn.Conv2d), so this
file applies no re-init. Protocol `bench3d` = the harness's own shared 3D-CNN recipe (methods/_baseline_recipes.py),
at 224² here. Differences from the DFEW code (the frame indices are its rule exactly, the `dfew` sampler; the rest as
in mc3_18.py): the derived average pool (identical at 16x224²). The DFEW README reports its re-run I3D at WAR 59.24 / UAR 47.61 (released weights: source
`dfew`).
In training mode the model returns {"logits", "features"} (features = the 1024-d average pool before the dropout),
so shared loss terms such as `ec_stfl` can be added.

Weights sources: `imagenet_kinetics` = piergiaj's rgb_imagenet.pt (ImageNet-inflated, Kinetics-400-trained; a bare
state_dict, 400 logits) and rgb_charades.pt (157 logits): everything but the logits loads; the logits are dropped
(notes['dropped']) and stay at init. The files were saved under PyTorch 0.3 and probably lack the 57 BN
`num_batches_tracked` buffers; the converter fills absent ones with 0 (notes['filled']) as BatchNorm's own loading
of old state_dicts does. `dfew` = a DFEW-repo I3D checkpoint (`model_state_dict`, 'module.'-prefixed, 7 logits):
names match, everything loads.
Input range: piergiaj's (DeepMind's) checkpoints expect RGB in [-1, 1] (x / 255 * 2 - 1). The DFEW recipe feeds
[0, 1] (it trains from scratch). Choice documented here: with `--init imagenet_kinetics:...` set
`--set data.mean=[0.5,0.5,0.5] --set data.std=[0.5,0.5,0.5]`, which maps [0, 1] to [-1, 1]; the recipe itself
stays the DFEW code's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bench.api import InputSpec, Paper, WeightsSource, register_method
from bench.methods._baseline_recipes import bench3d_at, dfew_code, with_protocols

PAPER = Paper(authors="Carreira & Zisserman", title="Quo Vadis, Action Recognition? A New Model and the Kinetics "
              "Dataset", venue="CVPR", year=2017, arxiv="1705.07750",
              code="github.com/piergiaj/pytorch-i3d (via github.com/jiangxingxun/DFEW makemodel/i3d.py)")

Triple = tuple[int, int, int]


def same_padding(sizes: tuple[int, ...], kernel: Triple, stride: Triple) -> list[int]:
    """TF 'SAME' padding of a (T, H, W) input as F.pad's list (w_front, w_back, h_front, h_back, t_front, t_back)."""
    pads: list[int] = []
    for n, k, s in zip(reversed(sizes), reversed(kernel), reversed(stride), strict=True):
        total = max(k - s, 0) if n % s == 0 else max(k - n % s, 0)
        pads += [total // 2, total - total // 2]
    return pads


class SamePadMaxPool3d(nn.MaxPool3d):
    """MaxPool3d after TF-'SAME' zero padding (no parameters)."""

    def __init__(self, kernel: Triple, stride: Triple):
        super().__init__(kernel, stride)
        self.k, self.s = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, same_padding(tuple(x.shape[2:]), self.k, self.s)))


class Unit3D(nn.Module):
    """TF-'SAME' padded Conv3d (+ BatchNorm3d eps 1e-3, momentum 0.01) (+ ReLU); keys `conv3d.*`, `bn.*`."""

    def __init__(self, cin: int, cout: int, kernel: Triple = (1, 1, 1), stride: Triple = (1, 1, 1), bn: bool = True,
                 relu: bool = True, bias: bool = False):
        super().__init__()
        self.k, self.s, self.relu = kernel, stride, relu
        self.conv3d = nn.Conv3d(cin, cout, kernel, stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.01) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(F.pad(x, same_padding(tuple(x.shape[2:]), self.k, self.s)))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class InceptionModule(nn.Module):
    """[b0 1x1 | b1a 1x1 -> b1b 3x3x3 | b2a 1x1 -> b2b 3x3x3 | b3a max-pool 3x3x3/1 -> b3b 1x1], concatenated."""

    def __init__(self, cin: int, widths: tuple[int, int, int, int, int, int]):
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3 = widths
        self.b0 = Unit3D(cin, w0)
        self.b1a = Unit3D(cin, w1a)
        self.b1b = Unit3D(w1a, w1b, (3, 3, 3))
        self.b2a = Unit3D(cin, w2a)
        self.b2b = Unit3D(w2a, w2b, (3, 3, 3))
        self.b3a = SamePadMaxPool3d((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(cin, w3)
        self.out_channels = w0 + w1b + w2b + w3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


# end point -> Inception widths (b0, b1a, b1b, b2a, b2b, b3b); Carreira & Zisserman / piergiaj
MIXED = {"Mixed_3b": (64, 96, 128, 16, 32, 32), "Mixed_3c": (128, 128, 192, 32, 96, 64),
         "Mixed_4b": (192, 96, 208, 16, 48, 64), "Mixed_4c": (160, 112, 224, 24, 64, 64),
         "Mixed_4d": (128, 128, 256, 24, 64, 64), "Mixed_4e": (112, 144, 288, 32, 64, 64),
         "Mixed_4f": (256, 160, 320, 32, 128, 128), "Mixed_5b": (256, 160, 320, 32, 128, 128),
         "Mixed_5c": (384, 192, 384, 48, 128, 128)}


def final_grid(frames: int, size: int) -> Triple:
    """(T, H, W) entering the average pool: 'SAME' strides give ceil(n / s); time /2 (1a), /2 (4a), /2 (5a); space
    /2 five times (1a, 2a, 3a, 4a, 5a)."""
    t = frames
    for _ in range(3):
        t = math.ceil(t / 2)
    s = size
    for _ in range(5):
        s = math.ceil(s / 2)
    return t, s, s


class InceptionI3d(nn.Module):
    """Inception-v1 I3D (RGB): piergiaj's end points, an average pool over the whole final grid, dropout, logits."""

    def __init__(self, num_classes: int = 7, frames: int = 16, size: int = 224, dropout: float = 0.5):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = SamePadMaxPool3d((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = SamePadMaxPool3d((1, 3, 3), (1, 2, 2))
        cin = 192
        for name in ("Mixed_3b", "Mixed_3c"):
            cin = self._mixed(name, cin)
        self.MaxPool3d_4a_3x3 = SamePadMaxPool3d((3, 3, 3), (2, 2, 2))
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            cin = self._mixed(name, cin)
        self.MaxPool3d_5a_2x2 = SamePadMaxPool3d((2, 2, 2), (2, 2, 2))
        for name in ("Mixed_5b", "Mixed_5c"):
            cin = self._mixed(name, cin)
        self.avg_pool = nn.AvgPool3d(final_grid(frames, size), stride=1)
        self.dropout = nn.Dropout(dropout)
        self.logits = Unit3D(cin, num_classes, bn=False, relu=False, bias=True)
        self.num_features = cin

    def _mixed(self, name: str, cin: int) -> int:
        module = InceptionModule(cin, MIXED[name])
        setattr(self, name, module)
        return module.out_channels

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, 1024) pooled clip feature."""
        x = self.MaxPool3d_2a_3x3(self.Conv3d_1a_7x7(x))
        x = self.MaxPool3d_3a_3x3(self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x)))
        x = self.Mixed_3c(self.Mixed_3b(x))
        x = self.MaxPool3d_4a_3x3(x)
        x = self.Mixed_4f(self.Mixed_4e(self.Mixed_4d(self.Mixed_4c(self.Mixed_4b(x)))))
        x = self.MaxPool3d_5a_2x2(x)
        x = self.Mixed_5c(self.Mixed_5b(x))
        return self.avg_pool(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        pooled = self.forward_features(x)
        logits = self.logits(self.dropout(pooled)).flatten(1)
        if self.training:
            return {"logits": logits, "features": pooled.flatten(1)}
        return logits


def convert_piergiaj(sd: dict, model: nn.Module, notes: dict) -> dict:
    """rgb_imagenet.pt / rgb_charades.pt -> ours: names match; the logits (400 / 157 classes) are dropped, absent
    BN `num_batches_tracked` buffers are filled with 0 (what BatchNorm's loader does for pre-0.4 state_dicts)."""
    if "Conv3d_1a_7x7.conv3d.weight" not in sd:
        raise KeyError("Conv3d_1a_7x7.conv3d.weight (not a piergiaj I3D state_dict)")
    out = {k: v for k, v in sd.items() if not k.startswith("logits.")}
    notes["dropped"] = sorted(k for k in sd if k.startswith("logits."))
    filled = []
    for key in model.state_dict():
        if key.endswith(".num_batches_tracked") and key not in out and not key.startswith("logits."):
            out[key] = torch.tensor(0, dtype=torch.long)
            filled.append(key)
    if filled:
        notes["filled"] = f"{len(filled)} num_batches_tracked buffers absent from the file set to 0"
    return out


WEIGHTS = {
    "imagenet_kinetics": WeightsSource("piergiaj/pytorch-i3d rgb_imagenet.pt (ImageNet-inflated, Kinetics-400; also "
                                       "rgb_charades.pt): same key names, logits dropped; expects [-1, 1] input "
                                       "(set data.mean/std to 0.5)", "rgb_imagenet.pt", convert_piergiaj),
    "dfew": WeightsSource("a DFEW-repo I3D checkpoint (README release or its trainer: i3d_fold{k}_epo{NNN}_UAR.._"
                          "WAR...pth, 'model_state_dict', 'module.' prefix, 7 logits; [0,1] inputs): names match",
                          "i3d_fold1_epo*.pth"),
}

# CPU-sized deviation (<= 10 min on 2 cores): 8 frames at 48² (0.65 GMACs per clip, but many small kernels: a training
# step measured 1.1x the Hara r3d18's synthetic step, ~7.5 min for 10 epochs; the derived average pool covers the
# 1x2x2 final grid, which also keeps BN alive for a last batch of one clip), batch 16, last-epoch selection. The
# rest is the DFEW-code recipe (Adam 1e-3 constant, no augmentation).
SYNTHETIC = {"data": {"frames": 8, "size": 48}, "train": {"epochs": 10, "batch_size": 16, "selection": "last"}}

RECIPE = with_protocols("dfew_code", dfew_code=dfew_code("i3d", SYNTHETIC), bench3d=bench3d_at(SYNTHETIC))


@register_method("i3d", family="3D CNN", input=InputSpec(16, 224), paper=PAPER, recipe=RECIPE, weights=WEIGHTS,
                 literature=("I3D-RGB",),
                 test_views_note="dfew_code: 16 random sorted frames (train) / linspace (test), 1 view, epoch "
                                 "picked on test")
def i3d(num_classes: int, frames: int, size: int, dropout: float = 0.5) -> nn.Module:
    """I3D-RGB: inflated Inception-v1 with TF-'SAME' padding, exact to piergiaj/pytorch-i3d (DFEW baseline)."""
    return InceptionI3d(num_classes, frames, size, dropout)
