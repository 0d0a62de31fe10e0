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
