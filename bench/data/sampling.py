"""Temporal samplers: which frame indices of a clip of `num_frames` frames become the model's T frames.

* segment: S = frames / D segments x D consecutive frames (TSN style, Former-DFER / DFER-CLIP): a random
  offset per segment for training, the segment centre for testing.
* dense: T frames at stride s from one window of span (T-1)*s+1 (VideoMAE / MAE-DFER / IFDD): a random window
  for training; for testing `uniform` K windows, `all` non-overlapping windows, or one `random` window.

Clips shorter than needed are padded by repetition (segment sampler: every frame repeated evenly; dense:
`edge` repeats the last index; `repeat_first` / `repeat_last` stretch
the clip by repeating every frame, giving the remainder to the first / last frames as IFDD's readers do).
Test clips are never dropped.
"""

from __future__ import annotations

import random

import numpy as np


def _stretch(num_frames: int, span: int, mode: str) -> list[int]:
    """IFDD-style padding: each frame repeated floor(span/L) times, the first/last (span mod L) once more."""
    reps, extra = divmod(span, num_frames)
    out: list[int] = []
    for i in range(num_frames):
        bonus = (i < extra) if mode == "repeat_first" else (i >= num_frames - extra)
        out.extend([i] * (reps + int(bonus)))
    return out[:span]


def _window(num_frames: int, start: int, frames: int, stride: int, pad: str) -> list[int]:
    span = (frames - 1) * stride + 1
    if num_frames < span and pad in ("repeat_first", "repeat_last"):
        return _stretch(num_frames, span, pad)[::stride][:frames]
    return [min(start + k * stride, num_frames - 1) for k in range(frames)]


def dense_starts(num_frames: int, frames: int, stride: int, mode: str, views: int, rng: random.Random | None) -> list[int]:
    """Window start positions for the dense sampler."""
    span = (frames - 1) * stride + 1
    last = max(num_frames - span, 0)
    if mode == "random":
        return [(rng or random).randint(0, last)]
    if mode == "all":
        return list(range(0, last + 1, span)) or [0]
    if views == 1:
        return [last // 2]
    return [int(round(x)) for x in np.linspace(0, last, views)]


def _segment_offsets(num_frames: int, segments: int, seg_len: int, rng: random.Random | None, train: bool) -> list[int]:
    usable = max(num_frames - seg_len + 1, 1)
    tick = usable / segments
    if train and rng is not None:
        if tick >= 1:
            return [int(tick * k) + rng.randrange(max(int(tick), 1)) for k in range(segments)]
        return sorted(rng.randrange(usable) for _ in range(segments))
    return [int(tick * k + tick / 2) for k in range(segments)]


def _stretch_even(num_frames: int, frames: int) -> list[int]:
    """A clip shorter than the model's T: every frame repeated about equally often, in order."""
    return [i * num_frames // frames for i in range(frames)]


def sample_train(num_frames: int, cfg, rng: random.Random) -> list[int]:
    """Frame indices of one training clip."""
    if cfg.sampler == "segment" and num_frames < cfg.frames:
        return _stretch_even(num_frames, cfg.frames)
    if cfg.sampler == "segment":
        offs = _segment_offsets(num_frames, cfg.frames // cfg.segment_len, cfg.segment_len, rng, train=True)
        return [min(o + d, num_frames - 1) for o in offs for d in range(cfg.segment_len)]
    start = dense_starts(num_frames, cfg.frames, cfg.stride, "random", 1, rng)[0]
    return _window(num_frames, start, cfg.frames, cfg.stride, cfg.pad)


def sample_test(num_frames: int, cfg, rng: random.Random | None = None) -> list[list[int]]:
    """Frame indices of each temporal test view of a clip (one list per view)."""
    if cfg.sampler == "segment" and num_frames < cfg.frames:
        return [_stretch_even(num_frames, cfg.frames)]
    if cfg.sampler == "segment":
        seg = cfg.frames // cfg.segment_len
        if cfg.test_views <= 1 or cfg.test_temporal == "all":
            offs = _segment_offsets(num_frames, seg, cfg.segment_len, None, train=False)
            return [[min(o + d, num_frames - 1) for o in offs for d in range(cfg.segment_len)]]
        # K views: shift the in-segment position evenly (like TSN's multi-clip testing)
        usable = max(num_frames - cfg.segment_len + 1, 1)
        tick = usable / seg
        views = []
        for v in range(cfg.test_views):
            pos = tick * (v + 0.5) / cfg.test_views
            views.append([min(int(tick * k + pos) + d, num_frames - 1) for k in range(seg) for d in range(cfg.segment_len)])
        return views
    starts = dense_starts(num_frames, cfg.frames, cfg.stride, cfg.test_temporal, cfg.test_views, rng)
    return [_window(num_frames, s, cfg.frames, cfg.stride, cfg.pad) for s in starts]


def views_per_video(num_frames: int, cfg) -> int:
    """Number of temporal x spatial views the test protocol evaluates for a clip of this length."""
    return len(sample_test(num_frames, cfg, random.Random(0))) * cfg.test_crops
