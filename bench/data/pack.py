"""`bench data pack`: a cache of decoded, resized clips that `read_clip` uses transparently.

Where: `$DFER_BENCH_CACHE/packs/<dataset>-<sha of media root>-s<S>/` (default `~/.cache/dfer-bench`), or
`--out DIR`. Inside: `index.json` ({rel_path: [npy file, frames, clip signature]}) and one uint8 .npy
(T,H,W,3) per clip, every frame of the clip, short side resized to S (antialiased bilinear, as the
transforms resize). The pack is registered in `packs/registry.json` under the absolute media root and S.
Keying/invalidation: read_clip finds a clip by its absolute path and uses the entry only while the clip
folder's mtime (video: size+mtime) equals the recorded signature, so re-extracted clips are decoded again;
re-running pack refreshes stale entries only. Delete the folder (and its registry entry is dropped on the
next pack, or ignored once the folder is gone) to remove it; DFER_BENCH_PACKS=0 bypasses all packs.
Why: decoding dominates the data path for 16-frame clips; memory-mapped packs read only the sampled frames.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.data import frames as fr
from bench.data.roots import missing_message, resolve_root
from bench.errors import BenchError, DataError
from bench.registry import DATASETS


def resize_clip(clip: np.ndarray, size: int) -> np.ndarray:
    """uint8 (T,H,W,3) -> short side `size`, antialiased bilinear (torchvision, like the transforms)."""
    t, h, w, _ = clip.shape
    if min(h, w) == size:
        return np.ascontiguousarray(clip)
    import torch
    import torchvision.transforms.v2.functional as TF

    x = torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2)
    y = TF.resize(x, size, antialias=True)
    return y.permute(0, 2, 3, 1).contiguous().numpy()


def _decode_all(path: Path, n: int) -> np.ndarray:
    if path.suffix.lower() in fr.VIDEO_EXTS:
        return fr.read_video(path, list(range(n)))
    if fr.is_image_file(path):
        return fr.read_image_clip(path, list(range(n)))
    return fr.read_frames(path, list(range(n)))


def _write_registry(media_root: str, size: int, pack_dir: Path) -> None:
    reg = fr.registry_path()
    reg.parent.mkdir(parents=True, exist_ok=True)
    try:
        packs = json.loads(reg.read_text()).get("packs", [])
    except (OSError, ValueError):
        packs = []
    packs = [p for p in packs if Path(p["dir"]).is_dir() and not (p["root"] == media_root and int(p["size"]) == size)
             and Path(p["dir"]).resolve() != pack_dir.resolve()]
    packs.append({"root": media_root, "size": size, "dir": str(pack_dir.resolve())})
    tmp = reg.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"packs": packs}, indent=1))
    os.replace(tmp, reg)


def pack_dataset(name: str, size: int, root: str | None = None, folds: list[int | None] | None = None,
                 options: dict | None = None, out: str | None = None, workers: int | None = None,
                 log: Callable[[str], None] = print) -> dict:
    """Pack every clip of the given folds (default all). Returns a summary dict."""
    if size < 16:
        raise BenchError(f"--size {size} is too small; pack at the model's input size or larger (e.g. 112, 224)")
    info = DATASETS.get(name)
    options = dict(options or {})
    root_path, source = resolve_root(info, root or options.pop("root", None))
    if not root_path.exists():
        raise DataError(missing_message(info, root_path, source))
    clips: dict[str, dict[str, int]] = {}  # media root -> rel -> frames
    for f in folds or list(info.folds):
        m = info.build_manifest(root_path, f, {**options, "on_bad_clip": "skip"})
        media = os.path.abspath(m.root)
        for r in m.records:
            clips.setdefault(media, {})[r.rel_path] = r.num_frames
    summary = {"dataset": name, "size": size, "packs": []}
    for media, recs in clips.items():
        key = hashlib.sha256(media.encode()).hexdigest()[:10]
        pack_dir = Path(out).expanduser() if out else fr.cache_home() / "packs" / f"{name}-{key}-s{size}"
        (pack_dir / "data").mkdir(parents=True, exist_ok=True)
        idx_path = pack_dir / "index.json"
        try:
            index = json.loads(idx_path.read_text())
            if index.get("root") != media or int(index.get("size", -1)) != size:
                index = {}
        except (OSError, ValueError):
            index = {}
        entries: dict[str, list] = index.get("clips", {})
        todo = []
        for rel, n in recs.items():
            path = Path(media) / rel
            sig = fr.clip_signature(path)
            e = entries.get(rel)
            if e and e[2] == sig and e[1] == n and (pack_dir / e[0]).is_file():
                continue
            todo.append((rel, n, sig))

        def work(item: tuple[str, int, str], pack_dir: Path = pack_dir, media: str = media) -> tuple[str, list | str]:
            rel, n, sig = item
            h = hashlib.sha1(rel.encode()).hexdigest()
            fname = f"data/{h[:2]}/{h}.npy"
            try:
                clip = resize_clip(_decode_all(Path(media) / rel, n), size)
            except DataError as err:
                return rel, str(err)
            (pack_dir / fname).parent.mkdir(parents=True, exist_ok=True)
            tmp = pack_dir / f"{fname}.{os.getpid()}.tmp.npy"
            np.save(tmp, clip)
            os.replace(tmp, pack_dir / fname)
            return rel, [fname, int(clip.shape[0]), sig]

        failed: list[str] = []
        done = 0
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as ex:
            for rel, res in ex.map(work, todo):
                if isinstance(res, str):
                    failed.append(res)
                else:
                    entries[rel] = res
                done += 1
                if done % 500 == 0:
                    log(f"packed {done}/{len(todo)} clips")
        entries = {k: v for k, v in entries.items() if k in recs}
        tmp = idx_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": 1, "root": media, "size": size, "clips": entries}))
        os.replace(tmp, idx_path)
        _write_registry(media, size, pack_dir)
        nbytes = sum((pack_dir / v[0]).stat().st_size for v in entries.values() if (pack_dir / v[0]).is_file())
        summary["packs"].append({"media_root": media, "dir": str(pack_dir), "clips": len(entries), "new": len(todo) - len(failed),
                                 "failed": failed[:20], "bytes": nbytes})
        log(f"{pack_dir}: {len(entries)} clips ({len(todo) - len(failed)} new, {len(failed)} failed), "
            f"{nbytes / 2**30:.2f} GiB")
    return summary
