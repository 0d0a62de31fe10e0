"""Corruptions of test clips: how a DFER method degrades on noisy, blurred, compressed, occluded or badly sampled
face video, each corruption at severities 1-5 (higher = stronger), the same corrupted clip for every method.

`corrupt` takes the test clip after sampling, resize and centre crop and before mean/std normalisation: float
(B, 3, T, H, W) in [0, 1] on any device. Random parameters come from a CPU generator seeded with
`clip_seed(video_id, name, severity)` (SHA-256, stable across processes and machines), one per clip, so a clip's
corruption depends on neither the batch it sits in, its position there, nor the global RNG; the work itself runs
batched on the clips' device (JPEG excepted, below). Several views of one video share the draws (same id).

Tables, per severity 1..5 (`px@224` values scale with min(H, W) / 224, the frame size relative to ImageNet's):

  gaussian_noise  std (of [0, 1] values)      .08 .12 .18 .26 .38      ImageNet-C gaussian_noise; clipped to [0, 1]
  defocus_blur    disk radius px@224           3   4   6   8   10      ImageNet-C defocus_blur (radius, alias_blur);
                  alias sigma px@224          .1  .5  .5  .5  .5       disk = per-pixel coverage (16x16 supersampled)
  motion_blur     radius px@224               10  15  15  15  20       ImageNet-C motion_blur (ImageMagick radius,
                  sigma px@224                 3   5   8  12  15       sigma): a one-sided line of 2*ceil(r)+1 taps at
                                                                       integer-rounded offsets, weights exp(-i^2/2s^2),
                                                                       angle uniform in [-45, 45] deg, one per clip
  jpeg            quality                     25  18  15  10   7       ImageNet-C jpeg_compression (4:2:0)
  brightness      HSV value shift            +.1 +.2 +.3 +.4 +.5       ImageNet-C brightness: V' = min(V + c, 1) with
                                                                       H, S kept, i.e. rgb * V'/V (black -> grey V')
  contrast        factor                      .4  .3  .2  .1  .05      ImageNet-C contrast: (x - m) * c + m, m the
                                                                       frame's per-channel mean
  low_resolution  scale                       .6  .5  .4  .3  .25      ImageNet-C pixelate's factors, but bilinear:
                                                                       down to round(H*s) x round(W*s) (antialiased),
                                                                       back up to H x W (bilinear)
  occlude_eyes    rows (fraction of H)    .30-.40 .275-.425 .25-.45 .225-.475 .20-.50   own (aligned face crops:
  occlude_mouth   rows                    .69-.79 .665-.815 .64-.84 .615-.865 .59-.89   eyes ~.35, mouth ~.74 of H)
  (both)          cols (fraction of W)    .30-.70 .225-.775 .15-.85 .075-.925 0-1
                  filled with mid-grey 0.5 (neutral after normalisation, no black edge); pixel bounds
                  floor(f * size + 0.5), rows [top, bottom) x cols [left, right), the same box in every frame
  dropped_frames  fraction of T dropped      1/8 2/8 3/8 4/8 5/8       own: round(f*T) frames of 1..T-1 (frame 0 kept)
                                                                       show the last kept frame before them
  stutter         fraction of T repeated     1/8 2/8 3/8 4/8 5/8       own: round(f*T) slots of 1..T-1 repeat the
                                                                       previous slot's frame and the rest shifts later,
                                                                       truncated to T (motion delayed, tail lost)
  temporal_jitter k (positions)                1   2   3   4   5       own: slot t shows frame t + U{-k..k}, clamped
                                                                       to 0..T-1
  reverse         fraction of T reversed      .25 .375 .5 .75  1       own: a centred window of round(f*T) frames
                                                                       (at least 2) in reverse order; 5 = whole clip
  shuffle         fraction of T moved         .25 .375 .5 .75  1       own: round(f*T) random slots (at least 2) get
                                                                       a random cyclic permutation (every one of them
                                                                       moves); 5 = every frame moves
  crop_jitter     max shift (fraction of size) .02 .04 .06 .08 .10     own (face-detector jitter): per frame, zoom
                  max scale change              .02 .04 .06 .08 .10    1 + U(-a, a) and shift U(-b, b) per axis,
                                                                       bilinear, border replicated

Temporal corruptions act on the clip as sampled, the only frames that exist at this point: one position is one
sampling stride of the method (often several source frames), and a "dropped" frame holds the previous sampled one.

JPEG round-trips every frame on the CPU, on every device (nvjpeg's encoder differs), through simplejpeg:
libjpeg-turbo, the library the frame reader decodes with, ~3x faster here than Pillow's round trip, and not
deprecated like torchvision's image codecs (0.29). Its jpeg-8 API smooths chroma when downsampling where
Pillow's (ImageNet-C's codec, jpeg-6b API) averages: under a level of mean difference (tests/test_corruptions.py).
The clip is rounded to uint8 first, lossless for clips made from 8-bit frames.
The blurs are sums of shifted copies (taps under 1e-3 of the largest dropped), not conv2d: the same result for a
clip in any batch (cuDNN picks algorithms by batch size), and faster than CPU single-channel conv2d. Noise is
drawn on the CPU generator and moved, so it is the same on every device.
"""

