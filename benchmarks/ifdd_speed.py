"""Forward+backward time per clip of the IFDD port vs. the released code (fp32, CPU, batch 2, 16x224^2).

The released code is imported from a checkout kept OUTSIDE this project (its path is the first argument):

    git --git-dir=<mirror of CyberPegasus/IFDD> archive HEAD | tar -x -C /tmp/ifdd_orig
    .venv/bin/python benchmarks/ifdd_speed.py /tmp/ifdd_orig --threads 2 --repeats 5

Both models get identical weights (the port's converter maps the original state_dict), so the script also
prints the max |logit difference| as a sanity check. The original's package `__init__`s pull in unused
dependencies (loguru, cv2, CLIP, ...); the script registers empty parent packages and a logger stub so that
only the model files are executed.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import statistics
import sys
import time
import types
from pathlib import Path

import torch
from torch import nn


def import_original(root: Path) -> types.SimpleNamespace:
    """Import the released model classes from `root` without running its package __init__ files."""
    sys.path.insert(0, str(root))
    for pkg in ("core", "core.model", "core.wave_methods", "core.utils"):
        mod = types.ModuleType(pkg)
        mod.__path__ = [str(root / pkg.replace(".", "/"))]
        sys.modules.setdefault(pkg, mod)
    for dep in ("loguru", "einops"):  # imported at module level, never used by the IFDD model path
        try:
            importlib.import_module(dep)
        except ImportError:
            stub = types.ModuleType(dep)
            stub.logger = logging.getLogger("ifdd_original")
            stub.rearrange = stub.einsum = None  # only used by classes the IFDD configuration never builds
            sys.modules[dep] = stub
    embed = importlib.import_module("core.model.embedNet")
    backbone = importlib.import_module("core.model.backbone")
    head = importlib.import_module("core.model.head")
    main = importlib.import_module("core.model.net_main")
    return types.SimpleNamespace(embedNet_light=embed.embedNet_light, MFViT_FPN=backbone.MFViT_FPN,
                                 headNet=head.headNet, MFViT_Main=main.MFViT_Main)


def build_original(orig: types.SimpleNamespace, frames: int, classes: int) -> nn.Module:
    """The network as exps/EXP_IFDD_DFEW.py builds it (all switches after `_dynamic_update`)."""
    embed = orig.embedNet_light(input_channel=3, input_time=frames, embed_dim=96, out_resolution=56,
                                facial_project=False)
    backbone = orig.MFViT_FPN(type="MFViT_XS", use_stage=[2, 3], attention_dropout=0.0, use_WaveSF=True, SSL=True,
                              use_prompt=False, WaveSF_preUpdate=True, AdaptSplit=True, WaveNorm=True,
                              WavePool=False, facial=False)
    head = orig.headNet(num_classes=classes, embed_dim=backbone.output_dim, dropout=0.5)
    return orig.MFViT_Main(embedNet=embed, backbone=backbone, head=head, use_WaveSF=True, SSL=True, facial=False)


def time_train_step(model: nn.Module, x: torch.Tensor, warmup: int, repeats: int) -> list[float]:
    """Seconds per forward+backward of a batch (training mode, loss = sum of all outputs)."""
    model.train()
    times = []
    for i in range(warmup + repeats):
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        out = model(x)
        loss = sum(o.float().sum() for o in (out if isinstance(out, (tuple, list)) else [out]))
        loss.backward()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("original", type=Path, help="checkout of github.com/CyberPegasus/IFDD (outside the project)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from bench.methods.ifdd import build_ifdd, convert_original_state_dict

    orig = import_original(args.original.resolve())
    torch.manual_seed(0)
    original = build_original(orig, args.frames, 7)
    port = build_ifdd(7, args.frames, args.size)
    port.load_state_dict(convert_original_state_dict(original.state_dict()), strict=True)
    x = torch.rand(args.batch, 3, args.frames, args.size, args.size)
    with torch.no_grad():
        diff = (original.eval()(x) - port.eval()(x)).abs().max().item()
    print(f"eval logits max |port - original| = {diff:.3g}", flush=True)

    results = {}
    # interleave the two models so background load affects both alike
    for _ in range(args.repeats):
        for name, model in (("original", original), ("port", port)):
            torch.manual_seed(0)
            step = time_train_step(model, x, args.warmup if name not in results else 0, 1)
            results.setdefault(name, []).extend(step)
            print(f"  {name:8s} fwd+bwd batch {args.batch}: {step[0]:.2f} s", flush=True)
    per_clip = {k: statistics.median(v) / args.batch for k, v in results.items()}
    for k, v in results.items():
        print(f"{k:8s} fwd+bwd per clip: median {per_clip[k]:.3f} s  (per batch: {', '.join(f'{t:.2f}' for t in v)})")
    print(f"ratio port/original = {per_clip['port'] / per_clip['original']:.3f} "
          f"(fp32, CPU, {args.threads} threads, batch {args.batch}, {args.frames}x{args.size}^2)")


if __name__ == "__main__":
    main()
