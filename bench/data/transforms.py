"""Clip-consistent transforms on uint8 clips (T,H,W,3): one random draw per clip, applied to every frame.

Random parameters come from an explicit per-sample generator, so a sample's augmentation depends only on
(seed, epoch, index): identical with 0 or N loader workers, and after a resumed run.
"""

from __future__ import annotations

import math
import random

import numpy as np
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


def _gray_into(y, out):
    """ITU-R 601 luma of planar (3,T,H,W) float into out (T,H,W): torchvision's weights."""
    import torch

    torch.mul(y[0], 0.2989, out=out)
    out.add_(y[1], alpha=0.587)
    out.add_(y[2], alpha=0.114)
    return out


def _mod6_(k, tmp) -> None:
    """k mod 6 in place for k >= 0 (floor-based: several times faster than remainder_ on CPU)."""
    import torch

    torch.mul(k, 1.0 / 6.0, out=tmp)
    tmp.floor_()
    k.sub_(tmp, alpha=6.0)


def _select_(h, t, m) -> None:
    """h = where(m, t, h) for a 0/1 float mask m, branch-free; t is clobbered."""
    t.sub_(h).mul_(m)
    h.add_(t)


def _hue_(y, factor: float, ws: list) -> None:
    """In-place HSV hue rotation of planar float (3,T,H,W) in [0,255], the same formula as torchvision's
    adjust_hue (rgb->hsv, h+factor mod 1, hsv->rgb) written as V - (V-min)*clamp(min(k,4-k),0,1), k=(n+6h) mod 6,
    with preallocated buffers instead of ~40 temporaries, and masked selects as arithmetic blends (torch's
    CPU `where` on a data-dependent mask is ~8x slower)."""
    import torch

    r, g, b = y[0], y[1], y[2]
    mx, mn, d, h, t, k, mask = ws
    torch.maximum(r, g, out=mx)
    torch.maximum(mx, b, out=t)
    mx.copy_(t)
    torch.minimum(r, g, out=mn)
    torch.minimum(mn, b, out=t)
    mn.copy_(t)
    torch.sub(mx, mn, out=d)
    # hue in sextants: (g-b)/d if max==r, (b-r)/d+2 if max==g, (r-g)/d+4 otherwise; 0 where d==0
    torch.sub(r, g, out=h)
    h.add_(d, alpha=4.0)  # r-g+4d  (max==b)
    torch.sub(b, r, out=t)
    t.add_(d, alpha=2.0)  # b-r+2d  (max==g)
    _select_(h, t, torch.eq(g, mx, out=mask))
    torch.sub(g, b, out=t)  # g-b     (max==r)
    _select_(h, t, torch.eq(r, mx, out=mask))
    torch.clamp(d, min=1e-12, out=t)
    h.div_(t).add_(6.0 * factor + 6.0)  # in [2, 14): factor is within [-0.5, 0.5]
    for c, n in ((0, 5.0), (1, 3.0), (2, 1.0)):
        torch.add(h, n, out=k)
        _mod6_(k, t)
        torch.mul(k, -1.0, out=t).add_(4.0)
        torch.minimum(k, t, out=k)
        k.clamp_(0.0, 1.0).mul_(d)
        torch.sub(mx, k, out=y[c])


_FRAME_GROUP = 4


def train_transform(clip: np.ndarray, cfg, rng: random.Random) -> torch.Tensor:
    """uint8 (T,H,W,3) -> float (3,T,S,S): flip, random resized crop, colour jitter (random order), /255,
    normalise; torchvision's operations and draw order, computed in float on planar buffers without uint8
    round trips between the jitter ops (tests/test_sampling.py checks it against torchvision's own ops). Why: torchvision's colour ops on a (T,C,H,W) clip cost
    most of a training sample (channels-last strides, ~40 temporaries in adjust_hue); this path is ~5x
    faster on 16x224x224 (benchmarks/data_loading.py). Differences to train_transform are the uint8
    truncations it does between jitter ops (mean ~1/255, at most a few /255)."""
    x = torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2)  # T,C,H,W (channels-last strides)
    flip = bool(cfg.flip and rng.random() < 0.5)
    h, w = x.shape[-2:]
    top, left, ch, cw = _rrc_params(h, w, cfg.rrc_scale, cfg.rrc_ratio, rng)
    if flip:  # crop the mirrored box and flip the small result: identical to flip-then-crop
        left = w - left - cw
    x = TF.resized_crop(x, top, left, ch, cw, [cfg.size, cfg.size], interpolation=_INTERP[cfg.interpolation],
                        antialias=True)
    if flip:
        x = x.flip(-1)
    t_, s = x.shape[0], cfg.size
    y = torch.empty((3, t_, s, s), dtype=torch.float32)
    b, c, sat, hue = cfg.color_jitter
    steps: list[tuple[int, float]] = []  # (op, factor) in the order drawn, exactly as train_transform draws
    if any((b, c, sat, hue)):
        ops = [0, 1, 2, 3]
        rng.shuffle(ops)
        for op in ops:
            lim = (b, c, sat, hue)[op]
            if lim > 0:
                steps.append((op, rng.uniform(-lim, lim) if op == 3 else rng.uniform(max(0.0, 1 - lim), 1 + lim)))
    # every op is local to a frame (contrast uses the per-frame mean), so work on a few frames at a time
    # with small, reused buffers (fewer page faults and cache misses than whole-clip temporaries)
    group = _FRAME_GROUP
    ws = [torch.empty((min(group, t_), s, s), dtype=torch.float32) for _ in range(7)]
    for t0 in range(0, t_, group):
        t1 = min(t0 + group, t_)
        yc = y[:, t0:t1]
        yc.copy_(x[t0:t1].permute(1, 0, 2, 3))  # planar float in one pass
        w = [a[: t1 - t0] for a in ws]
        for op, f in steps:
            if op == 0:
                yc.mul_(f).clamp_(0.0, 255.0)
            elif op == 1:
                mean = _gray_into(yc, w[0]).floor_().mean(dim=(1, 2))  # per frame, like torchvision on uint8
                yc.mul_(f).add_(((1 - f) * mean).view(1, t1 - t0, 1, 1)).clamp_(0.0, 255.0)
            elif op == 2:
                _gray_into(yc, w[0]).floor_().mul_(1 - f)
                yc.mul_(f).add_(w[0].unsqueeze(0)).clamp_(0.0, 255.0)
            else:
                _hue_(yc, f, w)
        if cfg.mean is not None:
            for k in range(3):
                yc[k].mul_(1.0 / (255.0 * cfg.std[k])).sub_(cfg.mean[k] / cfg.std[k])
        else:
            yc.mul_(1.0 / 255.0)
    return y  # C,T,H,W float


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
