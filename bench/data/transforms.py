"""Clip-consistent transforms on uint8 clips (T,H,W,3): one random draw per clip, applied to every frame.

Random parameters come from an explicit per-sample generator, so a sample's augmentation depends only on
(seed, epoch, index): identical with 0 or N loader workers, and after a resumed run.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass

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
AUG_ROWS = 7  # rows of an augmentation draw as a tensor: flip, box (top, left), box (h, w), 4 jitter steps


@dataclass
class TrainAug:
    """One clip's random augmentation: a single draw applied to every frame. `box` is the crop on the source
    frame, already mirrored when `flip` (crop the mirrored box, then flip the small result: identical to
    flip-then-crop); `steps` are the colour ops (0 brightness, 1 contrast, 2 saturation, 3 hue) in drawn order."""

    flip: bool
    box: tuple[int, int, int, int]
    steps: list[tuple[int, float]]

    def to_tensor(self) -> torch.Tensor:
        """(AUG_ROWS, 2) float64, so a batch of draws travels through the loader's collate to the device."""
        t = torch.full((AUG_ROWS, 2), -1.0, dtype=torch.float64)
        t[0, 0] = float(self.flip)
        t[1] = torch.tensor(self.box[:2], dtype=torch.float64)
        t[2] = torch.tensor(self.box[2:], dtype=torch.float64)
        for k, (op, f) in enumerate(self.steps):
            t[3 + k, 0], t[3 + k, 1] = float(op), f
        return t

    @classmethod
    def from_tensor(cls, t: torch.Tensor) -> TrainAug:
        v = t.tolist()
        box = (int(v[1][0]), int(v[1][1]), int(v[2][0]), int(v[2][1]))
        return cls(bool(v[0][0]), box, [(int(op), f) for op, f in v[3:] if op >= 0])


def draw_train_aug(h: int, w: int, cfg, rng: random.Random) -> TrainAug:
    """Flip, RandomResizedCrop box and ColorJitter factors in torchvision's draw order, from our generator."""
    flip = bool(cfg.flip and rng.random() < 0.5)
    top, left, ch, cw = _rrc_params(h, w, cfg.rrc_scale, cfg.rrc_ratio, rng)
    if flip:
        left = w - left - cw
    b, c, sat, hue = cfg.color_jitter
    steps: list[tuple[int, float]] = []
    if any((b, c, sat, hue)):
        ops = [0, 1, 2, 3]
        rng.shuffle(ops)
        for op in ops:
            lim = (b, c, sat, hue)[op]
            if lim > 0:
                steps.append((op, rng.uniform(-lim, lim) if op == 3 else rng.uniform(max(0.0, 1 - lim), 1 + lim)))
    return TrainAug(flip, (top, left, ch, cw), steps)


def _crop_resize(x: torch.Tensor, aug: TrainAug, cfg) -> torch.Tensor:
    """uint8 (T,C,H,W) -> uint8 (T,C,S,S): the resized crop of the box, flipped when drawn."""
    top, left, ch, cw = aug.box
    x = TF.resized_crop(x, top, left, ch, cw, [cfg.size, cfg.size], interpolation=_INTERP[cfg.interpolation],
                        antialias=True)
    return x.flip(-1) if aug.flip else x


def _photometric(x: torch.Tensor, steps: list[tuple[int, float]], cfg, group: int = _FRAME_GROUP) -> torch.Tensor:
    """uint8 (T,C,S,S) -> float (3,T,S,S): colour jitter in drawn order, /255, normalise.

    Computed in float on planar buffers without uint8 round trips between the jitter ops; every op is local
    to a frame (contrast uses the per-frame mean), so it works on `group` frames at a time with small reused
    buffers (fewer page faults and cache misses than whole-clip temporaries on CPU)."""
    t_, s = x.shape[0], x.shape[-1]
    y = torch.empty((3, t_, s, s), dtype=torch.float32, device=x.device)
    ws = [torch.empty((min(group, t_), s, s), dtype=torch.float32, device=x.device) for _ in range(7)]
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
    return y


