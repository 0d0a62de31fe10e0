"""Temporal samplers and clip-consistent transforms."""

from __future__ import annotations

import random

import numpy as np
import torch

from bench.data.sampling import _stretch, sample_test, sample_train, views_per_video
from bench.data.transforms import augment_batch, eval_transforms, train_transform
from bench.mixup import VideoMixup
from bench.spec import DataCfg


def test_segment_sampler_covers_the_clip_in_order():
    cfg = DataCfg(frames=16, sampler="segment", segment_len=2)
    for n in (5, 16, 40, 300):
        idx = sample_train(n, cfg, random.Random(n))
        assert len(idx) == 16 and all(0 <= i < n for i in idx)
        assert idx == sorted(idx)
        (view,) = sample_test(n, cfg)
        assert len(view) == 16 and view == sorted(view)
    (view,) = sample_test(160, DataCfg(frames=16, sampler="segment"))
    assert view[0] == 5 and view[-1] == 155  # segment centres of 10-frame segments


def test_dense_windows_and_padding():
    cfg = DataCfg(frames=16, sampler="dense", stride=1, test_temporal="all")
    assert [v[0] for v in sample_test(50, cfg)] == [0, 16, 32]  # every non-overlapping window
    assert sample_test(10, cfg) == [[*range(10), 9, 9, 9, 9, 9, 9]]  # short clip: edge padding, never dropped
    uni = DataCfg(frames=8, sampler="dense", stride=2, test_temporal="uniform", test_views=3)
    starts = [v[0] for v in sample_test(100, uni)]
    assert starts == [0, 42, 85] and all(np.diff(v).tolist() == [2] * 7 for v in sample_test(100, uni))
    assert views_per_video(100, DataCfg(frames=8, sampler="dense", test_views=2, test_crops=3)) == 6


def test_ifdd_stretch_padding():
    # each frame repeated floor(span/L) times, the first / last (span mod L) once more
    assert _stretch(5, 16, "repeat_first") == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert _stretch(5, 16, "repeat_last") == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 4]
    cfg = DataCfg(frames=8, sampler="dense", stride=2, pad="repeat_last", test_temporal="random")
    (view,) = sample_test(5, cfg, random.Random(0))
    assert view == _stretch(5, 15, "repeat_last")[::2]


def test_random_test_window_is_reproducible_by_seed():
    cfg = DataCfg(frames=4, sampler="dense", test_temporal="random")
    a = sample_test(100, cfg, random.Random(3))
    assert a == sample_test(100, cfg, random.Random(3))


def test_augmentation_is_the_same_for_every_frame():
    # a clip whose frames are identical must stay identical after flip/crop/jitter
    frame = np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    clip = np.repeat(frame[None], 8, axis=0)
    cfg = DataCfg(size=32, rrc_scale=[0.3, 1.0], color_jitter=[0.4, 0.4, 0.4, 0.2])
    out = train_transform(clip, cfg, random.Random(1))
    assert out.shape == (3, 8, 32, 32)
    assert torch.equal(out[:, :1].expand_as(out), out)
    assert torch.equal(out, train_transform(clip, cfg, random.Random(1)))  # explicit generator => reproducible
    crops = eval_transforms(clip, DataCfg(size=32, test_crops=3))
    assert len(crops) == 3 and not torch.equal(crops[0], crops[2])


def test_device_augmentation_equals_worker_augmentation(tmp_path):
    """data.augment_on=device: workers send decoded frames and draws, augment_batch finishes them. Through a real
    loader worker and the padding collate (clips of two frame sizes), batches equal the worker-augmented ones."""
    import simplejpeg

    from bench.api import ClipRecord, Manifest
    from bench.data.loader import ClipDataset, make_loader

    recs = []
    for k, (h, w) in enumerate([(40, 48), (56, 56), (40, 48), (64, 44), (56, 56), (48, 40)]):
        d = tmp_path / f"c{k}"
        d.mkdir()
        rng = np.random.default_rng(k)
        for t in range(10):
            img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            (d / f"{t + 1}.jpg").write_bytes(simplejpeg.encode_jpeg(img, quality=95))
        recs.append(ClipRecord(d.name, d.name, 10, k % 2, "train"))
    man = Manifest("t", tmp_path, ("a", "b"), recs)
    cfg = DataCfg(size=32, frames=8, rrc_scale=[0.3, 1.0], color_jitter=[0.4, 0.4, 0.4, 0.3],
                  mean=[0.45, 0.4, 0.35], std=[0.25, 0.2, 0.3])
    for epoch in range(2):  # different draws: both flip states and several jitter orders occur
        worker = ClipDataset(man, recs, cfg, train=True, seed=5)
        device = ClipDataset(man, recs, cfg, train=True, seed=5, augment_on="device")
        for ds in (worker, device):
            ds.set_epoch(epoch)
        a = list(make_loader(worker, 3, workers=0, shuffle=False, drop_last=False, seed=0, epoch=epoch))
        b = list(make_loader(device, 3, workers=1, shuffle=False, drop_last=False, seed=0, epoch=epoch))
        for ba, bb in zip(a, b, strict=True):
            sizes = bb["sizes"].tolist()
            assert len({tuple(x) for x in sizes}) > 1  # mixed sizes -> zero canvas of the largest
            assert bb["clip"].dtype == torch.uint8
            assert bb["clip"].shape[1:] == (8, max(h for h, _ in sizes), max(w for _, w in sizes), 3)
            out = augment_batch(bb["clip"], bb["aug"], bb["sizes"], cfg)
            assert out.shape == ba["clip"].shape == (3, 3, 8, 32, 32)
            assert torch.equal(out, ba["clip"])
            assert torch.equal(bb["label"], ba["label"])


