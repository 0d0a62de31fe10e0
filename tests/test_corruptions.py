"""Corruption suite (bench/data/corruptions.py): each corruption against an independent computation (Pillow's
JPEG encoder, colorsys's HSV, Pillow's resize, the clipped normal's std, hand-derived boxes and frame maps),
monotone severities, determinism per (video, corruption, severity), and one-line errors."""

from __future__ import annotations

import colorsys
import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from bench.data.corruptions import (
    CORRUPTIONS,
    FAMILIES,
    SEVERITIES,
    clip_seed,
    corrupt,
    parse_corruptions,
)
from bench.errors import BenchError

PER_FRAME = ("gaussian_noise", "defocus_blur", "motion_blur", "jpeg", "brightness", "contrast", "low_resolution",
             "occlude_eyes", "occlude_mouth")
PINNED_SEED = 4699084632870290151  # clip_seed("dfew/0001", "jpeg", 3)
RANDOM = {"gaussian_noise", "motion_blur", "dropped_frames", "stutter", "temporal_jitter", "shuffle", "crop_jitter"}


def textured(b: int = 1, t: int = 4, h: int = 112, w: int = 112, seed: int = 0) -> torch.Tensor:
    """A face-sized clip with structure at every scale (smooth shading, edges, fine texture), 8-bit values in
    [0.1, 0.9] (like a decoded frame), different in every frame and clip."""
    g = torch.Generator().manual_seed(seed)
    coarse = F.interpolate(torch.rand(b * t, 3, 8, 8, generator=g), size=(h, w), mode="bicubic", align_corners=False)
    fine = torch.rand(b * t, 3, h, w, generator=g)
    x = (0.6 * coarse + 0.4 * fine).clamp(0, 1) * 0.8 + 0.1
    x = x.mul(255).round().div(255)
    return x.view(b, t, 3, h, w).transpose(1, 2).contiguous()


def assert_close(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float = 0.0) -> None:
    """Max-abs comparison (torch.testing's first call imports for seconds)."""
    assert a.shape == b.shape and a.dtype == b.dtype
    err = float((a.double() - b.double()).abs().max())
    assert err <= atol, f"max abs difference {err} > {atol}"


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1.0 / (a.double() - b.double()).pow(2).mean()))


# ---------------------------------------------------------------- names and parsing


def test_names_and_families():
    assert CORRUPTIONS == ("gaussian_noise", "defocus_blur", "motion_blur", "jpeg", "brightness", "contrast",
                           "low_resolution", "occlude_eyes", "occlude_mouth", "dropped_frames", "stutter",
                           "temporal_jitter", "reverse", "shuffle", "crop_jitter")
    assert set(FAMILIES) == set(CORRUPTIONS)
    assert {FAMILIES[n] for n in ("defocus_blur", "motion_blur")} == {"blur"}
    assert {FAMILIES[n] for n in ("occlude_eyes", "occlude_mouth")} == {"occlusion"}
    assert set(FAMILIES.values()) == {"noise", "blur", "digital", "occlusion", "temporal"}


def test_parse_corruptions():
    every = parse_corruptions("all")
    assert every == [(n, s) for n in CORRUPTIONS for s in (1, 2, 3, 4, 5)] and len(every) == 75
    assert parse_corruptions("jpeg,reverse") == [("jpeg", s) for s in range(1, 6)] + [("reverse", s) for s in range(1, 6)]
    assert parse_corruptions(" jpeg:3 , reverse:1 ") == [("jpeg", 3), ("reverse", 1)]
    assert parse_corruptions("all:2") == [(n, 2) for n in CORRUPTIONS]
    assert parse_corruptions("jpeg:3,jpeg,jpeg:3") == [("jpeg", 3), ("jpeg", 1), ("jpeg", 2), ("jpeg", 4), ("jpeg", 5)]


