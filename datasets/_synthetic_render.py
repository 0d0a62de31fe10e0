"""Procedural face videos for the `synthetic` DFER testbed: action-unit trajectories and a numpy renderer.

Why a separate module: the trajectory code (what the emotion *is*) is shared by the renderer and by the
"time matters" check in the tests, so the check measures exactly the signal that ends up in the pixels.

Design (see `datasets/synthetic.py` for the dataset around it):

* A face is described per frame by 8 action parameters (`AU_NAMES`): mouth corners up(+)/down(-), mouth
  opening, brow raise, inner-brow raise, brow furrow, eye opening (+ widen / - squint), nose wrinkle, lip press.
* An emotion is an *event*: class-specific pulses on a few parameters, placed at a random time with a random
  intensity. Two class pairs are exact time reversals of each other (surprise <-> fear, angry <-> disgust):
  the same set of frames, shown in the opposite order, so no order-less (bag-of-frames) feature can tell them
  apart; only the dynamics can. Neutral has no event.
* Emotion-irrelevant content dilutes it: identity (face shape, skin, feature placement), a resting-face bias per
  identity (added to the parameters for the whole clip, so one frame is ambiguous), talking, blinking, gaze,
  head drift, camera shake, illumination changes, moving textured backgrounds and sensor noise, all scaled by
  the `distractor` knob.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASSES: tuple[str, ...] = ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")  # DFEW order
AU_NAMES: tuple[str, ...] = ("corner", "open", "brow", "inner", "furrow", "eye", "wrinkle", "press")
_A = {n: i for i, n in enumerate(AU_NAMES)}
# classes whose event is the time reversal of another class's event template
REVERSED_OF: dict[str, str] = {"fear": "surprise", "disgust": "angry"}


# ----------------------------------------------------------------------------------------------------------
# trajectories


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _pulse(t: np.ndarray, start: float, rise: float, hold: float, fall: float) -> np.ndarray:
    """0 -> 1 over `rise` frames from `start`, flat for `hold`, back to 0 over `fall` (smoothstep ramps)."""
    up = _smoothstep((t - start) / max(rise, 1e-3))
    down = 1.0 - _smoothstep((t - (start + rise + hold)) / max(fall, 1e-3))
    return np.minimum(up, down)


# A template is a list of pulses: (amplitude, start, rise, hold, fall, {au: weight}); AUs combine by max.
Pulse = tuple[float, float, float, float, float, dict[str, float]]


def _template(cls: str, apex: float, rng: np.random.Generator) -> list[Pulse]:
    """Event template of one class in event-local frames (start at 0). Jittered per clip."""
    u = rng.uniform
    if cls == "happy":  # smile with squint, corners lead the eyes
        r, f, lag = u(4, 7), u(5, 8), u(1, 2)
        return [(1.0, 0.0, r, 1.5 * apex, f, {"corner": 1.0}),
                (1.0, lag, r, 1.5 * apex, f, {"eye": -0.45, "open": 0.2})]
    if cls == "sad":  # slow: inner brows lead, corners drop after
        r, f, lag = u(7, 11), u(7, 10), u(2, 3.5)
        return [(1.0, 0.0, r, 1.5 * apex, f, {"inner": 1.0, "furrow": 0.25}),
                (1.0, lag, r, 1.5 * apex, f, {"corner": -0.8, "eye": -0.3})]
    if cls == "surprise":  # abrupt onset, slow relaxation; brows/eyes first, jaw drops after (first in, first out)
        r, f, lag = u(1.5, 2.5), u(8, 12), u(2, 3.5)
        return [(1.0, 0.0, r, apex, f, {"brow": 1.0, "eye": 0.8}),
                (1.0, lag, r + 0.5, apex, f, {"open": 0.85})]
    if cls == "angry":  # escalation: a small tensing, partial release, then the full one; brows lead
        lag = u(1.5, 3.0)
        r1, h1, f1 = u(2, 3), 0.5 * apex, u(2.5, 3.5)
        s2 = r1 + h1 + 0.4 * f1
        r2, h2, f2 = u(2, 3), apex, u(4, 6)
        brows = {"furrow": 1.0, "eye": -0.5}
        mouth = {"press": 0.8, "corner": -0.3, "wrinkle": 0.45}
        return [(0.45, 0.0, r1, h1, f1, brows), (0.45, lag, r1, h1, f1, mouth),
                (1.0, s2, r2, h2, f2, brows), (1.0, s2 + lag, r2, h2, f2, mouth)]
    raise ValueError(cls)


def expression_track(cls: str, length: int, rng: np.random.Generator, *, intensity: float = 1.0,
                     apex_len: float = 6.0, max_frac: float = 0.85) -> tuple[np.ndarray, float, int, int]:
    """(length, n_AU) expression deltas for one clip, plus (amplitude, event start, event end frame).

    The event is squeezed to at most `max_frac` of the clip and placed uniformly inside it, so a time-reversed
    class gets the same distribution of frames as its partner.
    """
    track = np.zeros((length, len(AU_NAMES)), np.float32)
    if cls == "neutral":
        rng.uniform(size=8)  # keep the stream aligned with the other classes (harmless)
        return track, 0.0, -1, -1
    base = REVERSED_OF.get(cls, cls)
    apex = apex_len * rng.uniform(0.7, 1.3)
    pulses = _template(base, apex, rng)
    span = max(p[1] + p[2] + p[3] + p[4] for p in pulses)
    scale = min(1.0, max_frac * length / span)
    span *= scale
    # start on a half-frame grid, (m - span) / 2: then a reversed event samples exactly the same time points
    m = int(rng.integers(int(np.ceil(span)), max(int(np.floor(2 * (length - 1) - span)), int(np.ceil(span))) + 1))
    start = (m - span) / 2
    amp = float(intensity * rng.uniform(0.5, 1.0))
    t = np.arange(length, dtype=np.float64) - start
    if base != cls:
        t = span - t  # exact time reversal of the partner's event
    for a, s, r, h, f, weights in pulses:
        env = a * _pulse(t, s * scale, r * scale, h * scale, f * scale)
        for name, w in weights.items():
            j = _A[name]
            w = w * rng.uniform(0.85, 1.15)
            cur = track[:, j]
            val = (amp * w * env).astype(np.float32)
            track[:, j] = np.where(np.abs(val) > np.abs(cur), val, cur)
    return track, amp, int(np.floor(start)), int(np.ceil(start + span))


@dataclass
class Identity:
    """Emotion-irrelevant, per-person appearance: geometry, colours and a resting-face bias."""

    face_w: float
    face_h: float
    eye_x: float
    eye_y: float
    eye_w: float
    eye_h: float
    brow_gap: float
    brow_thick: float
    nose_len: float
    mouth_y: float
    mouth_w: float
    hairline: float
    skin: np.ndarray
    hair: np.ndarray
    lip: np.ndarray
    iris: np.ndarray
    bias: np.ndarray  # (n_AU,) resting-face offsets


def make_identity(rng: np.random.Generator, distractor: float) -> Identity:
    u = rng.uniform
    dark = u(0, 1)
    skin = (1 - dark) * np.array([0.96, 0.80, 0.68]) + dark * np.array([0.42, 0.28, 0.20])
    skin = np.clip(skin + rng.normal(0, 0.03, 3), 0.05, 1)
    hair_palette = np.array([[0.08, 0.06, 0.05], [0.35, 0.22, 0.12], [0.75, 0.62, 0.35], [0.6, 0.6, 0.6],
                             [0.45, 0.15, 0.08]])
    hair = np.clip(hair_palette[rng.integers(len(hair_palette))] + rng.normal(0, 0.03, 3), 0, 1)
    bias = np.zeros(len(AU_NAMES))
    sd = 0.3 * distractor
    for name, s in (("corner", sd), ("brow", sd), ("inner", 0.7 * sd), ("furrow", sd), ("eye", sd),
                    ("wrinkle", 0.4 * sd), ("press", 0.5 * sd)):
        bias[_A[name]] = rng.normal(0, s)
    bias[_A["open"]] = u(0, 0.15) * distractor
    return Identity(
        face_w=u(0.50, 0.62), face_h=u(0.70, 0.80), eye_x=u(0.20, 0.27), eye_y=u(-0.16, -0.06),
        eye_w=u(0.09, 0.12), eye_h=u(0.045, 0.06), brow_gap=u(0.11, 0.15), brow_thick=u(0.018, 0.03),
        nose_len=u(0.2, 0.28), mouth_y=u(0.36, 0.46), mouth_w=u(0.15, 0.21), hairline=u(-0.75, -0.5),
        skin=skin.astype(np.float32), hair=hair.astype(np.float32),
        lip=np.clip(skin * np.array([0.85, 0.5, 0.5]), 0, 1).astype(np.float32),
        iris=np.clip(rng.uniform(0.05, 0.45, 3), 0, 1).astype(np.float32), bias=bias.astype(np.float32),
    )


@dataclass
class ClipParams:
    """Everything a clip is rendered from; `au` is the full per-frame parameter trajectory (bias included)."""

    label: str
    au: np.ndarray  # (T, n_AU): resting bias + expression + talking
    expression: np.ndarray  # (T, n_AU): the emotion-carrying part only
    blink: np.ndarray  # (T,) 0 open .. 1 closed
    gaze: np.ndarray  # (T, 2)
    pose: np.ndarray  # (T, 4): centre x, centre y, scale, roll
    light: np.ndarray  # (T, 3): gain, direction angle, directional strength
    bg: dict
    amplitude: float
    event: tuple[int, int]


def clip_params(label: str, length: int, ident: Identity, rng: np.random.Generator, *, intensity: float,
                distractor: float, apex_len: float) -> ClipParams:
    """Sample the full trajectory of one clip (expression + every distractor), without rendering."""
    d = distractor
    expr, amp, s, e = expression_track(label, length, rng, intensity=intensity, apex_len=apex_len)
    t = np.arange(length, dtype=np.float64)
    au = expr + ident.bias[None, :]
    # talking: syllable-rate mouth oscillation over a random stretch of the clip
    if rng.uniform() < 0.75:
        f = rng.uniform(0.12, 0.25)
        a = 0.45 * d * rng.uniform(0.4, 1.0)
        t0, t1 = sorted(rng.uniform(-0.3, 1.3, 2) * length)
        gate = _pulse(t, t0, 2.0, max(t1 - t0, 0.0), 2.0)
        au[:, _A["open"]] += (a * gate * 0.5 * (1 - np.cos(2 * np.pi * f * t + rng.uniform(0, 6.3)))).astype(np.float32)
    else:
        rng.uniform(size=5)
    # blinks: ~one per 45 frames, 3 frames long
    blink = np.zeros(length, np.float32)
    n_blinks = rng.poisson(min(d, 1.5) * length / 45.0)
    for c in rng.uniform(0, length, n_blinks):
        blink = np.maximum(blink, np.clip(1.0 - np.abs(t - c) / 1.6, 0, 1).astype(np.float32))
    gaze = np.cumsum(rng.normal(0, 0.004 * d, (length, 2)), axis=0) + rng.normal(0, 0.01 * d, 2)
    # head pose: drift + slow sway + shake
    ph = rng.uniform(0, 6.3, 4)
    w = rng.uniform(0.05, 0.2, 4)
    v = rng.normal(0, 0.003 * d, 2)
    cx = rng.normal(0, 0.04 * d) + v[0] * (t - length / 2) + 0.04 * d * np.sin(w[0] * t + ph[0])
    cy = rng.normal(0, 0.04 * d) + v[1] * (t - length / 2) + 0.03 * d * np.sin(w[1] * t + ph[1])
    sc = rng.uniform(1.05, 1.2) * (1 + 0.04 * d * np.sin(w[2] * t + ph[2]))
    roll = rng.normal(0, 0.05 * d) + 0.06 * d * np.sin(w[3] * t + ph[3])
    shake = rng.normal(0, 0.012 * d, (length, 2))
    pose = np.stack([cx + shake[:, 0], cy + shake[:, 1], sc, roll], axis=1)
    gain = 1 + rng.normal(0, 0.08 * d) + 0.12 * d * np.sin(rng.uniform(0.03, 0.15) * t + rng.uniform(0, 6.3))
    ang = rng.uniform(0, 6.3) + rng.uniform(-0.08, 0.08) * d * t
    light = np.stack([gain, ang, np.full(length, 0.25 * d * rng.uniform(0.3, 1.0))], axis=1)
    bg = {
        "base": rng.uniform(0.1, 0.9, 3),
        "k": rng.normal(0, 9, (3, 2)),
        "w": rng.uniform(-0.4, 0.4, 3),
        "phase": rng.uniform(0, 6.3, 3),
        "col": rng.normal(0, 0.12 * d, (3, 3)),
        "blob": np.concatenate([rng.uniform(-1, 1, 2), rng.normal(0, 0.04, 2), rng.uniform(0.15, 0.3, 1)]),
        "blob_col": rng.uniform(0, 1, 3),
        "blob_on": float(rng.uniform() < 0.6 * min(d, 1.0)),
    }
    return ClipParams(label, au.astype(np.float32), expr, blink, gaze.astype(np.float32),
                      pose.astype(np.float32), light.astype(np.float32), bg, amp, (s, e))


# ----------------------------------------------------------------------------------------------------------
# rendering


def _over(img: np.ndarray, alpha: np.ndarray, color) -> None:
    """Alpha-composite a colour (3,) over the planar image (3,T,H,W) in place, one contiguous plane at a time
    (planar layout: ~4x faster than broadcasting over a trailing RGB axis)."""
    for c in range(3):
        img[c] += alpha * (np.float32(color[c]) - img[c])


def _soft(sdf: np.ndarray, pix: float) -> np.ndarray:
    """Anti-aliased coverage of the region sdf < 0 (sdf in face units, pix = one pixel in face units)."""
    return np.clip(0.5 - sdf / pix, 0.0, 1.0)


def _ellipse_sdf(u, v, cx, cy, a, b):
    return (np.sqrt(((u - cx) / a) ** 2 + ((v - cy) / b) ** 2) - 1.0) * np.minimum(a, b)


def _segment_sdf(u, v, x0, y0, x1, y1):
    dx, dy = x1 - x0, y1 - y0
    h = np.clip(((u - x0) * dx + (v - y0) * dy) / (dx * dx + dy * dy + 1e-9), 0.0, 1.0)
    return np.sqrt((u - x0 - h * dx) ** 2 + (v - y0 - h * dy) ** 2)


def _col(x: np.ndarray) -> np.ndarray:
    """Per-frame scalar (T,) -> broadcastable (T,1,1)."""
    return np.asarray(x, np.float32)[:, None, None]


def render_clip(p: ClipParams, ident: Identity, res: int, rng: np.random.Generator, distractor: float) -> np.ndarray:
    """uint8 (T, res, res, 3) frames of one clip, all frames at once on a (T,H,W) grid."""
    T = p.au.shape[0]
    g = ((np.arange(res, dtype=np.float32) + 0.5) / res * 2 - 1)
    X = g[None, None, :]
    Y = g[None, :, None]
    # background: drifting colour gratings and an optional moving blob
    tt = np.arange(T, dtype=np.float32)[:, None, None]
    img = np.empty((3, T, res, res), np.float32)
    img[:] = np.asarray(p.bg["base"], np.float32)[:, None, None, None]
    for i in range(3):
        k = p.bg["k"][i].astype(np.float32)
        wave = np.sin(k[0] * X + k[1] * Y + np.float32(p.bg["w"][i]) * tt + np.float32(p.bg["phase"][i]))
        for c in range(3):
            img[c] += wave * np.float32(p.bg["col"][i][c])
    bl = p.bg["blob"]
    if p.bg["blob_on"]:
        bx = _col(bl[0] + bl[2] * np.arange(T))
        by = _col(bl[1] + bl[3] * np.arange(T))
        _over(img, _soft(np.sqrt((X - bx) ** 2 + (Y - by) ** 2) - bl[4], 2.0 / res), p.bg["blob_col"])
    # face coordinates: inverse head transform
    cx, cy, sc, roll = (_col(p.pose[:, i]) for i in range(4))
    dx, dy = (X - cx) / sc, (Y - cy) / sc
    cr, sr = np.cos(roll), np.sin(roll)
    u = cr * dx + sr * dy
    v = -sr * dx + cr * dy
    pix = float(2.0 / res / np.mean(p.pose[:, 2]))
    au = {n: _col(p.au[:, i]) for i, n in enumerate(AU_NAMES)}
    # hair behind the head, then the face with a little radial shading, then the fringe
    hair_back = _soft(_ellipse_sdf(u, v, 0.0, -0.12, ident.face_w * 1.12, ident.face_h * 1.02), pix)
    _over(img, hair_back * (v < 0.1 * ident.face_h), ident.hair)
    face_sdf = _ellipse_sdf(u, v, 0.0, 0.0, ident.face_w, ident.face_h)
    r2 = (u / ident.face_w) ** 2 + (v / ident.face_h) ** 2
    shade = 1.0 - 0.18 * np.clip(r2, 0, 1)
    face = _soft(face_sdf, pix)
    for c in range(3):
        img[c] += face * (ident.skin[c] * shade - img[c])
    fringe = _soft(_ellipse_sdf(u, v, 0.0, -0.1, ident.face_w * 1.06, ident.face_h * 1.0), pix) * _soft(v - ident.hairline, pix)
    _over(img, fringe, ident.hair)
    def win(u0: float, u1: float, v0: float, v1: float) -> tuple[slice, slice, slice]:
        """Pixel window (all frames) that holds the face-space box [u0,u1]x[v0,v1]: features are small, so
        rendering them only there is several times cheaper than on the whole frame."""
        cu = np.array([u0, u0, u1, u1])[None]
        cv = np.array([v0, v1, v0, v1])[None]
        c, s_ = np.cos(p.pose[:, 3:4]), np.sin(p.pose[:, 3:4])
        px = (p.pose[:, 0:1] + p.pose[:, 2:3] * (c * cu - s_ * cv) + 1) / 2 * res - 0.5
        py = (p.pose[:, 1:2] + p.pose[:, 2:3] * (s_ * cu + c * cv) + 1) / 2 * res - 0.5
        x0, x1 = max(int(np.floor(px.min())) - 2, 0), min(int(np.ceil(px.max())) + 3, res)
        y0, y1 = max(int(np.floor(py.min())) - 2, 0), min(int(np.ceil(py.max())) + 3, res)
        return (slice(None), slice(y0, max(y1, y0)), slice(x0, max(x1, x0)))

    def over(w: tuple[slice, slice, slice], alpha: np.ndarray, color) -> None:
        for c in range(3):
            img[c][w] += alpha * (np.float32(color[c]) - img[c][w])

    amax = p.au.max(axis=0)
    # forehead lines (brow raise), glabella lines (furrow) and brows
    w = win(-(ident.eye_x + 0.16), ident.eye_x + 0.16,
            ident.eye_y - ident.brow_gap - 0.11 * max(amax[_A["brow"]], 0) - 0.085 * max(amax[_A["inner"]], 0) - 0.17,
            ident.eye_y + 0.08)
    uu, vv = u[w], v[w]
    brow_y = ident.eye_y - ident.brow_gap - 0.11 * au["brow"]
    line_w = 0.008
    fl = np.zeros_like(uu)
    for k, yy in enumerate((-0.07, -0.12)):
        fl = np.maximum(fl, _soft(_segment_sdf(uu, vv, -0.2 + 0.03 * k, brow_y + yy, 0.2 - 0.03 * k, brow_y + yy) - line_w, pix))
    skin_vis = face[w] * (1 - fringe[w])
    over(w, fl * skin_vis * np.clip(au["brow"] - 0.15, 0, 1) * 0.8, ident.skin * 0.55)
    gl = np.zeros_like(uu)
    for sx in (-1, 1):
        gl = np.maximum(gl, _soft(_segment_sdf(uu, vv, sx * 0.03, brow_y - 0.01, sx * 0.025, brow_y + 0.06) - line_w, pix))
    over(w, gl * np.clip(au["furrow"] - 0.1, 0, 1) * 0.9, ident.skin * 0.5)
    # brows: inner end lowered/pulled in by furrow, raised by inner-brow raise
    fur = np.clip(au["furrow"], -0.5, 1.5)
    inn = np.clip(au["inner"], -0.5, 1.5)
    bm = np.zeros_like(uu)
    for sx in (-1, 1):
        x0 = sx * (ident.eye_x - 0.09 + 0.03 * fur)
        y0 = brow_y + 0.075 * fur - 0.085 * inn
        x1 = sx * (ident.eye_x + 0.11)
        y1 = brow_y + 0.01 * fur + 0.015 * inn
        bm = np.maximum(bm, _soft(_segment_sdf(uu, vv, x0, y0, x1, y1) - ident.brow_thick, pix))
    over(w, bm, ident.hair * 0.7)
    # eyes: sclera ellipse whose height follows eye opening and blinks, iris, dark outline
    ext = ident.eye_h * 2.6 + 0.03
    w = win(-(ident.eye_x + ident.eye_w + 0.03), ident.eye_x + ident.eye_w + 0.03, ident.eye_y - ext, ident.eye_y + ext)
    uu, vv = u[w], v[w]
    eh = ident.eye_h * np.clip(1 + 0.9 * au["eye"], 0.1, 2.5) * (1 - 0.95 * _col(p.blink))
    eye_cov = np.zeros_like(uu)
    outline = np.zeros_like(uu)
    iris = np.zeros_like(uu)
    gx, gy = _col(p.gaze[:, 0]), _col(p.gaze[:, 1])
    for sx in (-1, 1):
        sd = _ellipse_sdf(uu, vv, sx * ident.eye_x, ident.eye_y, ident.eye_w, eh + 1e-3)
        cov = _soft(sd, pix)
        eye_cov = np.maximum(eye_cov, cov)
        within = _soft(np.abs(uu - sx * ident.eye_x) - ident.eye_w, pix)  # the SDF approximation leaks sideways when shut
        outline = np.maximum(outline, _soft(np.abs(sd) - 0.008, pix) * within)
        iris = np.maximum(iris, cov * _soft(np.sqrt((uu - sx * ident.eye_x - gx) ** 2 + (vv - ident.eye_y - gy) ** 2) - 0.045, pix))
    over(w, eye_cov, (0.95, 0.95, 0.93))
    over(w, iris, ident.iris)
    over(w, outline, ident.skin * 0.3)
    # nose: bridge shade, nostrils (lifted by wrinkle), wrinkle lines across the bridge
    w = win(-0.1, 0.1, ident.eye_y, ident.eye_y + ident.nose_len + 0.03)
    uu, vv = u[w], v[w]
    ny = ident.eye_y + ident.nose_len - 0.03 * np.clip(au["wrinkle"], 0, 1.5)
    bridge = _soft(_segment_sdf(uu, vv, 0.015, ident.eye_y + 0.03, 0.02, ny) - 0.01, pix)
    over(w, bridge * 0.35, ident.skin * 0.6)
    nos = np.zeros_like(uu)
    for sx in (-1, 1):
        nos = np.maximum(nos, _soft(_ellipse_sdf(uu, vv, sx * 0.045, ny, 0.025, 0.014), pix))
    over(w, nos, ident.skin * 0.35)
    wl = np.zeros_like(uu)
    for yy in (0.05, 0.1):
        wl = np.maximum(wl, _soft(_segment_sdf(uu, vv, -0.06, ident.eye_y + yy, 0.06, ident.eye_y + yy + 0.01) - line_w, pix))
    over(w, wl * np.clip(au["wrinkle"] - 0.1, 0, 1), ident.skin * 0.45)
    # mouth: lips around a centreline curved by the corners; interior opens with `open`; press narrows it
    w = win(-ident.mouth_w * 1.25 - 0.03, ident.mouth_w * 1.25 + 0.03, ident.mouth_y - 0.22, ident.mouth_y + 0.26)
    uu, vv = u[w], v[w]
    press = np.clip(au["press"], -0.5, 1.5)
    corner = np.clip(au["corner"], -1.5, 1.5)
    mw = ident.mouth_w * (1 + 0.15 * np.clip(corner, 0, None) - 0.25 * np.clip(press, 0, None))
    xn = uu / mw
    bulge = np.clip(1 - xn * xn, 0, 1)
    yc = ident.mouth_y - 0.1 * corner * xn * xn
    op = 0.13 * np.clip(au["open"], 0, 1.4) * bulge
    lt = (0.022 * (1 - 0.6 * np.clip(press, 0, 1))) * np.sqrt(bulge) + 0.006
    dist = np.abs(vv - yc)
    inside_x = _soft((np.abs(xn) - 1) * mw, pix)
    over(w, _soft(dist - op - lt, pix) * inside_x, ident.lip)
    over(w, _soft(dist - op, pix) * inside_x * np.clip(op / 0.01, 0, 1), (0.22, 0.05, 0.06))
    # global illumination: gain and a rotating directional gradient; then sensor noise
    gain, ang, strength = (_col(p.light[:, i]) for i in range(3))
    img *= (gain * (1 + strength * (np.cos(ang) * X + np.sin(ang) * Y)))[None]
    if distractor > 0:
        img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(0.012 * distractor)
    np.clip(img, 0, 1, out=img)
    img *= 255
    img += 0.5
    return np.ascontiguousarray(img.astype(np.uint8).transpose(1, 2, 3, 0))
