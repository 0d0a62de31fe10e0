"""Data-loading benchmark: clips/s per worker (one process, one torch thread) for 16 frames of 224x224 JPEG
with the training augmentation (flip, RandomResizedCrop scale (0.5,1), ColorJitter 0.4 x4), side by side:

  ifdd   the released IFDD reader's approach: decode ALL frames of the clip with PIL (IFDD uses jpeg4py; PIL is
         the stand-in here, jpeg4py is not installed), stack, then torchvision.transforms.v2
         Compose([RandomHorizontalFlip, RandomResizedCrop(224,(0.5,1)), ColorJitter(0.4,0.4,0.4,0.4)]) -> /255
  raw    the decode limit: read and decode the same 16 JPEGs with simplejpeg, nothing else
  ours   bench.data.loader.ClipDataset (train): segment sampling, read_clip (simplejpeg into one buffer),
         bench.data.transforms.train_transform with DataCfg(size=224, color_jitter=[0.4]*4, rrc_scale=[0.5,1])
  ours+pack  the same with the clips packed by `bench data pack` (read_clip memory-maps the .npy)
  ours[augment_on=device]  the worker's share with --set data.augment_on=device: sampling and decode of the
         picked frames plus the augmentation draw; crop, flip, jitter and normalisation then run batched on
         the training device (transforms.augment_batch), timed separately below as "device stage"
  device stage  augment_batch on batches of 8 collated clips, per clip, on the CPU (1 thread) and, when one is
         present, on CUDA; on a GPU run this is the main process's cost that the worker no longer pays

Run: .venv/bin/python benchmarks/data_loading.py [--clips 40]   or   bench data bench
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def make_fixture(root: Path, n_clips: int = 8, frames: int = 16, size: int = 224, seed: int = 0) -> list[Path]:
    """Face-like 224x224 JPEGs (smooth shading, edges, mild noise; ~quality 90 like extracted frames)."""
    import simplejpeg

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    clips = []
    for c in range(n_clips):
        d = root / f"{c + 1:05d}"
        d.mkdir(parents=True, exist_ok=True)
        for t in range(frames):
            cx, cy = 0.5 + 0.05 * np.sin(t / 3 + c), 0.5 + 0.04 * np.cos(t / 4 + c)
            face = np.exp(-(((xx - cx) / 0.28) ** 2 + ((yy - cy) / 0.36) ** 2))
            eyes = sum(np.exp(-(((xx - cx + s * 0.1) / 0.04) ** 2 + ((yy - cy + 0.08) / 0.02) ** 2)) for s in (-1, 1))
            mouth = np.exp(-(((xx - cx) / 0.1) ** 2 + ((yy - cy - 0.15) / 0.015) ** 2))
            base = 60 + 150 * face - 90 * eyes - 70 * mouth
            img = np.stack([base * 1.0, base * 0.8, base * 0.7], -1) + rng.normal(0, 4, (size, size, 3))
            img = np.clip(img, 0, 255).astype(np.uint8)
            (d / f"{t + 1}.jpg").write_bytes(simplejpeg.encode_jpeg(img, quality=90, colorsubsampling="420"))
        clips.append(d)
    return clips


def _time(fn, n: int) -> float:
    fn(0)
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - t0)


def run(clips: int = 40, frames: int = 16, size: int = 224, repeats: int = 3) -> dict:
    import torch
    import torchvision.transforms.v2 as T
    from PIL import Image

    import bench.data.frames as fr
    from bench.api import ClipRecord, Manifest
    from bench.data.frames import frame_sort_key
    from bench.data.loader import ClipDataset
    from bench.spec import DataCfg

    torch.set_num_threads(1)
    cfg = DataCfg(size=size, frames=frames, color_jitter=[0.4] * 4, rrc_scale=[0.5, 1.0])
    res: dict = {"clips": clips, "frames": frames, "size": size, "torch_threads": 1,
                 "ifdd_decoder": "PIL (stand-in for jpeg4py)", "clips_per_s": {}}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DFER_BENCH_CACHE"] = str(Path(tmp) / "cache")
        fr._REGISTRY["key"] = None
        root = Path(tmp) / "clips"
        dirs = make_fixture(root, 8, frames, 224)
        res["jpeg_bytes_mean"] = int(np.mean([p.stat().st_size for d in dirs for p in d.iterdir()]))
        compose = T.Compose([T.RandomHorizontalFlip(), T.RandomResizedCrop(size, scale=(0.5, 1.0)),
                             T.ColorJitter(0.4, 0.4, 0.4, 0.4)])

        def ifdd(i: int):
            d = dirs[i % len(dirs)]
            files = sorted(d.glob("*.jpg"), key=lambda p: frame_sort_key(p.name))
            x = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
            x = torch.from_numpy(x).permute(0, 3, 1, 2)
            return compose(x).float().div(255)

        def raw(i: int):
            import simplejpeg

            d = dirs[i % len(dirs)]
            return [simplejpeg.decode_jpeg((d / f"{t + 1}.jpg").read_bytes(), colorspace="RGB") for t in range(frames)]

        man = Manifest("bench", root, ("a", "b"), [ClipRecord(d.name, d.name, frames, 0, "train") for d in dirs])
        ds = ClipDataset(man, man.records, cfg, train=True, seed=0)

        def ours(i: int):
            return ds[i % len(dirs)]

        dev_ds = ClipDataset(man, man.records, cfg, train=True, seed=0, augment_on="device")
        readers = {"ifdd": ifdd, "raw": raw, "ours": ours, "ours[augment_on=device]": lambda i: dev_ds[i % len(dirs)]}
        for name, fn in readers.items():
            res["clips_per_s"][name] = max(_time(fn, clips) for _ in range(repeats))

        from bench.data.transforms import augment_batch

        batch = dev_ds.collate([dev_ds[i] for i in range(8)])
        res["device_stage_clips_per_s"] = {}
        for dev in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
            frames_d, aug = batch["clip"].to(dev), batch["aug"]

            def stage(_i: int, frames_d=frames_d, aug=aug, dev=dev):
                augment_batch(frames_d, aug, batch["sizes"], cfg)
                if dev == "cuda":
                    torch.cuda.synchronize()

            n = max(clips // 8, 2)
            res["device_stage_clips_per_s"][dev] = 8 * max(_time(stage, n) for _ in range(repeats))

        from bench.data.pack import (
            _write_registry,
            pack_dataset,  # noqa: F401  (same code path as `bench data pack`)
            resize_clip,
        )

        pack_dir = Path(tmp) / "pack"
        entries = {}
        for d in dirs:
            arr = resize_clip(fr.read_frames(d, list(range(frames))), size)
            (pack_dir / "data").mkdir(parents=True, exist_ok=True)
            np.save(pack_dir / "data" / f"{d.name}.npy", arr)
            entries[d.name] = [f"data/{d.name}.npy", frames, fr.clip_signature(d)]
        (pack_dir / "index.json").write_text(json.dumps({"version": 1, "root": os.path.abspath(root), "size": size,
                                                          "clips": entries}))
        _write_registry(os.path.abspath(root), size, pack_dir)
        assert fr.find_packed(dirs[0]) is not None
        res["clips_per_s"]["ours+pack"] = max(_time(ours, clips) for _ in range(repeats))
        os.environ.pop("DFER_BENCH_CACHE")
        fr._REGISTRY["key"] = None
    c = res["clips_per_s"]
    # with augment_on=device, the worker and the device stage run concurrently; this is the end-to-end rate
    # when that stage ran on this CPU in the same process instead (a lower bound for a CPU-only run)
    dev = res["device_stage_clips_per_s"]["cpu"]
    c["ours[augment_on=device] + cpu stage, serial"] = 1.0 / (1.0 / c["ours[augment_on=device]"] + 1.0 / dev)
    res["ratios"] = {f"{k}/ifdd": c[k] / c["ifdd"] for k in c if k not in ("ifdd", "raw")}
    res["ratios"].update({f"{k}/raw": c[k] / c["raw"] for k in c if k not in ("ifdd", "raw")})
    return res


def format_result(res: dict) -> str:
    lines = [f"{res['frames']} frames of 224x224 JPEG (mean {res['jpeg_bytes_mean']} B), train augmentation to "
             f"{res['size']}, 1 torch thread, clips/s per worker:"]
    for k, v in res["clips_per_s"].items():
        lines.append(f"  {k:44s} {v:8.1f}")
    for k, v in res["device_stage_clips_per_s"].items():
        lines.append(f"  {'device stage on ' + k + ' (batch 8)':44s} {v:8.1f}")
    lines.append("ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in res["ratios"].items()))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    res = run(a.clips, a.frames, a.size)
    print(json.dumps(res, indent=1) if a.json else format_result(res))


if __name__ == "__main__":
    main()