@pytest.mark.parametrize(("text", "words"), [
    ("jpg", ["unknown corruption 'jpg'", "jpeg"]),
    ("jpeg:6", ["severity 6", "'jpeg'", "1-5"]),
    ("jpeg:0", ["severity 0", "1-5"]),
    ("jpeg:x", ["'x'", "not an integer"]),
    ("xyz:2", ["unknown corruption 'xyz'", "known: gaussian_noise"]),
    ("", ["empty corruption"]),
    ("jpeg,,reverse", ["empty corruption"]),
])
def test_parse_bad_input_one_line(text, words):
    with pytest.raises(BenchError) as err:
        parse_corruptions(text)
    msg = str(err.value)
    assert "\n" not in msg
    for word in words:
        assert word in msg


@pytest.mark.parametrize(("args", "words"), [
    (("jpg", 3), ["unknown corruption 'jpg'", "jpeg"]),
    (("jpeg", 6), ["severity 6", "1-5"]),
    (("jpeg", 0), ["severity 0", "1-5"]),
    (("jpeg", 2.0), ["severity 2.0", "1-5"]),
])
def test_corrupt_bad_name_or_severity_one_line(args, words):
    with pytest.raises(BenchError) as err:
        corrupt(torch.rand(1, 3, 2, 8, 8), ["v"], *args)
    assert "\n" not in str(err.value) and all(w in str(err.value) for w in words)


def test_corrupt_bad_clips_one_line():
    with pytest.raises(BenchError, match=r"^corrupt needs float clips \(B, 3, T, H, W\)[^\n]*$"):
        corrupt(torch.rand(3, 2, 8, 8), ["v"], "jpeg", 1)  # no batch dimension
    with pytest.raises(BenchError, match=r"^corrupt needs float clips[^\n]*uint8"):
        corrupt(torch.zeros(1, 3, 2, 8, 8, dtype=torch.uint8), ["v"], "jpeg", 1)
    with pytest.raises(BenchError, match=r"^corrupt got 1 video ids for 2 clips[^\n]*$"):
        corrupt(torch.rand(2, 3, 2, 8, 8), ["v"], "jpeg", 1)
    with pytest.raises(BenchError, match=r"^corrupt got one string for 1 clips[^\n]*$"):
        corrupt(torch.rand(1, 3, 2, 8, 8), "v", "jpeg", 1)
    with pytest.raises(BenchError, match=r"at least 2 frames[^\n]*$"):
        corrupt(torch.rand(1, 3, 1, 8, 8), ["v"], "reverse", 1)


# ---------------------------------------------------------------- seeds and determinism


def test_clip_seed_is_pinned():
    """The seed is a fixed function of its text (this value was computed in another process, on another day):
    Python's salted hash() would change it per process, and a changed scheme would silently change every
    corrupted clip of earlier reports."""
    assert clip_seed("dfew/0001", "jpeg", 3) == PINNED_SEED
    seeds = {clip_seed(v, n, s) for v in ("a", "b") for n in ("jpeg", "stutter") for s in (1, 2)}
    assert len(seeds) == 8 and all(0 <= s < 2**63 for s in seeds)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_deterministic_per_video(name):
    """Bit-identical twice, whatever the global RNG, in any batch at any position (so every method gets the same
    corrupted clip); random corruptions differ between video ids, the others do not."""
    x = textured(b=3, t=8, h=48, w=48)
    ids = ["v0", "v1", "v2"]
    before = torch.get_rng_state()
    torch.manual_seed(1)
    a = corrupt(x, ids, name, 3)
    torch.manual_seed(2)
    assert torch.equal(corrupt(x, ids, name, 3), a)
    torch.set_rng_state(before)
    order = [2, 0, 1]
    assert torch.equal(corrupt(x[order], [ids[i] for i in order], name, 3), a[order])
    alone = corrupt(x[1:2], ["v1"], name, 3)
    assert torch.equal(alone, a[1:2])
    twin = corrupt(x[[1, 1]], ["v1", "other"], name, 3)
    assert torch.equal(twin[0], a[1])
    assert torch.equal(twin[0], twin[1]) == (name not in RANDOM)