@functools.lru_cache(maxsize=64)
def rand_augment_op(config: str, short_side: int, interpolation: str):
    """timm's RandAugment for `config` (e.g. 'rand-m7-n4-mstd0.5-inc1') with VideoMAE's hyper-parameters: translations
    up to 0.45 x the frame's short side (VideoMAE: 0.45 x the crop size, on frames squashed to it), the run's
    interpolation. A bad config string is one line."""
    from PIL import Image
    from timm.data.auto_augment import rand_augment_transform

    from bench.errors import BenchError

    resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}[interpolation]
    try:
        return rand_augment_transform(config, {"translate_const": int(short_side * 0.45), "interpolation": resample})
    except (AssertionError, ValueError, KeyError, IndexError) as e:
        raise BenchError(f"data.randaugment={config!r}: not a timm RandAugment string such as "
                         f"'rand-m7-n4-mstd0.5-inc1' ({type(e).__name__}: {e})") from None


def rand_augment(clip: np.ndarray, cfg, rng: random.Random) -> np.ndarray:
    """uint8 (T,H,W,3) -> uint8 (T,H,W,3): RandAugment with one draw for the whole clip, each op applied to every
    frame, as the video RandAugment of VideoMAE / MAE-DFER does. timm draws the ops, their probabilities and
    magnitudes from python's and numpy's global generators: both are put in the same state (seeded from the
    sample's generator) before each frame, and restored afterwards."""
    from PIL import Image

    op = rand_augment_op(cfg.randaugment, min(clip.shape[1:3]), cfg.interpolation)
    seed = rng.getrandbits(32)
    saved = random.getstate(), np.random.get_state()
    try:
        out = np.empty_like(clip)
        for t, frame in enumerate(clip):
            random.seed(seed)
            np.random.seed(seed)
            out[t] = np.asarray(op(Image.fromarray(frame)))
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
    return out


def random_erase_(x: torch.Tensor, prob: float, rng: random.Random) -> torch.Tensor:
    """float (3,T,S,S), normalised: with probability `prob`, one box (2-33 % of the frame, aspect 0.3-3.3, up to 10
    tries) through all frames is filled with per-pixel N(0,1) noise, the same in every frame (VideoMAE's
    RandomErasing, mode 'pixel', one box, cube). In place; returns x."""
    if rng.random() > prob:
        return x
    h_img, w_img = x.shape[-2:]
    for _ in range(10):
        area = rng.uniform(0.02, 1 / 3) * h_img * w_img
        aspect = math.exp(rng.uniform(math.log(0.3), math.log(1 / 0.3)))
        h, w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if h < h_img and w < w_img:
            top, left = rng.randint(0, h_img - h), rng.randint(0, w_img - w)
            noise = torch.randn((x.shape[0], 1, h, w), generator=torch.Generator().manual_seed(rng.getrandbits(63)))
            x[:, :, top:top + h, left:left + w] = noise.to(x.device, x.dtype)
            break
    return x


def train_transform(clip: np.ndarray, cfg, rng: random.Random) -> torch.Tensor:
    """uint8 (T,H,W,3) -> float (3,T,S,S): flip, random resized crop, colour jitter (random order), /255,
    normalise; torchvision's operations and draw order (tests/test_data_lists_frames.py checks it against
    torchvision's own ops). Optionally RandAugment first and random erasing last (`rand_augment`,
    `random_erase_`). Why not torchvision's colour ops directly: on a (T,C,H,W) clip they cost most of a
    training sample (channels-last strides, ~40 temporaries in adjust_hue); this path is ~5x faster on
    16x224x224 (benchmarks/data_loading.py). It differs from torchvision only by the uint8 truncations
    torchvision does between jitter ops (mean ~1/255, at most a few /255)."""
    if cfg.randaugment:
        clip = rand_augment(clip, cfg, rng)
    x = torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2)  # T,C,H,W (channels-last strides)
    aug = draw_train_aug(x.shape[-2], x.shape[-1], cfg, rng)
    y = _photometric(_crop_resize(x, aug, cfg), aug.steps, cfg)
    return random_erase_(y, cfg.random_erasing, rng) if cfg.random_erasing > 0 else y


