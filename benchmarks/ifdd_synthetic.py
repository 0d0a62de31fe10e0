"""Why IFDD stays at chance on the embedded synthetic dataset, and what it needs to learn: controlled runs through
the real trainer, each one factor changed against IFDD's CPU recipe, at the same number of optimiser steps.

    .venv/bin/python benchmarks/ifdd_synthetic.py --steps 160 [--only NAME,NAME] [--out results/diagnostics]

Every configuration is a `bench run` spec (printed with its --set items, so any row can be rerun alone with
`bench run -m <method> -d synthetic --fold 1 <sets>`). Same fold (1), seed (0) and step budget for all; the
epochs follow from the step budget and the training-set size, so "4x data" sees each clip a quarter as often.
The table reports the test UAR of the last epoch (chance = 14.29), the best epoch's, the train loss of the first
and last epoch (ln 7 = 1.946), and the wall time on this machine. Findings are in methods/IFDD.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# name -> (method, --set items, what it tests). IFDD's CPU recipe: 16 segments at 32², AdamW 1e-4, batch 8.
BASE = ["data.workers=1", "train.batch_size=8"]
CONFIGS: dict[str, tuple[str, list[str], str]] = {
    "ifdd": ("ifdd", [], "IFDD, its synthetic recipe (released model/loss quirks)"),
    "mvit_v2_s": ("mvit_v2_s", ["data.size=32", "data.frames=16", "optim.lr=1e-4"],
                  "torchvision MViTv2-S trunk from scratch, same input and lr: transformer from scratch or IFDD?"),
    "r3d18": ("r3d18", ["data.size=32", "data.frames=16"], "3D ResNet-18, same input and steps"),
    "data_4x": ("ifdd", ["data.options.clips_per_class=360"], "4x the clips (same steps: each clip seen 1/4 as often)"),
    "data_10x": ("ifdd", ["data.options.clips_per_class=900"], "10x the clips"),
    "lr_3e-4_warmup": ("ifdd", ["optim.lr=3e-4", "optim.warmup_epochs=1", "train.grad_clip=1.0"],
                       "higher lr with a full epoch of warm-up and clipping"),
    "lr_1e-3_warmup": ("ifdd", ["optim.lr=1e-3", "optim.warmup_epochs=1", "train.grad_clip=1.0"],
                       "lr 1e-3 with warm-up and clipping"),
    "no_wd_on_norms": ("ifdd", ["optim.decay_norm_bias=false"], "no weight decay on norms/biases/tables (quirk 9)"),
    "no_label_smoothing": ("ifdd", ["reg.label_smoothing=0.0"], "label smoothing 0"),
    "no_predictor": ("ifdd.no_predictor", [], "the head sees the split output, not the predicted detail (quirk 4)"),
    "normalised_input": ("ifdd", ["data.mean=[0.45,0.45,0.45]", "data.std=[0.225,0.225,0.225]"],
                         "input mean/std normalisation (quirk 10)"),
    "no_drops": ("ifdd", ["model.kwargs.drop_path=0.0", "model.kwargs.ladm_drop_path=0.0",
                          "model.kwargs.head_dropout=0.0"], "stochastic depth and head dropout off"),
    "size_64": ("ifdd", ["data.size=64", "data.options.resolution=64"], "64² input (stage-3 grid 2x2)"),
}


def run_config(name: str, steps: int, results: Path, extra: list[str]) -> dict:
    from bench.registry import DATASETS
    from bench.spec import resolve_spec
    from bench.train import run

    method, sets, what = CONFIGS[name]
    sets = [*BASE, *sets, *extra]
    probe = resolve_spec(method, "synthetic", fold=1, sets=sets)
    counts = DATASETS.get("synthetic").counts_for(dict(probe.data.options))
    n_train = counts[1][0]
    per_epoch = max(n_train // probe.train.batch_size, 1)
    epochs = max(1, math.ceil(steps / per_epoch))
    sets = [*sets, f"train.epochs={epochs}"]
    spec = resolve_spec(method, "synthetic", fold=1, sets=sets)
    t0 = time.time()
    result = run(spec, results, progress=False, profile_latency=False)
    wall = time.time() - t0
    log = _history(results, spec)
    uars = [100 * h["eval"]["uar"] for h in log if h.get("eval")]
    return {"name": name, "method": method, "what": what, "sets": sets, "epochs": epochs, "steps": epochs * per_epoch,
            "n_train": n_train, "uar_last": 100 * result["metrics"]["uar"], "uar_best": max(uars) if uars else None,
            "uar_per_epoch": [round(u, 2) for u in uars], "loss_first": log[0]["train_loss"],
            "loss_last": log[-1]["train_loss"], "wall_s": round(wall, 1),
            "command": f"bench run -m {method} -d synthetic --fold 1 " + " ".join(f"--set {s}" for s in sets)}


def _history(results: Path, spec) -> list[dict]:
    from bench.store import run_dir

    return [json.loads(x) for x in (run_dir(results, spec) / "metrics.jsonl").read_text().splitlines()]


def table(rows: list[dict]) -> str:
    head = ("| config | what changes | steps (epochs) | train clips | test UAR last / best (%) | train loss first -> "
            "last | wall (min) |\n|---|---|---|---|---|---|---|\n")
    return head + "".join(
        f"| `{r['name']}` | {r['what']} | {r['steps']} ({r['epochs']}) | {r['n_train']} | {r['uar_last']:.2f} / "
        f"{r['uar_best']:.2f} | {r['loss_first']:.3f} -> {r['loss_last']:.3f} | {r['wall_s'] / 60:.1f} |\n"
        for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=160, help="optimiser steps per configuration")
    ap.add_argument("--only", default="", help="comma list of configurations (default: all)")
    ap.add_argument("--out", type=Path, default=Path("results/diagnostics/ifdd_synthetic"))
    ap.add_argument("--set", dest="extra", action="append", default=[], help="extra --set for every run")
    args = ap.parse_args()
    from bench.store import atomic_write_json

    names = [n for n in (args.only.split(",") if args.only else CONFIGS) if n]
    findings = args.out / "findings.json"
    # Rows of earlier invocations are kept (a later one replaces a row of the same name), so the table can be built
    # one configuration at a time.
    kept = {r["name"]: r for r in json.loads(findings.read_text())} if findings.is_file() else {}
    for name in names:
        row = run_config(name, args.steps, args.out, args.extra)
        kept[name] = row
        print(f"{name}: UAR last {row['uar_last']:.2f} best {row['uar_best']:.2f}, loss {row['loss_first']:.3f} -> "
              f"{row['loss_last']:.3f}, {row['wall_s'] / 60:.1f} min", flush=True)
        atomic_write_json(findings, list(kept.values()))
    print(table(list(kept.values())))


if __name__ == "__main__":
    main()