def test_corrupt_does_not_touch_global_rng():
    x = textured(b=2, t=4, h=32, w=32)
    torch.manual_seed(5)
    state = torch.get_rng_state()
    for name in RANDOM:
        corrupt(x, ["a", "b"], name, 5)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_shape_dtype_range_kept(dtype):
    x = textured(b=2, t=4, h=40, w=48).to(dtype)
    for name in CORRUPTIONS:
        for s in SEVERITIES:
            y = corrupt(x, ["a", "b"], name, s)
            assert y.shape == x.shape and y.dtype == dtype and y.device == x.device, (name, s)
            assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0, (name, s)
            assert not torch.equal(y, x), (name, s)  # every corruption changes a textured clip at every severity


# ---------------------------------------------------------------- per-frame corruptions


def test_jpeg_matches_pillow():
    """Pillow's encoder and decoder at the same quality (ImageNet-C's codec: 4:2:0, the IJG quality-scaled
    tables). simplejpeg's libjpeg-turbo (jpeg-8 API) smooths chroma when downsampling where Pillow's (jpeg-6b
    API) averages, so pixels differ by a level here and there: the mean absolute difference must stay under 1.5
    levels (/255) and under a fifth of the JPEG error itself (8+ levels at these qualities)."""
    x = textured(b=1, t=2, h=112, w=96)
    for s, quality in zip(SEVERITIES, (25, 18, 15, 10, 7), strict=True):
        y = corrupt(x, ["v"], "jpeg", s)
        for t in range(2):
            frame = x[0, :, t].permute(1, 2, 0).mul(255).round().to(torch.uint8).numpy()
            buf = io.BytesIO()
            Image.fromarray(frame).save(buf, "JPEG", quality=quality)
            ref = np.asarray(Image.open(buf).convert("RGB"), dtype=np.float64)
            got = y[0, :, t].permute(1, 2, 0).double().mul(255).numpy()
            gap, loss = np.abs(got - ref).mean(), np.abs(ref - frame).mean()
            assert gap < 1.5 and gap < loss / 5, (quality, gap, loss)
            assert np.abs(got - np.round(got)).max() < 1e-3  # decoded 8-bit levels


def _clipped_normal_std(sigma: float, half: float = 0.5) -> float:
    """Std of clip(sigma * Z, -half, half) for a standard normal Z, by numerical integration."""
    z = np.linspace(-12, 12, 480_001)
    pdf = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    v = np.clip(sigma * z, -half, half)
    dz = z[1] - z[0]
    mean = (v * pdf).sum() * dz
    return math.sqrt(((v - mean) ** 2 * pdf).sum() * dz)


def test_gaussian_noise_statistics():
    """On a mid-grey clip the residual has mean ~0 and the std of N(0, sigma) clipped at +-0.5 (exactly sigma,
    to <0.1%, at severities 1-2 where clipping does not bite); frames and clips get independent noise."""
    x = torch.full((2, 3, 8, 64, 64), 0.5)
    n = x[0].numel()
    for s, sigma in zip(SEVERITIES, (0.08, 0.12, 0.18, 0.26, 0.38), strict=True):
        r = (corrupt(x, ["a", "b"], "gaussian_noise", s) - x).double()
        expected = _clipped_normal_std(sigma)
        if s <= 2:
            assert expected == pytest.approx(sigma, rel=1e-3)
        for clip in r:
            assert abs(float(clip.mean())) < 4 * expected / math.sqrt(n)
            assert float(clip.std()) == pytest.approx(expected, rel=0.02)
        frames = r[0, :, :2].reshape(3, 2, -1).transpose(0, 1).reshape(2, -1)
        assert abs(float(torch.corrcoef(frames)[0, 1])) < 0.03
        assert abs(float(torch.corrcoef(r.reshape(2, -1))[0, 1])) < 0.03


