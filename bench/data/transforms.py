"""Clip-consistent transforms on uint8 clips (T,H,W,3): one random draw per clip, applied to every frame.

Random parameters come from an explicit per-sample generator, so a sample's augmentation depends only on
(seed, epoch, index): identical with 0 or N loader workers, and after a resumed run.
"""

from __future__ import annotations

import math
import random

import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

_INTERP = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}


def _rrc_params(h: int, w: int, scale, ratio, rng: random.Random) -> tuple[int, int, int, int]:
    """RandomResizedCrop box (top, left, height, width), torchvision's rule with our generator."""
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            return rng.randint(0, h - ch), rng.randint(0, w - cw), ch, cw
    in_ratio = w / h
    if in_ratio < min(ratio):
        cw, ch = w, int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        ch, cw = h, int(round(h * max(ratio)))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def train_transform(clip, cfg, rng: random.Random) -> torch.Tensor:
    """uint8 (T,H,W,3) numpy -> float (3,T,S,S): flip, random resized crop, colour jitter, /255, clamp, normalise."""
    x = torch.from_numpy(clip).permute(0, 3, 1, 2)  # T,C,H,W uint8
    if cfg.flip and rng.random() < 0.5:
        x = TF.horizontal_flip(x)
    h, w = x.shape[-2:]
    top, left, ch, cw = _rrc_params(h, w, cfg.rrc_scale, cfg.rrc_ratio, rng)
    x = TF.resized_crop(x, top, left, ch, cw, [cfg.size, cfg.size], interpolation=_INTERP[cfg.interpolation], antialias=True)
    b, c, s, hue = cfg.color_jitter
    if any((b, c, s, hue)):
        ops = [0, 1, 2, 3]
        rng.shuffle(ops)
        for op in ops:
            if op == 0 and b > 0:
                x = TF.adjust_brightness(x, rng.uniform(max(0.0, 1 - b), 1 + b))
            elif op == 1 and c > 0:
                x = TF.adjust_contrast(x, rng.uniform(max(0.0, 1 - c), 1 + c))
            elif op == 2 and s > 0:
                x = TF.adjust_saturation(x, rng.uniform(max(0.0, 1 - s), 1 + s))
            elif op == 3 and hue > 0:
                x = TF.adjust_hue(x, rng.uniform(-hue, hue))
    return _finish(x, cfg)


def eval_transforms(clip, cfg) -> list[torch.Tensor]:
    """uint8 (T,H,W,3) -> list of float (3,T,S,S), one per spatial crop (1: centre; 3: corners + centre)."""
    x = torch.from_numpy(clip).permute(0, 3, 1, 2)
    if cfg.test_crops == 1:
        x = TF.resize(x, cfg.size, interpolation=_INTERP[cfg.interpolation], antialias=True)
        return [_finish(TF.center_crop(x, [cfg.size, cfg.size]), cfg)]
    short = int(round(cfg.size * 256 / 224))
    x = TF.resize(x, short, interpolation=_INTERP[cfg.interpolation], antialias=True)
    h, w = x.shape[-2:]
    s = cfg.size
    if h == w:  # square faces: top-left, centre, bottom-right
        boxes = [(0, 0), ((h - s) // 2, (w - s) // 2), (h - s, w - s)]
    elif w > h:
        boxes = [((h - s) // 2, 0), ((h - s) // 2, (w - s) // 2), ((h - s) // 2, w - s)]
    else:
        boxes = [(0, (w - s) // 2), ((h - s) // 2, (w - s) // 2), (h - s, (w - s) // 2)]
    return [_finish(TF.crop(x, top, left, s, s), cfg) for top, left in boxes]


def _finish(x: torch.Tensor, cfg) -> torch.Tensor:
    x = x.float().div_(255.0)
    if cfg.clamp:
        x = x.clamp_(0.0, 1.0)
    if cfg.mean is not None:
        mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
        std = torch.tensor(cfg.std).view(1, 3, 1, 1)
        x = (x - mean) / std
    return x.permute(1, 0, 2, 3).contiguous()  # C,T,H,W
