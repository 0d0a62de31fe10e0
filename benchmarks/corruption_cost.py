"""What a corrupted evaluation costs against a clean one, on the same checkpoint, records and device, side by side
in one process (the corruption runs inside the data path: `bench eval --run RUN --corrupt ...`).

    .venv/bin/python benchmarks/corruption_cost.py [--clips 2340] [--severity 5] [--threads 1] [--frames 16 --size 112]

Trains a one-epoch `r18_gru --protocol bench2d` run on `synthetic` into a temporary results folder (the weights do
not matter for cost), then evaluates its test split repeated to `--clips` videos (2,340: one DFEW fold) clean and
under every corruption at `--severity`, with a clean pass after every fifth corrupted one so drift of the machine
shows up in the clean times. Prints seconds per pass and the ratio corrupted / mean clean; writes the rows to
results/diagnostics/corruption_cost/findings.json with the command.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=2340, help="test videos per pass (the split repeated)")
    ap.add_argument("--severity", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default="", help="comma-separated corruptions (default: all)")
    ap.add_argument("--frames", type=int, default=None, help="clip length (default: the recipe's 8; DFEW's is 16)")
    ap.add_argument("--size", type=int, default=None, help="input and rendering size (default: the recipe's 48; "
                    "DFEW's models read 112)")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "diagnostics" / "corruption_cost")
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import torch

    from bench.data import corruptions as C
    from bench.evaluation_cli import evaluate_records, load_checkpoint_model
    from bench.robustness import corruption_hook
    from bench.store import atomic_write_json

    torch.set_num_threads(args.threads)
    names = [n for n in args.only.split(",") if n] or list(C.CORRUPTIONS)
    with tempfile.TemporaryDirectory() as tmp:
        bench = Path(sys.executable).with_name("bench")
        shape = [*(["--set", f"data.frames={args.frames}"] if args.frames else []),
                 *(["--set", f"data.size={args.size}", "--set", f"data.options.resolution={args.size}"]
                   if args.size else [])]
        subprocess.run([str(bench), "run", "-m", "r18_gru", "-d", "synthetic", "--protocol", "bench2d", "--epochs",
                        "1", "--results", tmp, "--workers", "0", *shape], check=True, capture_output=True, text=True)
        ckpt = next(Path(tmp).rglob("last.pt"))
        loaded = load_checkpoint_model(ckpt, workers=0)
        test = loaded.manifest.split("test")
        records = (test * (args.clips // len(test) + 1))[: args.clips]

        def timed(hook) -> float:
            start = time.perf_counter()
            evaluate_records(loaded, records, view_hook=hook, desc="cost")
            return time.perf_counter() - start

        clean = [timed(None)]
        rows = []
        for i, name in enumerate(names, 1):
            seconds = timed(corruption_hook(name, args.severity))
            if i % 5 == 0 or i == len(names):  # a clean pass after every fifth: the machine's drift
                clean.append(timed(None))
            rows.append({"corruption": name, "severity": args.severity, "seconds": round(seconds, 2)})
            print(f"{name:16s} s{args.severity}: {seconds:6.1f} s", flush=True)
    base = sum(clean) / len(clean)
    for r in rows:
        r["ratio_to_clean"] = round(r["seconds"] / base, 3)
    worst = max(rows, key=lambda r: r["ratio_to_clean"])
    print(f"clean: {base:.1f} s per pass of {args.clips} clips (min {min(clean):.1f}, max {max(clean):.1f}, "
          f"{len(clean)} passes); corrupted / clean: mean {sum(r['ratio_to_clean'] for r in rows) / len(rows):.2f}x, "
          f"worst {worst['ratio_to_clean']:.2f}x ({worst['corruption']})")
    row = {"clips": args.clips, "threads": args.threads, "device": "cpu", "frames": loaded.spec.data.frames,
           "size": loaded.spec.data.size, "clean_seconds": [round(c, 2) for c in clean],
           "rows": rows, "command": "benchmarks/corruption_cost.py " + " ".join(sys.argv[1:]),
           "torch": torch.__version__}
    findings = args.out / "findings.json"
    old = json.loads(findings.read_text()) if findings.is_file() else []
    atomic_write_json(findings, [*old, row])


if __name__ == "__main__":
    main()