def test_brightness_is_an_hsv_value_shift():
    """Against colorsys: rgb -> hsv, v + c clipped to 1, -> rgb; black pixels become grey c."""
    x = textured(b=1, t=2, h=6, w=6)
    x[0, :, 0, 0, 0] = 0.0  # black
    x[0, :, 0, 0, 1] = torch.tensor([1.0, 0.2, 0.0])  # saturated
    for s, c in zip(SEVERITIES, (0.1, 0.2, 0.3, 0.4, 0.5), strict=True):
        y = corrupt(x, ["v"], "brightness", s)
        px, py = x[0].reshape(3, -1).T.tolist(), y[0].reshape(3, -1).T
        ref = []
        for r, g, b in px:
            hh, ss, vv = colorsys.rgb_to_hsv(r, g, b)
            ref.append(colorsys.hsv_to_rgb(hh, ss, min(vv + c, 1.0)))
        assert_close(py, torch.tensor(ref, dtype=torch.float32), atol=1e-6, rtol=0)
        assert torch.equal(y[0, :, 0, 0, 0], torch.full((3,), c))


def test_contrast_formula():
    """(x - m) * c + m with m the per-frame, per-channel mean, by hand in numpy (float64)."""
    x = textured(b=2, t=3, h=20, w=24)
    a = x.double().numpy()
    for s, c in zip(SEVERITIES, (0.4, 0.3, 0.2, 0.1, 0.05), strict=True):
        m = a.mean(axis=(3, 4), keepdims=True)
        ref = (a - m) * c + m
        got = corrupt(x, ["a", "b"], "contrast", s).double().numpy()
        assert np.abs(got - ref).max() < 1e-6


def test_low_resolution_matches_interpolate_and_pillow():
    """112 px down to 67/56/45/34/28 px (scale .6/.5/.4/.3/.25, rounded) and back: equal to torch's bilinear
    (antialiased down) and, independently, to Pillow's bilinear resize of float images (to 1e-5)."""
    x = textured(b=1, t=2, h=112, w=112)
    for s, small in zip(SEVERITIES, (67, 56, 45, 34, 28), strict=True):
        y = corrupt(x, ["v"], "low_resolution", s)
        frames = x[0].transpose(0, 1)  # (T, 3, H, W)
        down = F.interpolate(frames, size=(small, small), mode="bilinear", align_corners=False, antialias=True)
        ref = F.interpolate(down, size=(112, 112), mode="bilinear", align_corners=False).transpose(0, 1)
        assert_close(y[0], ref, atol=1e-6, rtol=0)
        for t in range(2):
            for ch in range(3):
                img = Image.fromarray(x[0, ch, t].numpy(), mode="F")
                back = img.resize((small, small), Image.BILINEAR).resize((112, 112), Image.BILINEAR)
                assert np.abs(np.asarray(back) - y[0, ch, t].numpy()).max() < 1e-5
        assert psnr(y, x) < 40


