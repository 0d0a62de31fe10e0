"""`bench pretrain` end to end on synthetic with the tiny method: trains on one fold's training clips only
(every clip it read is listed and none is a test clip), resumes after a kill like a run, and writes a checkpoint
that `bench run --init` takes and records, with the pre-training data stated in the init."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from bench.registry import DATASETS
from tests.conftest import THREADS, bench_cli

DATA = ["--set", "data.options.clips_per_class=3", "--set", "data.options.folds=2", "--set", "data.options.resolution=32",
        "--set", "data.size=32", "--set", "data.frames=4", "--workers", "0"]


@pytest.mark.slow
def test_pretrain_then_run_with_its_checkpoint(tmp_path, data_home):
    env = {"DFER_DATA_HOME": str(data_home)}
    proc = bench_cli(["pretrain", "-m", "test_tiny", "-d", "synthetic", "--fold", "1", "--no-progress", *DATA],
                     tmp_path, env, check=True)
    (summary,) = (tmp_path / "results" / "pretrain").rglob("pretrain.json")
    result = json.loads(summary.read_text())
    assert result["kind"] == "pretrain" and result["fold"] == 1
    seen = set((summary.parent / "clips_seen.txt").read_text().split())
    options = {"clips_per_class": 3, "folds": 2, "resolution": 32}
    manifest = DATASETS.get("synthetic").build_manifest(data_home / "synthetic", 1, options)
    assert seen == {r.clip_id for r in manifest.split("train")}  # every training clip, and nothing else
    assert not seen & {r.clip_id for r in manifest.split("test")}
    assert result["clips"]["test_never_seen"] == len(manifest.split("test"))
    assert "next: bench run -m test_tiny" in proc.stdout
    weights = summary.parent / "pretrained.pt"
    ckpt = torch.load(weights, weights_only=True)
    assert set(ckpt["model"]) == {"encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias"}

    bench_cli(["run", "-m", "test_tiny", "-d", "synthetic", "--fold", "1", "--init", f"tiny_pretrain:{weights}",
               "--epochs", "1", "--no-progress", "--no-latency", *DATA], tmp_path, env, check=True)
    (run_result,) = (tmp_path / "results" / "runs").rglob("result.json")
    init = json.loads(run_result.read_text())["protocol"]["init"]
    assert init["kind"] == "tiny_pretrain" and init["report"]["loaded"] == 2
    assert init["report"]["notes"]["dropped"] == ["decoder.bias", "decoder.weight"]
    assert "bench pretrain on synthetic fold 1" in init["label"] and "not the official" in init["label"]


@pytest.mark.slow
def test_killed_pretraining_resumes(tmp_path, data_home):
    args = [sys.executable, "-m", "bench.cli", "pretrain", "-m", "test_tiny", "-d", "synthetic", "--fold", "1",
            "--epochs", "4", "--no-progress", "--set", "model.kwargs.width=48", "--set", "data.options.clips_per_class=8",
            "--set", "data.options.folds=2", "--set", "data.options.resolution=48", "--set", "data.size=48",
            "--set", "data.frames=8", "--workers", "0", "--batch-size", "4"]
    env = {**os.environ, "DFER_DATA_HOME": str(data_home), "OMP_NUM_THREADS": str(THREADS)}
    straight = subprocess.run([*args, "--results", str(tmp_path / "a")], env=env, capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr
    proc = subprocess.Popen([*args, "--results", str(tmp_path / "b")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        logs = list((tmp_path / "b").rglob("metrics.jsonl"))
        if logs and logs[0].read_text().strip():
            break
        time.sleep(0.02)
    assert proc.poll() is None, "pre-training finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = subprocess.run([*args, "--results", str(tmp_path / "b")], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0 and "resuming after epoch" in " ".join(resumed.stderr.split()), resumed.stderr
    a, b = (torch.load(next((tmp_path / d).rglob("pretrained.pt")), weights_only=True) for d in ("a", "b"))
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
