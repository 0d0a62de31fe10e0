"""The GPU benchmark: IFDD training throughput in fp32, bf16 and bf16 + torch.compile, against the released code in
fp32, the MFU of each, and whether the data loader keeps the GPU fed. One run, side by side, ratios printed.

    .venv/bin/python benchmarks/gpu.py [--original /path/to/IFDD-checkout] [--seconds 20] [--json OUT]

Sized for at most 5 minutes on one H100/H200: every configuration trains for `--seconds` after a warm-up (the
compile warm-up included in its own line). MFU = 6 x fvcore MACs per clip (forward 2 FLOPs per MAC, backward
twice the forward) x clips/s / the device's dense peak for that precision (`--peak-tflops` overrides the table).
The released code (github.com/CyberPegasus/IFDD, kept outside the project) is optional: give its checkout with
`--original`, and the script builds it as benchmarks/ifdd_speed.py does. Without CUDA the script says so and exits.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

# dense peak TFLOP/s by (device name fragment, precision): tensor-core bf16, TF32 for fp32 matmuls
PEAKS = {("H200", "bf16"): 989.0, ("H100", "bf16"): 989.0, ("A100", "bf16"): 312.0,
         ("H200", "fp32"): 494.0, ("H100", "fp32"): 494.0, ("A100", "fp32"): 156.0}


def peak_tflops(precision: str, override: float | None) -> float | None:
    if override:
        return override
    name = torch.cuda.get_device_name()
    return next((v for (frag, p), v in PEAKS.items() if frag in name and p == precision), None)


def train_throughput(model: torch.nn.Module, criterion, batch: int, frames: int, size: int, precision: str,
                     seconds: float, warmup: int = 3) -> dict:
    """Clips/s of full training steps (forward, loss, backward, AdamW) on random clips already on the GPU."""
    dev = torch.device("cuda")
    model.to(dev).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    x = torch.rand(batch, 3, frames, size, size, device=dev)
    y = torch.full((batch, 7), 1 / 7, device=dev)
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if precision == "bf16" else torch.autocast("cuda", enabled=False)

    def step() -> None:
        with ctx:
            out = model(x)
        loss = criterion(out, y)[0] if criterion else sum(o.float().sum() for o in out)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    warm_s = time.perf_counter() - t0
    torch.cuda.reset_peak_memory_stats()
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        steps += 1
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    return {"clips_per_s": steps * batch / elapsed, "steps": steps, "warmup_s": round(warm_s, 1),
            "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30}


def loader_throughput(batch: int, frames: int, size: int, workers: int, augment_on: str, seconds: float) -> float:
    """Clips/s the training loader delivers to the GPU (augmentation included) on the synthetic dataset."""
    from bench.data.loader import ClipDataset, make_loader
    from bench.data.manifest import load_manifest
    from bench.data.transforms import augment_batch
    from bench.spec import resolve_spec

    spec = resolve_spec("ifdd", "synthetic", sets=[f"data.size={size}", "data.options.resolution=224",
                                                   f"data.augment_on={augment_on}"])
    manifest = load_manifest(spec)
    recs = manifest.split("train")
    ds = ClipDataset(manifest, recs, spec.data, train=True, seed=0, augment_on=augment_on)
    n, t0 = 0, time.perf_counter()
    for epoch in range(100):
        for b in make_loader(ds, batch, workers=workers, shuffle=True, drop_last=True, seed=0, epoch=epoch):
            clips = b["clip"].cuda(non_blocking=True)
            if "aug" in b:
                clips = augment_batch(clips, b["aug"], b["sizes"], spec.data)
            n += clips.shape[0]
            if time.perf_counter() - t0 > seconds:
                torch.cuda.synchronize()
                return n / (time.perf_counter() - t0)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--original", type=Path, default=None, help="checkout of CyberPegasus/IFDD (optional)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("benchmarks/gpu.py needs CUDA; nothing measured")
        return
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True

    from bench.api import build_model
    from bench.losses import criterion_for
    from bench.profile import count_macs
    from bench.registry import METHODS
    from bench.spec import resolve_spec

    frames, size = 16, 224
    info = METHODS.get("ifdd")
    criterion = criterion_for(info, resolve_spec("ifdd", "dfew"))
    gmacs = count_macs(build_model(info, 7, frames, size), (3, frames, size, size))["gmacs"]
    rows: dict[str, dict] = {}
    torch.manual_seed(0)
    rows["port fp32"] = train_throughput(build_model(info, 7, frames, size), criterion, args.batch, frames, size,
                                         "fp32", args.seconds)
    rows["port bf16"] = train_throughput(build_model(info, 7, frames, size), criterion, args.batch, frames, size,
                                         "bf16", args.seconds)
    rows["port bf16 + compile"] = train_throughput(torch.compile(build_model(info, 7, frames, size)), criterion,
                                                   args.batch, frames, size, "bf16", args.seconds)
    if args.original is not None:
        from ifdd_speed import build_original, import_original

        rows["released fp32"] = train_throughput(build_original(import_original(args.original), frames, 7), None,
                                                 args.batch, frames, size, "fp32", args.seconds)
    base = rows.get("released fp32", rows["port fp32"])
    print(f"IFDD train step, batch {args.batch}, {frames}x{size}², {torch.cuda.get_device_name()}, "
          f"{gmacs:.2f} GMACs/clip (fvcore)")
    for name, r in rows.items():
        precision = "bf16" if "bf16" in name else "fp32"
        peak = peak_tflops(precision, args.peak_tflops)
        r["tflops"] = 6 * gmacs * 1e9 * r["clips_per_s"] / 1e12
        r["mfu"] = r["tflops"] / peak if peak else None
        r["vs_baseline"] = r["clips_per_s"] / base["clips_per_s"]
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        print(f"  {name:22s} {r['clips_per_s']:8.1f} clips/s  x{r['vs_baseline']:.2f} vs "
              f"{'released fp32' if 'released fp32' in rows else 'port fp32'}  {r['tflops']:6.1f} TFLOP/s  MFU {mfu}"
              f"  (peak mem {r['peak_mem_gb']:.1f} GiB, warm-up {r['warmup_s']} s)")
    fastest = max(r["clips_per_s"] for r in rows.values())
    feed = {}
    for mode in ("worker", "device"):
        feed[mode] = loader_throughput(args.batch, frames, size, args.workers, mode, min(args.seconds, 20))
        verdict = "keeps the GPU fed" if feed[mode] >= fastest else "is the bottleneck"
        print(f"  loader ({mode} augmentation, {args.workers} workers): {feed[mode]:.1f} clips/s = "
              f"x{feed[mode] / fastest:.2f} of the fastest train step: {verdict}")
    if args.json:
        args.json.write_text(json.dumps({"gmacs": gmacs, "train": rows, "loader": feed}, indent=1))


if __name__ == "__main__":
    main()
