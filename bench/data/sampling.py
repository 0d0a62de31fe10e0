"""Temporal samplers: which frame indices of a clip of `num_frames` frames become the model's T frames.

* segment: S = frames / D segments x D consecutive frames (TSN style, Former-DFER / DFER-CLIP): a random
  offset per segment for training, the segment centre for testing.
* dense: T frames at stride s from one window of span (T-1)*s+1 (VideoMAE / MAE-DFER / IFDD): a random window
  for training; for testing `uniform` K windows, `all` non-overlapping windows, or one `random` window.
* tsn: the TSN-style loader of Former-DFER (zengqunzhao/Former-DFER @ 1b5ad6f, `dataloader/dataset_DFEW.py`) and
  the code bases that copied it (DFER-CLIP, EC-STFL, NR-DFERNet, IAL, ...), exactly: S = frames / D segments of
  D consecutive frames, with a = (n - D + 1) // S, training starts k*a + U{0..a-1} (integer segments, so the last
  (n - D + 1) mod S start positions are never drawn); when a = 0 and n > S, S sorted random starts; test starts
  int(t/2 + t*k), t = (n - D + 1) / S, when n > S + D - 1. Each start s reads s, s+1, ... capped at the last
  frame. Clips too short for that: `pad=zero` puts every segment at frame 0 (Former-DFER, EC-STFL), `pad=edge`
  takes 0..n-1 then repeats the last frame (DFER-CLIP).
* dfew: the DFEW code's rule (jiangxingxun/DFEW @ 7c1ba78, `libs/DFEW_Dataset.py` `generate_index` with
  `isconsecutive: False`, every config): training draws T distinct indices of the whole clip at random and sorts
  them; testing takes `linspace(0, N-1, T)` truncated to int; a clip of N < T frames is first tiled (0..N-1
  repeated whole until at least T entries) and the indices are drawn from the tiled list. Exact, index for index,
  given the same `random.Random` state (the official code uses Python's `random` module).

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


def _tsn_expand(starts: list[int], seg_len: int, num_frames: int) -> list[int]:
    """Each start s -> s, s+1, ... (seg_len frames), never past the last frame (the loaders' `if p < n - 1`)."""
    return [min(s + d, num_frames - 1) for s in starts for d in range(seg_len)]


def _tsn_short(num_frames: int, frames: int, seg_len: int, pad: str) -> list[int]:
    if pad == "zero":
        return _tsn_expand([0] * (frames // seg_len), seg_len, num_frames)
    return [min(i, num_frames - 1) for i in range(frames)]


def _tsn_train(num_frames: int, cfg, rng: random.Random) -> list[int]:
    segments = cfg.frames // cfg.segment_len
    avg = (num_frames - cfg.segment_len + 1) // segments
    if avg > 0:
        starts = [k * avg + rng.randrange(avg) for k in range(segments)]
    elif num_frames > segments:
        starts = sorted(rng.randrange(num_frames - cfg.segment_len + 1) for _ in range(segments))
    else:
        return _tsn_short(num_frames, cfg.frames, cfg.segment_len, cfg.pad)
    return _tsn_expand(starts, cfg.segment_len, num_frames)


def _tsn_test(num_frames: int, cfg) -> list[int]:
    segments = cfg.frames // cfg.segment_len
    if num_frames <= segments + cfg.segment_len - 1:
        return _tsn_short(num_frames, cfg.frames, cfg.segment_len, cfg.pad)
    tick = (num_frames - cfg.segment_len + 1) / segments
    return _tsn_expand([int(tick / 2.0 + tick * k) for k in range(segments)], cfg.segment_len, num_frames)


def _dfew_tiled(num_frames: int, frames: int) -> list[int]:
    """DFEW's short-clip rule: the clip's indices repeated whole until the list holds at least `frames`."""
    copies = max(-(-frames // num_frames), 1)
    return list(range(num_frames)) * copies


def _dfew_train(num_frames: int, frames: int, rng: random.Random) -> list[int]:
    pool = _dfew_tiled(num_frames, frames)
    return [pool[i] for i in sorted(rng.sample(range(len(pool)), frames))]


def _dfew_test(num_frames: int, frames: int) -> list[int]:
    pool = _dfew_tiled(num_frames, frames)
    return [pool[i] for i in np.linspace(0, len(pool) - 1, frames).astype(int)]


def sample_train(num_frames: int, cfg, rng: random.Random) -> list[int]:
    """Frame indices of one training clip."""
    if cfg.sampler == "dfew":
        return _dfew_train(num_frames, cfg.frames, rng)
    if cfg.sampler == "tsn":
        return _tsn_train(num_frames, cfg, rng)
    if cfg.sampler == "segment" and num_frames < cfg.frames:
        return _stretch_even(num_frames, cfg.frames)
    if cfg.sampler == "segment":
        offs = _segment_offsets(num_frames, cfg.frames // cfg.segment_len, cfg.segment_len, rng, train=True)
        return [min(o + d, num_frames - 1) for o in offs for d in range(cfg.segment_len)]
    start = dense_starts(num_frames, cfg.frames, cfg.stride, "random", 1, rng)[0]
    return _window(num_frames, start, cfg.frames, cfg.stride, cfg.pad)


def sample_test(num_frames: int, cfg, rng: random.Random | None = None) -> list[list[int]]:
    """Frame indices of each temporal test view of a clip (one list per view)."""
    if cfg.sampler == "dfew":
        return [_dfew_test(num_frames, cfg.frames)]
    if cfg.sampler == "tsn":
        return [_tsn_test(num_frames, cfg)]
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