from __future__ import annotations

import difflib
import hashlib
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from bench.errors import BenchError

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

FAMILIES: dict[str, str] = {
    "gaussian_noise": "noise",
    "defocus_blur": "blur",
    "motion_blur": "blur",
    "jpeg": "digital",
    "brightness": "digital",
    "contrast": "digital",
    "low_resolution": "digital",
    "occlude_eyes": "occlusion",
    "occlude_mouth": "occlusion",
    "dropped_frames": "temporal",
    "stutter": "temporal",
    "temporal_jitter": "temporal",
    "reverse": "temporal",
    "shuffle": "temporal",
    "crop_jitter": "temporal",
}
CORRUPTIONS: tuple[str, ...] = tuple(FAMILIES)

NOISE_STD = (0.08, 0.12, 0.18, 0.26, 0.38)
DEFOCUS = ((3.0, 0.1), (4.0, 0.5), (6.0, 0.5), (8.0, 0.5), (10.0, 0.5))  # (disk radius, alias sigma) px@224
MOTION = ((10.0, 3.0), (15.0, 5.0), (15.0, 8.0), (15.0, 12.0), (20.0, 15.0))  # (radius, sigma) px@224
JPEG_QUALITY = (25, 18, 15, 10, 7)
BRIGHTNESS = (0.1, 0.2, 0.3, 0.4, 0.5)
CONTRAST = (0.4, 0.3, 0.2, 0.1, 0.05)
LOW_RES_SCALE = (0.6, 0.5, 0.4, 0.3, 0.25)
OCCLUDER_ROWS = {
    "occlude_eyes": ((0.30, 0.40), (0.275, 0.425), (0.25, 0.45), (0.225, 0.475), (0.20, 0.50)),
    "occlude_mouth": ((0.69, 0.79), (0.665, 0.815), (0.64, 0.84), (0.615, 0.865), (0.59, 0.89)),
}
OCCLUDER_COLS = ((0.30, 0.70), (0.225, 0.775), (0.15, 0.85), (0.075, 0.925), (0.0, 1.0))
OCCLUDER_VALUE = 0.5
FRAME_FRACTION = (0.125, 0.25, 0.375, 0.5, 0.625)  # dropped_frames, stutter
JITTER_K = (1, 2, 3, 4, 5)
REORDER_FRACTION = (0.25, 0.375, 0.5, 0.75, 1.0)  # reverse, shuffle
CROP_JITTER = ((0.02, 0.02), (0.04, 0.04), (0.06, 0.06), (0.08, 0.08), (0.10, 0.10))  # (max shift, max scale change)
_REFERENCE_SIZE = 224  # the image size ImageNet-C's pixel-valued tables were made for
_MIN_TAP = 1e-3  # blur taps below this fraction of the largest are dropped (and the kernel renormalised): speed


# ---------------------------------------------------------------- names, severities, seeds


def _unknown(name: str) -> BenchError:
    close = difflib.get_close_matches(name, CORRUPTIONS, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(CORRUPTIONS)}"
    return BenchError(f"unknown corruption '{name}': {hint}")