def _moments(response: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Total, centroid and 2x2 covariance of an impulse response."""
    ys, xs = np.mgrid[0 : response.shape[0], 0 : response.shape[1]]
    total = response.sum()
    pos = np.stack([ys.ravel(), xs.ravel()], 1).astype(np.float64)
    mean = (pos * response.ravel()[:, None]).sum(0) / total
    d = pos - mean
    return total, mean, (d * response.ravel()[:, None]).T @ d / total


def _impulse(h: int, w: int) -> torch.Tensor:
    x = torch.zeros(1, 3, 1, h, w)
    x[..., h // 2, w // 2] = 1.0
    return x


def test_defocus_blur_impulse_response():
    """At 224 px (ImageNet-C's scale) the response to an impulse is a symmetric disk of radius r softened by a
    Gaussian of sigma a: sums to 1, radial second moment r^2/2 + 2a^2 + 1/6 (the pixel's own box), support
    within r + 3a + 1; at 112 px the radius halves (checked from 3 px); a flat frame stays flat."""
    for s, (r, a) in zip(SEVERITIES, ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)), strict=True):
        resp = corrupt(_impulse(224, 224), ["v"], "defocus_blur", s)[0, 0, 0].double().numpy()
        total, mean, cov = _moments(resp)
        assert total == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(mean, [112, 112], atol=1e-4)
        win = resp[112 - 20 : 112 + 21, 112 - 20 : 112 + 21]  # centred on the impulse
        np.testing.assert_allclose(win, win.T, atol=1e-7)
        np.testing.assert_allclose(win, win[::-1, :], atol=1e-7)
        np.testing.assert_allclose(win, win[:, ::-1], atol=1e-7)
        assert win.sum() == pytest.approx(resp.sum())
        assert np.trace(cov) == pytest.approx(r * r / 2 + 2 * a * a + 1 / 6, rel=0.02)
        ys, xs = np.nonzero(resp > 0)
        assert np.hypot(ys - 112, xs - 112).max() <= r + 3 * a + 1
        if r / 2 >= 3:  # below 3 px the pixel grid's own error exceeds the tolerance
            half = corrupt(_impulse(112, 112), ["v"], "defocus_blur", s)[0, 0, 0].double().numpy()
            expected = (r / 2) ** 2 / 2 + 2 * (a / 2) ** 2 + 1 / 6
            assert np.trace(_moments(half)[2]) == pytest.approx(expected, rel=0.02)
    flat = torch.full((1, 3, 2, 48, 48), 0.3)
    assert_close(corrupt(flat, ["v"], "defocus_blur", 5), flat, atol=1e-6, rtol=0)


def test_motion_blur_impulse_response():
    """At 224 px the response is a one-sided ray (ImageMagick's motion blur): it starts at the impulse, lies on one line at +-45 deg of horizontal, and its weighted mean length is
    sum i w_i / sum w_i, w_i = exp(-i^2 / 2 sigma^2), i < 2r+1 (to 0.5 px: offsets are rounded to pixels)."""
    table = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))
    angles = set()
    for s, (r, sigma) in zip(SEVERITIES, table, strict=True):
        for vid in ("a", "b"):
            resp = corrupt(_impulse(224, 224), [vid], "motion_blur", s)[0, 0, 0].double().numpy()
            total, mean, cov = _moments(resp)
            assert total == pytest.approx(1.0, abs=1e-5)
            assert resp[112, 112] > 0
            evals, evecs = np.linalg.eigh(cov)
            assert evals[0] < 0.02 * evals[1]  # a line
            axis = evecs[:, 1]
            angles.add(round(float(np.degrees(np.arctan2(axis[0], axis[1]))) % 180, 3))
            assert abs(axis[0]) <= abs(axis[1]) + 1e-6  # within 45 deg of horizontal
            ys, xs = np.nonzero(resp)
            along = (ys - 112) * axis[0] + (xs - 112) * axis[1]
            assert (along <= 0.75).all() or (along >= -0.75).all()  # one-sided
            i = np.arange(2 * r + 1)
            w = np.exp(-(i**2) / (2 * sigma**2))
            length = np.hypot(ys - 112, xs - 112)
            assert (resp[ys, xs] * length).sum() == pytest.approx((i * w).sum() / w.sum(), abs=0.5)
            assert length.max() <= 2 * r + 0.75
    assert len(angles) >= 8  # the angle is drawn per (video, severity)


def _expected_box(h: int, w: int, rows: tuple[float, float], cols: tuple[float, float]) -> torch.Tensor:
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = True
    return mask


# (top, bottom, left, right) in pixels, end-exclusive, worked out by hand from the module docstring's fractions
# with floor(f * size + 0.5)
BOXES_80 = {
    "occlude_eyes": [(24, 32, 24, 56), (22, 34, 18, 62), (20, 36, 12, 68), (18, 38, 6, 74), (16, 40, 0, 80)],
    "occlude_mouth": [(55, 63, 24, 56), (53, 65, 18, 62), (51, 67, 12, 68), (49, 69, 6, 74), (47, 71, 0, 80)],
}
BOXES_112_96 = {  # H=112, W=96: fractions that do not land on whole pixels
    "occlude_eyes": [(34, 45, 29, 67), (31, 48, 22, 74), (28, 50, 14, 82), (25, 53, 7, 89), (22, 56, 0, 96)],
    "occlude_mouth": [(77, 88, 29, 67), (74, 91, 22, 74), (72, 94, 14, 82), (69, 97, 7, 89), (66, 100, 0, 96)],
}


def test_occlusion_box_position():
    """Exactly the box's pixels change, in every frame and channel, to mid-grey 0.5; nothing else moves."""
    for (h, w), table in (((80, 80), BOXES_80), ((112, 96), BOXES_112_96)):
        x = textured(b=1, t=3, h=h, w=w).clamp(0, 0.49)  # no pixel is already 0.5
        for name, boxes in table.items():
            for s, (top, bottom, left, right) in zip(SEVERITIES, boxes, strict=True):
                y = corrupt(x, ["v"], name, s)
                changed = y != x
                mask = _expected_box(h, w, (top, bottom), (left, right))
                assert torch.equal(changed, mask.expand_as(changed)), (name, s, h, w)
                assert (y[changed] == 0.5).all()


@pytest.mark.parametrize("name", PER_FRAME)
def test_psnr_decreases_with_severity(name):
    x = textured(b=1, t=4, h=112, w=112, seed=3)
    scores = [psnr(corrupt(x, ["v"], name, s), x) for s in SEVERITIES]
    assert all(a > b for a, b in zip(scores, scores[1:], strict=False)), scores


# ---------------------------------------------------------------- temporal corruptions


def _frame_map(name: str, severity: int, t: int, vid: str) -> list[int]:
    """Which input frame each output slot shows, read back from a clip whose frame i is filled with i/t; each
    output frame must be an exact copy of one input frame."""
    x = (torch.arange(t, dtype=torch.float32) / t).view(1, 1, t, 1, 1).expand(1, 3, t, 6, 5).contiguous()
    y = corrupt(x, [vid], name, severity)[0]
    idx = (y[0, :, 0, 0] * t).round().long()
    assert torch.equal(y, x[0, :, idx]), "output frames are exact copies of input frames"
    return idx.tolist()


COUNT_16 = {1: 2, 2: 4, 3: 6, 4: 8, 5: 10}  # round(t/8 * s) for t=16
REORDER_16 = {1: 4, 2: 6, 3: 8, 4: 12, 5: 16}  # round(t * (.25, .375, .5, .75, 1))
REORDER_8 = {1: 2, 2: 3, 3: 4, 4: 6, 5: 8}
VIDS = ("a", "b", "c", "d")


def test_reverse_mapping():
    assert _frame_map("reverse", 5, 16, "a") == list(range(15, -1, -1))
    for t, sizes in ((16, REORDER_16), (8, REORDER_8)):
        for s, n in sizes.items():
            start = (t - n) // 2
            expected = list(range(start)) + list(range(start + n - 1, start - 1, -1)) + list(range(start + n, t))
            for vid in VIDS[:2]:
                assert _frame_map("reverse", s, t, vid) == expected


def test_dropped_frames_hold_previous():
    for s, n in COUNT_16.items():
        for vid in VIDS:
            idx = _frame_map("dropped_frames", s, 16, vid)
            assert idx[0] == 0
            assert all(idx[i] in (i, idx[i - 1]) for i in range(1, 16))
            assert sum(idx[i] != i for i in range(16)) == n
    assert sum(i != j for i, j in enumerate(_frame_map("dropped_frames", 3, 8, "a"))) == 3


def test_stutter_repeats_and_delays():
    for s, n in COUNT_16.items():
        for vid in VIDS:
            idx = _frame_map("stutter", s, 16, vid)
            steps = np.diff(idx)
            assert idx[0] == 0 and set(steps.tolist()) <= {0, 1}
            assert int((steps == 0).sum()) == n and idx[-1] == 15 - n  # n repeats: the last n frames are lost


def test_temporal_jitter_within_k():
    for s in SEVERITIES:
        offsets = []
        for vid in VIDS:
            idx = _frame_map("temporal_jitter", s, 16, vid)
            offsets += [j - i for i, j in enumerate(idx)]
            assert all(0 <= j < 16 for j in idx)
        assert max(abs(o) for o in offsets) == s  # the bound is k = s and is reached over 64 frames
        assert sum(o != 0 for o in offsets) > 16


def test_shuffle_is_a_permutation_moving_the_stated_fraction():
    for t, sizes in ((16, REORDER_16), (8, REORDER_8)):
        for s, n in sizes.items():
            for vid in VIDS:
                idx = _frame_map("shuffle", s, t, vid)
                assert sorted(idx) == list(range(t))
                assert sum(i != j for i, j in enumerate(idx)) == n
    full = {tuple(_frame_map("shuffle", 5, 16, vid)) for vid in VIDS}
    assert len(full) == 4


def test_crop_jitter_shift_and_scale():
    """On ramps (channel 0 = column, channel 1 = row) an affine crop keeps them linear in the centre: the
    fitted slope is the zoom (the same for both axes) and the offset the shift, within the table's bounds,
    different in every frame; a flat channel stays flat (border replicated, no black)."""
    t, size = 8, 64
    c = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    x = torch.empty(2, 3, t, size, size)
    x[:, 0] = c.view(1, 1, size)
    x[:, 1] = c.view(1, size, 1)
    x[:, 2] = 0.7
    coord = (2 * torch.arange(size, dtype=torch.float64) + 1) / size - 1  # normalised output coordinates
    centre = slice(size // 4, 3 * size // 4)
    for s, (shift, zoom) in zip(SEVERITIES, ((0.02, 0.02), (0.04, 0.04), (0.06, 0.06), (0.08, 0.08), (0.1, 0.1)),
                                strict=True):
        y = corrupt(x, ["a", "b"], "crop_jitter", s).double()
        assert y.shape == x.shape
        assert_close(y[:, 2], torch.full_like(y[:, 2], 0.7), atol=1e-6, rtol=0)
        zooms = []
        for b in range(2):
            for f in range(t):
                # value = (zoom * coord + shift_normalised + 1) / 2 along each axis
                kx = np.polyfit(coord[centre], y[b, 0, f, size // 2, centre].numpy(), 1)
                ky = np.polyfit(coord[centre], y[b, 1, f, centre, size // 2].numpy(), 1)
                zx, zy = 2 * kx[0], 2 * ky[0]
                assert zx == pytest.approx(zy, abs=1e-4)
                assert abs(zx - 1) <= zoom + 1e-4
                assert abs(kx[1] * 2 - 1) / 2 <= shift + 1e-4 and abs(ky[1] * 2 - 1) / 2 <= shift + 1e-4
                zooms.append(zx)
        assert len({round(z, 6) for z in zooms}) == 2 * t  # a new draw per frame
        assert max(abs(z - 1) for z in zooms) > 0.6 * zoom  # and it uses its range
        frames = y[0, 0]
        assert all(not torch.equal(frames[i], frames[i + 1]) for i in range(t - 1))


# ---------------------------------------------------------------- device


@pytest.mark.gpu
def test_cuda_matches_cpu():
    """On the device: index, occlusion and JPEG corruptions bit-identical to the CPU's, arithmetic ones within
    float rounding (FMA, reduction order)."""
    x = textured(b=2, t=8, h=64, w=64)
    exact = {"jpeg", "occlude_eyes", "occlude_mouth", "dropped_frames", "stutter", "temporal_jitter", "reverse",
             "shuffle"}
    for name in CORRUPTIONS:
        cpu = corrupt(x, ["a", "b"], name, 4)
        gpu = corrupt(x.cuda(), ["a", "b"], name, 4)
        assert gpu.device.type == "cuda"
        if name in exact:
            assert torch.equal(gpu.cpu(), cpu), name
        else:
            assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)
