"""Frame folders and video files: numeric-aware frame ordering, decoding only the frames a sampler picked,
and transparent use of a pre-packed clip cache (`bench data pack`).

Fast path: JPEGs are decoded by libjpeg-turbo through simplejpeg straight into the output array (no
per-frame allocation, no stacking copy); PNGs and anything simplejpeg refuses go through PIL.

Packed clips: `bench data pack --dataset X --size S` writes every clip decoded and resized (short side S) as
one uint8 .npy (T,H,W,3) under `$DFER_BENCH_CACHE/packs/` (default `~/.cache/dfer-bench/packs/`) and
registers the pack in `packs/registry.json`. `read_clip` looks a clip up by its absolute path; an entry is
used only while the clip folder's mtime (video: size+mtime) still equals the one recorded at pack time, so
re-extracted clips fall back to decoding. `DFER_BENCH_PACKS=0` turns packs off.
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from bench.errors import DataError

FRAME_EXTS = (".jpg", ".jpeg", ".png")
VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".webm")
_TRAILING_INT = re.compile(r"(\d+)(?!.*\d)")
_SKIP_HINT = "re-extract this clip or set data.options.on_bad_clip=skip"


def cache_home() -> Path:
    """Where manifest caches and packs go when the dataset root is read-only: $DFER_BENCH_CACHE or ~/.cache."""
    return Path(os.environ.get("DFER_BENCH_CACHE", Path.home() / ".cache" / "dfer-bench"))


# ----------------------------------------------------------------------------------------------------------
# frame folders


def frame_sort_key(name: str) -> tuple[int, str]:
    """Sort on the trailing integer of the stem: 1.jpg < 2.jpg < 10.jpg, 00001_00012.jpg, 0.png."""
    stem = name.rsplit(".", 1)[0]
    m = _TRAILING_INT.search(stem)
    return (int(m.group(1)) if m else -1, name)


def frame_entries(clip_dir: Path) -> list[os.DirEntry]:
    """Frame files of a clip folder (DirEntry, so sizes come from one stat each) in temporal order."""
    if not clip_dir.is_dir():
        raise DataError(f"{clip_dir}: clip folder is missing; re-extract the frames or drop the clip from the list")
    try:
        with os.scandir(clip_dir) as it:
            entries = [e for e in it if e.name.lower().endswith(FRAME_EXTS) and e.is_file()]
    except OSError as e:
        raise DataError(f"{clip_dir}: cannot list clip folder ({e.strerror}); check permissions") from None
    if not entries:
        raise DataError(f"{clip_dir}: clip folder has no .jpg/.png frames; {_SKIP_HINT}")
    entries.sort(key=lambda e: frame_sort_key(e.name))
    return entries


def list_frames(clip_dir: Path) -> list[Path]:
    """Frame files of a clip folder in temporal order. Raises DataError for a missing or empty folder."""
    return [clip_dir / e.name for e in frame_entries(clip_dir)]


def verify_frame_file(path: Path, size: int | None = None) -> str | None:
    """Cheap integrity test without decoding: None when fine, else the reason (empty, truncated).

    Why: a truncated JPEG lacks its end-of-image marker (FF D9) and a truncated PNG its IEND chunk; reading
    the last bytes catches both at a fraction of a decode's cost.
    """
    try:
        n = size if size is not None else path.stat().st_size
        if n == 0:
            return "empty file"
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(max(n - 64, 0))
            tail = f.read()
    except OSError as e:
        return f"unreadable ({e.strerror})"
    if head[:2] == b"\xff\xd8":
        return None if b"\xff\xd9" in tail else "truncated JPEG (no end marker)"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return None if b"IEND" in tail else "truncated PNG (no IEND chunk)"
    return "not a JPEG or PNG file"


# ----------------------------------------------------------------------------------------------------------
# decoding


@lru_cache(maxsize=1)
def _simplejpeg():
    try:
        import simplejpeg

        return simplejpeg
    except ImportError:  # pragma: no cover - optional fast path
        return None


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read frame ({e.strerror}); check the file") from None
    if not data:
        raise DataError(f"{path}: frame is an empty file; {_SKIP_HINT}")
    return data


def _corrupt(path: Path, e: Exception) -> DataError:
    return DataError(f"{path}: corrupt or truncated frame ({type(e).__name__}); {_SKIP_HINT}")


def _decode_pil(data: bytes, path: Path) -> np.ndarray:
    from io import BytesIO

    from PIL import Image

    try:
        with Image.open(BytesIO(data)) as im:
            im.load()
            return np.asarray(im.convert("RGB"))
    except Exception as e:  # noqa: BLE001 - any decoder failure is a corrupt frame
        raise _corrupt(path, e) from None


def decode_image(path: Path) -> np.ndarray:
    """One RGB frame as uint8 (H,W,3). JPEGs through libjpeg-turbo (simplejpeg) when available, else PIL."""
    data = _read_bytes(path)
    sj = _simplejpeg()
    if data[:2] == b"\xff\xd8" and sj is not None:
        try:
            return sj.decode_jpeg(data, colorspace="RGB")
        except Exception as e:  # noqa: BLE001
            raise _corrupt(path, e) from None
    return _decode_pil(data, path)


def _decode_into(path: Path, out: np.ndarray | None) -> np.ndarray:
    """Decode a frame into `out` (H,W,3 uint8) when shapes agree; returns the array holding the pixels."""
    data = _read_bytes(path)
    sj = _simplejpeg()
    if data[:2] == b"\xff\xd8" and sj is not None:
        try:
            if out is not None:
                h, w, _, _ = sj.decode_jpeg_header(data)
                if (h, w, 3) == out.shape:
                    return sj.decode_jpeg(data, colorspace="RGB", buffer=out)
            return sj.decode_jpeg(data, colorspace="RGB")
        except Exception as e:  # noqa: BLE001
            raise _corrupt(path, e) from None
    return _decode_pil(data, path)


def read_frames(clip_dir: Path, indices: list[int], frames: list[Path] | None = None) -> np.ndarray:
    """Decode only the frames at `indices` (repeats decoded once) -> uint8 (T,H,W,3)."""
    frames = frames if frames is not None else list_frames(clip_dir)
    n = len(frames)
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise DataError(
            f"{clip_dir}: frame index {bad[0]} out of range, the folder now has {n} frames; the manifest cache "
            "is stale: run bench data check"
        )
    if not indices:
        raise DataError(f"{clip_dir}: no frame indices requested")
    first = _decode_into(frames[indices[0]], None)
    out = np.empty((len(indices), *first.shape), dtype=np.uint8)
    out[0] = first
    done: dict[int, int] = {indices[0]: 0}
    for k, i in enumerate(indices[1:], 1):
        if i in done:
            out[k] = out[done[i]]
            continue
        got = _decode_into(frames[i], out[k])
        if got.shape != first.shape:
            raise DataError(
                f"{clip_dir}: frames have different sizes {first.shape[:2]} and {got.shape[:2]}; re-extract the clip"
            )
        if got is not out[k] and not np.shares_memory(got, out[k]):
            out[k] = got
        done[i] = k
    return out


# ----------------------------------------------------------------------------------------------------------
# video files


def count_video_frames(path: Path) -> int:
    return len(_video_reader(path))


def read_video(path: Path, indices: list[int]) -> np.ndarray:
    """Decode the picked frames of a video file through decord -> uint8 (T,H,W,3)."""
    vr = _video_reader(path)
    n = len(vr)
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise DataError(f"{path}: frame index {bad[0]} out of range ({n} frames); run bench data check")
    try:
        return vr.get_batch(list(indices)).asnumpy()
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{path}: cannot decode frames {indices[:3]}... ({type(e).__name__}); check the video") from None


def _video_reader(path: Path):
    if not path.is_file():
        raise DataError(f"{path}: video file is missing; check the dataset root")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: video file is empty; re-download it or set data.options.on_bad_clip=skip")
    try:
        import decord
    except ImportError:
        raise DataError("decord is not installed; `pip install decord` to read video files, or use frame folders") from None
    try:
        vr = decord.VideoReader(str(path), num_threads=1)
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{path}: not a readable video ({type(e).__name__}); re-download or re-encode it") from None
    if len(vr) == 0:
        raise DataError(f"{path}: video has no frames; re-download or re-encode it")
    return vr


def is_image_file(path: Path) -> bool:
    """A single image used as a one-frame clip (static-image datasets such as AffectNet or RAF-DB)."""
    return path.suffix.lower() in FRAME_EXTS and path.is_file()


def read_image_clip(path: Path, indices: list[int]) -> np.ndarray:
    """An image file as a clip: its one frame at every requested index."""
    frame = decode_image(path)
    return np.repeat(frame[None], len(indices), axis=0)


def count_frames(path: Path) -> int:
    """Frames in a clip folder or video file (counted on disk, never trusted from a list); 1 for an image."""
    if path.suffix.lower() in VIDEO_EXTS:
        return count_video_frames(path)
    if is_image_file(path):
        return 1
    return len(frame_entries(path))


# ----------------------------------------------------------------------------------------------------------
# packed clips


def clip_signature(path: Path) -> str:
    """What must not change for a packed clip to stay valid: folder mtime, or video size+mtime."""
    st = path.stat()
    if path.is_dir():
        return f"d{st.st_mtime_ns}"
    return f"f{st.st_size}:{st.st_mtime_ns}"


def registry_path() -> Path:
    return cache_home() / "packs" / "registry.json"


class _Pack:
    """One registered pack: clips of one media root resized to one size; its index is loaded on first use."""

    def __init__(self, root: str, size: int, directory: str):
        self.root = root.rstrip(os.sep)
        self.size = int(size)
        self.dir = Path(directory)
        self._clips: dict[str, list] | None = None

    def clips(self) -> dict[str, list]:
        if self._clips is None:
            try:
                self._clips = json.loads((self.dir / "index.json").read_text())["clips"]
            except (OSError, ValueError, KeyError):
                self._clips = {}
        return self._clips


_REGISTRY: dict = {"key": None, "packs": []}


def _packs() -> list[_Pack]:
    if os.environ.get("DFER_BENCH_PACKS", "1") == "0":
        return []
    reg = registry_path()
    try:
        st = reg.stat()
    except OSError:
        return []
    key = (str(reg), st.st_mtime_ns, st.st_size)
    if _REGISTRY["key"] != key:
        try:
            entries = json.loads(reg.read_text()).get("packs", [])
        except (OSError, ValueError):
            entries = []
        _REGISTRY["packs"] = [_Pack(e["root"], e["size"], e["dir"]) for e in entries if Path(e["dir"]).is_dir()]
        _REGISTRY["key"] = key
    return _REGISTRY["packs"]


def find_packed(path: Path, size: int | None = None) -> Path | None:
    """The packed .npy of a clip, or None. With `size`, the smallest pack >= size; else the largest pack."""
    packs = _packs()
    if not packs:
        return None
    p = os.path.abspath(path)
    hits = []
    for pack in packs:
        if p.startswith(pack.root + os.sep):
            entry = pack.clips().get(p[len(pack.root) + 1:].replace(os.sep, "/"))
            if entry is not None:
                hits.append((pack, entry))
    if size is not None:
        hits = [h for h in hits if h[0].size >= size]
        hits.sort(key=lambda h: h[0].size)
    else:
        hits.sort(key=lambda h: -h[0].size)
    for pack, entry in hits:
        try:
            if clip_signature(Path(p)) == entry[2]:
                return pack.dir / entry[0]
        except OSError:
            return None
    return None


def read_packed(npy: Path, indices: list[int], path: Path) -> np.ndarray:
    """The picked frames of a packed clip (memory-mapped, so only those frames are read)."""
    try:
        arr = np.load(npy, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise DataError(f"{npy}: packed clip unreadable ({type(e).__name__}); rebuild it with bench data pack") from None
    n = arr.shape[0]
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise DataError(f"{path}: frame index {bad[0]} out of range ({n} packed frames); rebuild with bench data pack")
    return np.ascontiguousarray(arr[np.asarray(indices, dtype=np.int64)])


def read_clip(path: Path, indices: list[int], size: int | None = None) -> np.ndarray:
    """Frames `indices` of a clip folder or video -> uint8 (T,H,W,3); from a pack when one covers the clip.

    `size` (the model's input size) picks a pack whose frames are at least that large.
    """
    npy = find_packed(path, size)
    if npy is not None:
        return read_packed(npy, indices, path)
    if path.suffix.lower() in VIDEO_EXTS:
        return read_video(path, indices)
    if is_image_file(path):
        return read_image_clip(path, indices)
    return read_frames(path, indices)