def _check(name: str, severity: int) -> None:
    """One-line errors for a name or severity the tables do not have."""
    if name not in FAMILIES:
        raise _unknown(name)
    if isinstance(severity, bool) or not isinstance(severity, int) or severity not in SEVERITIES:
        raise BenchError(f"severity {severity!r} of corruption '{name}' is outside 1-5: use an integer 1..5")


def parse_corruptions(text: str) -> list[tuple[str, int]]:
    """'all' | 'jpeg,reverse' (severities 1-5 each) | 'jpeg:3,reverse:1' | 'all:3' -> [(name, severity)], in the
    order given, duplicates dropped; the CLI's --corrupt value."""
    items = [part.strip() for part in text.split(",")] if text and text.strip() else []
    if not items or any(not part for part in items):
        raise BenchError(f"empty corruption in --corrupt '{text}': write 'all', 'jpeg,reverse' or 'jpeg:3,reverse:1'")
    out: list[tuple[str, int]] = []
    for part in items:
        name, sep, sev = (s.strip() for s in part.partition(":"))
        names = CORRUPTIONS if name == "all" else (name,)
        if name != "all" and name not in FAMILIES:
            raise _unknown(name)
        if not sep:
            pairs = [(n, s) for n in names for s in SEVERITIES]
        elif not (sev.isascii() and sev.isdigit()):
            raise BenchError(f"severity '{sev}' of corruption '{name}' is not an integer: write {name}:1 .. {name}:5")
        elif int(sev) not in SEVERITIES:
            raise BenchError(f"severity {int(sev)} of corruption '{name}' is outside 1-5: write {name}:1 .. {name}:5")
        else:
            pairs = [(n, int(sev)) for n in names]
        out.extend(p for p in pairs if p not in out)
    return out


