"""The README's first run command is a promise to a newcomer: on 2 CPU cores it finishes within 10 minutes and
learns (clearly above the static single-frame control). Checked against the curated example run of the same
command, with UAR recomputed from its saved predictions by sklearn."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "results" / "examples" / "runs" / "synthetic" / "fold1"


def _curated(method: str, protocol: str | None = None) -> tuple[dict, float]:
    """The curated run of `bench run -m METHOD -d synthetic [--protocol P]` (seed 0: its run id is the command's)
    and its UAR recomputed from predictions.npz (one test view per video)."""
    from bench.spec import resolve_spec

    run_id = resolve_spec(method, "synthetic", fold=1, protocol=protocol).run_id
    folder = EXAMPLES / method / run_id
    assert folder.is_dir(), f"no curated run {run_id} for `bench run -m {method} -d synthetic` (protocol {protocol})"
    result = json.loads((folder / "result.json").read_text())
    pred = np.load(folder / "predictions.npz")
    uar = balanced_accuracy_score(pred["labels"], pred["video_scores"].argmax(1))
    return result, 100 * uar


def _first_synthetic_run() -> str:
    for line in (REPO / "README.md").read_text().splitlines():
        if line.startswith("bench run") and "--dataset synthetic" in line:
            return line
    raise AssertionError("README has no `bench run ... --dataset synthetic` line")


def test_readme_first_run_learns_within_ten_minutes_on_two_cores():
    line = _first_synthetic_run()
    command = line.split("#")[0]
    method = re.search(r"--method (\S+)", command).group(1)
    protocol = (re.search(r"--protocol (\S+)", command) or [None, None])[1]
    assert "--set" not in command and "--epochs" not in command, "a recipe as registered, as run"
    result, uar = _curated(method, protocol)
    # the control under the same recipe (static_r18 offers the frame-CNN protocols)
    _, control = _curated("static_r18", result["spec"]["protocol"])
    assert result["status"] == "completed" and result["protocol"]["init"]["kind"] == "scratch"
    assert result["env"]["device"] == "cpu" and result["env"]["threads"] == 2
    assert result["duration_s"] <= 600
    assert abs(uar - 100 * result["metrics"]["uar"]) < 1e-6
    assert uar >= control + 5, f"{method} {uar:.1f}% is not clearly above the static control {control:.1f}%"
    # The figures the README prints beside the command are the measured ones.
    shown = re.search(r"~(\d+(?:\.\d+)?)% UAR", line)
    minutes = re.search(r"(\d+(?:\.\d+)?) min", line)
    assert shown and abs(float(shown.group(1)) - uar) < 0.5, line
    assert minutes and abs(float(minutes.group(1)) - result["duration_s"] / 60) < 0.5, line