def test_video_mixup_targets_and_shared_box():
    x = torch.zeros(4, 3, 5, 16, 16)
    x[1] = 1.0
    labels = torch.tensor([0, 1, 2, 3])
    mix = VideoMixup(4, mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.1)
    xm, t = mix(x, labels, torch.Generator().manual_seed(0))
    assert torch.allclose(t.sum(1), torch.ones(4))
    # the box is cut through all frames alike
    assert torch.equal(xm[:, :, :1].expand_as(xm), xm)
    kept = 1.0 - float(xm[2].mean())  # sample 2 is mixed with sample 1 (ones) inside the box
    assert abs(float(t[2, 2]) - (kept * (0.9 + 0.025) + (1 - kept) * 0.025)) < 1e-5
    plain = VideoMixup(4, label_smoothing=0.1)
    _, t0 = plain(x, labels, torch.Generator().manual_seed(0))
    assert torch.allclose(t0[0], torch.tensor([0.925, 0.025, 0.025, 0.025]))


# ----------------------------------------------------------------------------------------------------------
# the official loaders' index rules, written out from their code (facts: formulas, not their source)


def _dfew_official(n: int, nframe: int, rng: random.Random, train: bool) -> list[int]:
    """jiangxingxun/DFEW @ 7c1ba78 libs/DFEW_Dataset.py generate_index(isconsecutive=False)."""
    idx_list = list(range(n))
    if n < nframe:  # whole copies appended until the list holds at least nframe entries
        tiled: list[int] = []
        while len(tiled) < nframe:
            tiled += idx_list
        idx_list = tiled
    if train:
        return [idx_list[i] for i in sorted(rng.sample(range(len(idx_list)), nframe))]
    return [idx_list[i] for i in np.linspace(0, len(idx_list) - 1, nframe).astype(int)]


def test_dfew_sampler_is_the_dfew_codes_rule():
    cfg = DataCfg(frames=16, sampler="dfew")
    for n in range(1, 121):
        for seed in range(3):
            got = sample_train(n, cfg, random.Random(seed))
            assert got == _dfew_official(n, 16, random.Random(seed), train=True), n
            assert len(got) == 16 and got == sorted(got) if n >= 16 else len(got) == 16
        assert sample_test(n, cfg) == [_dfew_official(n, 16, random.Random(0), train=False)], n
    # long clips: 16 distinct frames from anywhere in the clip; the test view is linspace(0, n-1)
    assert len(set(sample_train(144, cfg, random.Random(1)))) == 16
    assert sample_test(144, cfg)[0][:3] == [0, 9, 19] and sample_test(144, cfg)[0][-1] == 143


def _former_dfer_official(n: int, rng: random.Random, train: bool, segments: int = 8, duration: int = 2,
                          short: str = "zero") -> list[int]:
    """Former-DFER @ 1b5ad6f dataloader/dataset_DFEW.py (num_segments 8, duration 2; DFER-CLIP @ d10d5a4
    video_dataloader.py is the same rule with 16 x 1 and edge padding). The per-segment draws randint(d) come from
    `rng` in segment order, as the harness draws them."""
    d = (n - duration + 1) // segments
    if train and d > 0:
        starts = [k * d + rng.randrange(d) for k in range(segments)]
    elif not train and n > segments + duration - 1:
        tick = (n - duration + 1) / float(segments)
        starts = [int(tick / 2.0 + tick * k) for k in range(segments)]
    elif short == "edge":  # np.pad(arange(n), (0, 16 - n), 'edge')
        return [min(i, n - 1) for i in range(segments * duration)]
    else:
        starts = [0] * segments
    out = []
    for s in starts:
        p = s
        for _ in range(duration):
            out.append(p)
            if p < n - 1:
                p += 1
    return out


def test_tsn_sampler_is_former_dfers_loader_index_for_index():
    cfg = DataCfg(frames=16, sampler="tsn", segment_len=2, pad="zero")
    for n in range(1, 201):
        for seed in range(3):
            assert sample_train(n, cfg, random.Random(seed)) == _former_dfer_official(n, random.Random(seed), True), n
        assert sample_test(n, cfg) == [_former_dfer_official(n, random.Random(0), False)], n
    # the properties the official rule is known for: n = 9..16 trains on a fixed clip, the last (n-1) % 8 start
    # positions are never drawn, short clips read 0, 1 eight times
    for n in range(9, 17):
        assert sample_train(n, cfg, random.Random(5)) == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8]
    starts = {i for seed in range(300) for i in sample_train(40, cfg, random.Random(seed))[::2]}
    assert max(starts) == 7 * (39 // 8) + 39 // 8 - 1 == 31
    assert sample_test(9, cfg) == [[0, 1] * 8] and sample_train(8, cfg, random.Random(0)) == [0, 1] * 8
    # DFER-CLIP: 16 segments x 1 frame, short clips padded with the last frame
    clip = DataCfg(frames=16, sampler="tsn", segment_len=1, pad="edge")
    for n in range(1, 120):
        ref = _former_dfer_official(n, random.Random(2), True, segments=16, duration=1, short="edge")
        assert sample_train(n, clip, random.Random(2)) == ref, n
        assert sample_test(n, clip) == [_former_dfer_official(n, random.Random(0), False, 16, 1, "edge")], n