def clip_seed(video_id: str, name: str, severity: int) -> int:
    """A 63-bit seed from SHA-256 of 'video_id|name|severity': the same in every process and on every machine
    (Python's hash() of a str is salted per process)."""
    digest = hashlib.sha256(f"{video_id}|{name}|{severity}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _generators(video_ids: Sequence[str], name: str, severity: int) -> list[torch.Generator]:
    return [torch.Generator(device="cpu").manual_seed(clip_seed(v, name, severity)) for v in video_ids]


# ---------------------------------------------------------------- per-frame corruptions


def _noise(x: torch.Tensor, gens: list[torch.Generator], severity: int) -> torch.Tensor:
    """Additive N(0, std) per pixel, drawn per clip on the CPU (device-independent), clipped."""
    noise = torch.stack([torch.randn(x.shape[1:], generator=g) for g in gens]).to(x.device)
    return x.add(noise, alpha=NOISE_STD[severity - 1]).clamp_(0.0, 1.0)


def _shift_sum(x: torch.Tensor, taps: list[tuple[int, int, float]]) -> torch.Tensor:
    """sum_k w_k * x[..., y + dy_k, x + dx_k] over (dy, dx, w) taps, border replicated: a blur with the same
    rounding for a clip in any batch, on any device."""
    h, w = x.shape[-2:]
    p = max(max(abs(dy), abs(dx)) for dy, dx, _ in taps)
    lead = x.shape[:-2]
    xp = F.pad(x.reshape(-1, 1, h, w), (p, p, p, p), mode="replicate").reshape(*lead, h + 2 * p, w + 2 * p)
    out = torch.zeros_like(x)
    for dy, dx, weight in taps:
        out.add_(xp[..., p + dy : p + dy + h, p + dx : p + dx + w], alpha=weight)
    return out.clamp_(0.0, 1.0)


def _taps(kernel: np.ndarray) -> list[tuple[int, int, float]]:
    """A centred odd-sized kernel -> (dy, dx, weight) taps, tiny ones dropped, renormalised to sum 1."""
    r = kernel.shape[0] // 2
    keep = kernel >= _MIN_TAP * kernel.max()
    total = float(kernel[keep].sum())
    return [(int(i) - r, int(j) - r, float(kernel[i, j]) / total) for i, j in zip(*np.nonzero(keep), strict=True)]


def defocus_kernel(radius: float, alias: float) -> np.ndarray:
    """ImageNet-C's defocus kernel (a disk, softened by a Gaussian of sigma `alias`) with the disk as per-pixel
    coverage, so radii below a pixel (small faces) still blur; sums to 1."""
    r = math.ceil(radius + 0.5)
    sub = (np.arange(16) + 0.5) / 16 - 0.5
    c = (np.arange(-r, r + 1)[:, None] + sub[None, :]).reshape(-1)  # sub-pixel coordinates, pixel-major
    inside = (c[:, None] ** 2 + c[None, :] ** 2) <= radius**2
    disk = inside.reshape(2 * r + 1, 16, 2 * r + 1, 16).mean(axis=(1, 3))
    if alias > 0:
        g = np.exp(-0.5 * (np.arange(-math.ceil(3 * alias), math.ceil(3 * alias) + 1) / alias) ** 2)
        disk = np.apply_along_axis(np.convolve, 0, disk, g)  # full convolutions: the kernel grows
        disk = np.apply_along_axis(np.convolve, 1, disk, g)
    return disk / disk.sum()


def motion_taps(radius: float, sigma: float, angle_deg: float) -> list[tuple[int, int, float]]:
    """ImageMagick's motion blur as ImageNet-C uses it: 2*ceil(radius)+1 samples i along the angle, at the
    rounded offsets (i sin, i cos), weights exp(-i^2 / 2 sigma^2) normalised; one-sided (a smear, not a line)."""
    n = 2 * math.ceil(radius) + 1
    a = math.radians(angle_deg)
    weights: dict[tuple[int, int], float] = {}
    for i in range(n):
        key = (round(i * math.sin(a)), round(i * math.cos(a)))
        weights[key] = weights.get(key, 0.0) + math.exp(-(i * i) / (2.0 * sigma * sigma))
    total = sum(weights.values())
    return [(dy, dx, w / total) for (dy, dx), w in weights.items()]


def _scale(x: torch.Tensor) -> float:
    return min(x.shape[-2:]) / _REFERENCE_SIZE


def _defocus(x: torch.Tensor, severity: int) -> torch.Tensor:
    """One kernel for the whole batch: no random parameter."""
    radius, alias = DEFOCUS[severity - 1]
    return _shift_sum(x, _taps(defocus_kernel(radius * _scale(x), alias * _scale(x))))


def _motion(x: torch.Tensor, gens: list[torch.Generator], severity: int) -> torch.Tensor:
    """One angle per clip (a shake direction over the clip's half second), one kernel per clip."""
    radius, sigma = MOTION[severity - 1]
    s = _scale(x)
    angles = [float(torch.empty(()).uniform_(-45.0, 45.0, generator=g)) for g in gens]
    return torch.stack([_shift_sum(clip, motion_taps(radius * s, sigma * s, a)) for clip, a in zip(x, angles, strict=True)])


def _jpeg(x: torch.Tensor, severity: int) -> torch.Tensor:
    """Encode and decode every frame with libjpeg-turbo (simplejpeg, as the frame reader) at 4:2:0, on the CPU."""
    try:
        import simplejpeg
    except ImportError as e:
        raise BenchError("the jpeg corruption needs simplejpeg: pip install simplejpeg") from e
    quality = JPEG_QUALITY[severity - 1]
    frames = x.mul(255.0).round_().clamp_(0, 255).to("cpu", torch.uint8).permute(0, 2, 3, 4, 1).contiguous()
    out = np.empty(frames.shape, dtype=np.uint8)
    for i, clip in enumerate(frames.numpy()):
        for t, frame in enumerate(clip):
            data = simplejpeg.encode_jpeg(frame, quality=quality, colorspace="RGB", colorsubsampling="420")
            out[i, t] = simplejpeg.decode_jpeg(data, colorspace="RGB")
    return torch.from_numpy(out).permute(0, 4, 1, 2, 3).to(x.device, torch.float32).div_(255.0)


def _brightness(x: torch.Tensor, severity: int) -> torch.Tensor:
    """ImageNet-C's HSV value shift without the HSV round trip: with H and S fixed, rgb scales with V."""
    v = x.amax(dim=1, keepdim=True)
    v_new = (v + BRIGHTNESS[severity - 1]).clamp_(max=1.0)
    return torch.where(v > 0, x * (v_new / v.clamp_min(1e-12)), v_new).clamp_(0.0, 1.0)


def _contrast(x: torch.Tensor, severity: int) -> torch.Tensor:
    """Pull every frame towards its own per-channel mean (ImageNet-C's per-image rule, frame by frame)."""
    m = x.mean(dim=(-2, -1), keepdim=True)
    return ((x - m) * CONTRAST[severity - 1] + m).clamp_(0.0, 1.0)


def _round_half_up(v: float) -> int:
    """Python's round() goes to even on .5; the tables say floor(v + 0.5)."""
    return math.floor(v + 0.5)


def _low_res(x: torch.Tensor, severity: int) -> torch.Tensor:
    """A low-resolution camera or a small face upscaled: detail is lost, the size is kept."""
    b, c, t, h, w = x.shape
    f = LOW_RES_SCALE[severity - 1]
    size = (max(1, _round_half_up(h * f)), max(1, _round_half_up(w * f)))
    y = F.interpolate(x.reshape(b, c * t, h, w), size=size, mode="bilinear", align_corners=False, antialias=True)
    y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
    return y.reshape(b, c, t, h, w).clamp_(0.0, 1.0)


def occluder_box(name: str, severity: int, h: int, w: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) pixel bounds, end-exclusive, of the occluder on an h x w face crop."""
    (top, bottom), (left, right) = OCCLUDER_ROWS[name][severity - 1], OCCLUDER_COLS[severity - 1]
    return _round_half_up(top * h), _round_half_up(bottom * h), _round_half_up(left * w), _round_half_up(right * w)


def _occlude(x: torch.Tensor, name: str, severity: int) -> torch.Tensor:
    """A fixed grey box (sunglasses, a mask, a hand) in every frame: no random parameter."""
    top, bottom, left, right = occluder_box(name, severity, *x.shape[-2:])
    out = x.clone()
    out[..., top:bottom, left:right] = OCCLUDER_VALUE
    return out


# ---------------------------------------------------------------- temporal corruptions


def _count(fraction: float, t: int, low: int, high: int) -> int:
    """round(fraction * t) frames, kept within [low, high]."""
    return min(high, max(low, _round_half_up(fraction * t)))


def _slots(t: int, n: int, g: torch.Generator) -> list[int]:
    """n distinct random slots of 1..t-1."""
    return (torch.randperm(t - 1, generator=g)[:n] + 1).tolist()


def _dropped_index(t: int, severity: int, g: torch.Generator) -> list[int]:
    """Lost frames shown as the last good one: timing kept, motion frozen in places."""
    dropped = set(_slots(t, _count(FRAME_FRACTION[severity - 1], t, 1, t - 1), g))
    idx = [0] * t
    for s in range(1, t):
        idx[s] = idx[s - 1] if s in dropped else s
    return idx


def _stutter_index(t: int, severity: int, g: torch.Generator) -> list[int]:
    """Duplicated frames push the rest later: the clip ends early in the expression."""
    repeats = set(_slots(t, _count(FRAME_FRACTION[severity - 1], t, 1, t - 1), g))
    idx = [0] * t
    for s in range(1, t):
        idx[s] = idx[s - 1] + (s not in repeats)
    return idx


def _jitter_index(t: int, severity: int, g: torch.Generator) -> list[int]:
    """Irregular sampling times: each slot takes a neighbour within k positions."""
    k = JITTER_K[severity - 1]
    offsets = torch.randint(-k, k + 1, (t,), generator=g)
    return (torch.arange(t) + offsets).clamp_(0, t - 1).tolist()


def _reverse_index(t: int, severity: int, g: torch.Generator) -> list[int]:
    """Is the method sensitive to the direction of time? A growing centred window runs backwards."""
    n = _count(REORDER_FRACTION[severity - 1], t, 2, t)
    start = (t - n) // 2
    idx = list(range(t))
    idx[start : start + n] = idx[start : start + n][::-1]
    return idx


def _shuffle_index(t: int, severity: int, g: torch.Generator) -> list[int]:
    """Does the method use frame order at all? A cycle moves every chosen frame, so severity = frames moved."""
    n = _count(REORDER_FRACTION[severity - 1], t, 2, t)
    chosen = torch.randperm(t, generator=g)[:n].tolist()  # in random order: a random n-cycle over them
    idx = list(range(t))
    for i, s in enumerate(chosen):
        idx[s] = chosen[(i + 1) % n]
    return idx


_INDEX: dict[str, Callable[[int, int, torch.Generator], list[int]]] = {
    "dropped_frames": _dropped_index,
    "stutter": _stutter_index,
    "temporal_jitter": _jitter_index,
    "reverse": _reverse_index,
    "shuffle": _shuffle_index,
}


def _reindex(x: torch.Tensor, name: str, gens: list[torch.Generator], severity: int) -> torch.Tensor:
    """Temporal corruptions as one gather on the device from per-clip frame maps drawn on the CPU."""
    b, c, t, h, w = x.shape
    if t < 2:
        raise BenchError(f"corruption '{name}' needs clips of at least 2 frames, got {t}: sample more frames")
    idx = torch.tensor([_INDEX[name](t, severity, g) for g in gens], dtype=torch.int64, device=x.device)
    return x.gather(2, idx.view(b, 1, t, 1, 1).expand(b, c, t, h, w))


def _crop_jitter(x: torch.Tensor, gens: list[torch.Generator], severity: int) -> torch.Tensor:
    """A face tracker's per-frame box noise: one batched affine resample of every frame."""
    b, c, t, h, w = x.shape
    shift, zoom = CROP_JITTER[severity - 1]
    u = torch.stack([torch.rand(t, 3, generator=g, dtype=torch.float64) * 2 - 1 for g in gens]).view(b * t, 3)
    theta = torch.zeros(b * t, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 + zoom * u[:, 0]
    theta[:, :, 2] = 2 * shift * u[:, 1:]  # normalised coordinates span 2
    frames = x.transpose(1, 2).reshape(b * t, c, h, w)
    grid = F.affine_grid(theta.to(x.device, frames.dtype), [b * t, c, h, w], align_corners=False)
    out = F.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.reshape(b, t, c, h, w).transpose(1, 2).clamp_(0.0, 1.0)


# ---------------------------------------------------------------- entry point


def corrupt(clips: torch.Tensor, video_ids: Sequence[str], name: str, severity: int) -> torch.Tensor:
    """Corrupt float (B, 3, T, H, W) clips in [0, 1] (one video id per clip) with `name` at `severity`: same
    shape, dtype and device, values in [0, 1], a function of (clip, video id, name, severity) only."""
    _check(name, severity)
    if clips.dim() != 5 or clips.shape[1] != 3 or not clips.is_floating_point():
        raise BenchError(f"corrupt needs float clips (B, 3, T, H, W) in [0, 1], got {clips.dtype} "
                         f"{tuple(clips.shape)}: corrupt before normalisation, channels first")
    if isinstance(video_ids, str) or len(video_ids) != clips.shape[0]:
        got = "one string" if isinstance(video_ids, str) else f"{len(video_ids)} video ids"
        raise BenchError(f"corrupt got {got} for {clips.shape[0]} clips: pass a list of one id per clip")
    if clips.shape[0] == 0:
        return clips.clone()
    x = clips.float()
    family = FAMILIES[name]
    gens = _generators(video_ids, name, severity)
    if name == "gaussian_noise":
        out = _noise(x, gens, severity)
    elif name == "defocus_blur":
        out = _defocus(x, severity)
    elif name == "motion_blur":
        out = _motion(x, gens, severity)
    elif name == "jpeg":
        out = _jpeg(x, severity)
    elif name == "brightness":
        out = _brightness(x, severity)
    elif name == "contrast":
        out = _contrast(x, severity)
    elif name == "low_resolution":
        out = _low_res(x, severity)
    elif family == "occlusion":
        out = _occlude(x, name, severity)
    elif name == "crop_jitter":
        out = _crop_jitter(x, gens, severity)
    else:
        out = _reindex(x, name, gens, severity)
    return out.to(clips.dtype)