def train_frames(clip: np.ndarray, cfg, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    """Worker share of `data.augment_on=device`: the decoded uint8 frames (T,H,W,3) untouched, plus the
    augmentation draw as a tensor; `augment_batch` applies it on the training device. Same generator calls as
    train_transform, so a sample gets the same augmentation whichever side computes it."""
    aug = draw_train_aug(clip.shape[1], clip.shape[2], cfg, rng)
    return torch.from_numpy(np.ascontiguousarray(clip)), aug.to_tensor()


def augment_batch(frames: torch.Tensor, augs: torch.Tensor, sizes: torch.Tensor, cfg) -> torch.Tensor:
    """Device share of `data.augment_on=device`: uint8 (B,T,H,W,3) frames (each clip top-left in its canvas,
    true sizes in `sizes` (B,2)) and their draws (B,AUG_ROWS,2) -> float (B,3,T,S,S), on the frames' device.

    The same operations as train_transform, clip by clip: bit-identical on CPU (tests/test_sampling.py); on
    CUDA the uint8 resize runs in float and rounds back (torchvision's rule), so values can differ by 1/255."""
    group = _FRAME_GROUP if frames.device.type == "cpu" else frames.shape[1]
    out = torch.empty((frames.shape[0], 3, frames.shape[1], cfg.size, cfg.size), dtype=torch.float32,
                      device=frames.device)
    for i, (t, (h, w)) in enumerate(zip(augs.cpu(), sizes.tolist(), strict=True)):
        aug = TrainAug.from_tensor(t)
        x = frames[i, :, :h, :w].permute(0, 3, 1, 2)
        out[i] = _photometric(_crop_resize(x, aug, cfg), aug.steps, cfg, group)
    return out


def collate_frames(items: list[dict]) -> dict:
    """Batch `train_frames` items whose frame sizes may differ (FERV39k face crops): each clip is placed at
    the top-left of a zero canvas of the largest size, with its true size kept for augment_batch."""
    from torch.utils.data import default_collate

    clips = [it["clip"] for it in items]
    sizes = torch.tensor([c.shape[1:3] for c in clips], dtype=torch.int64)
    h, w = int(sizes[:, 0].max()), int(sizes[:, 1].max())
    if all(c.shape == clips[0].shape for c in clips):
        batch = torch.stack(clips)
    else:
        batch = torch.zeros((len(clips), clips[0].shape[0], h, w, 3), dtype=torch.uint8)
        for i, c in enumerate(clips):
            batch[i, :, : c.shape[1], : c.shape[2]] = c
    rest = default_collate([{k: v for k, v in it.items() if k != "clip"} for it in items])
    return {"clip": batch, "sizes": sizes, **rest}


def eval_transforms(clip, cfg, hook=None) -> list[torch.Tensor]:
    """uint8 (T,H,W,3) -> list of float (3,T,S,S), one per spatial crop (1: centre; 3: corners + centre).
    `hook` (C,T,H,W float in [0, 1]) -> the same, runs on each crop before normalisation (test-time corruptions,
    the data check's preparation alternatives)."""
    x = torch.from_numpy(clip).permute(0, 3, 1, 2)
    if cfg.test_crops == 1:
        x = TF.resize(x, cfg.size, interpolation=_INTERP[cfg.interpolation], antialias=True)
        return [_finish(TF.center_crop(x, [cfg.size, cfg.size]), cfg, hook)]
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
    return [_finish(TF.crop(x, top, left, s, s), cfg, hook) for top, left in boxes]


def _finish(x: torch.Tensor, cfg, hook=None) -> torch.Tensor:
    x = x.float().div_(255.0)
    if cfg.clamp:
        x = x.clamp_(0.0, 1.0)
    if hook is not None:
        x = hook(x.permute(1, 0, 2, 3)).permute(1, 0, 2, 3)
    if cfg.mean is not None:
        mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
        std = torch.tensor(cfg.std).view(1, 3, 1, 1)
        x = (x - mean) / std
    return x.permute(1, 0, 2, 3).contiguous()  # C,T,H,W
