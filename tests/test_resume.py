"""A run killed mid-epoch (a real SIGKILL of the `bench run` process) resumes from its last checkpoint and
finishes with exactly the metrics and predictions of an uninterrupted run of the same spec."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import THREADS

# test_tiny at width 48 on 48² clips: a few seconds per epoch, long enough to be killed inside epoch 2
ARGS = ["run", "-m", "test_tiny", "-d", "synthetic", "--fold", "1", "--epochs", "3", "--batch-size", "4", "--workers", "0",
        "--no-latency", "--no-progress", "--set", "data.options.clips_per_class=8", "--set", "data.options.folds=2",
        "--set", "data.options.resolution=48", "--set", "data.size=48", "--set", "data.frames=8",
        "--set", "model.kwargs.width=48",
        "--set", "train.deterministic=true", "--set", "reg.mixup_alpha=0.8", "--set", "reg.cutmix_alpha=1.0"]


def _env(data_home: Path) -> dict:
    return {**os.environ, "DFER_DATA_HOME": str(data_home), "OMP_NUM_THREADS": str(THREADS), "PYTHONUNBUFFERED": "1"}


def _cmd(results: Path) -> list[str]:
    return [sys.executable, "-m", "bench.cli", *ARGS, "--results", str(results)]


def _run_dir(results: Path) -> Path:
    (spec,) = list((results / "runs").rglob("spec.yaml"))
    return spec.parent


@pytest.fixture(scope="module")
def straight(tmp_path_factory, data_home) -> Path:
    """The uninterrupted reference run."""
    results = tmp_path_factory.mktemp("straight")
    subprocess.run(_cmd(results), env=_env(data_home), check=True, capture_output=True, timeout=600)
    return results


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tmp_path, data_home, straight):
    env = _env(data_home)
    expected = json.loads((_run_dir(straight) / "result.json").read_text())

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    log = None
    while time.time() < deadline:  # wait until epoch 1 is checkpointed, then kill during epoch 2
        if log is None and (killed / "runs").exists():
            found = list((killed / "runs").rglob("metrics.jsonl"))
            log = found[0] if found else None
        if log is not None and log.is_file() and len(log.read_text().splitlines()) >= 1:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "run finished before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    rdir = log.parent
    assert not (rdir / "result.json").exists() and (rdir / "status").read_text().strip() == "running"
    assert len(log.read_text().splitlines()) == 1  # epoch 2 never completed

    resumed = subprocess.run(_cmd(killed), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch 1" in resumed.stderr + resumed.stdout
    lines = [json.loads(x) for x in (rdir / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(x) for x in (_run_dir(straight) / "metrics.jsonl").read_text().splitlines()]
    assert [x["train_loss"] for x in lines] == [x["train_loss"] for x in ref]
    result = json.loads((rdir / "result.json").read_text())
    assert result["metrics"] == expected["metrics"]
    a = np.load(_run_dir(straight) / "predictions.npz")
    b = np.load(rdir / "predictions.npz")
    np.testing.assert_array_equal(a["logits"], b["logits"])


@pytest.mark.slow
def test_augmentation_on_the_device_trains_the_same_model(tmp_path, data_home):
    """--set data.augment_on=device (workers decode, the trainer crops/flips/jitters the batch): same run id,
    same losses, metrics and logits as augmenting in the workers, and the result records where it ran."""
    cmd = [*_cmd(tmp_path), "--set", "data.augment_on=device", "--set", "data.color_jitter=[0.4,0.4,0.4,0.1]",
           "--set", "data.rrc_scale=[0.5,1.0]"]
    ref_cmd = [*_cmd(tmp_path / "worker"), "--set", "data.color_jitter=[0.4,0.4,0.4,0.1]",
               "--set", "data.rrc_scale=[0.5,1.0]"]
    for c in (cmd, ref_cmd):
        proc = subprocess.run(c, env=_env(data_home), capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
    dev, ref = _run_dir(tmp_path), _run_dir(tmp_path / "worker")
    assert dev.name == ref.name
    a, b = (json.loads((d / "result.json").read_text()) for d in (dev, ref))
    assert a["env"]["augment_on"] == "device" and b["env"]["augment_on"] == "worker"
    assert a["metrics"] == b["metrics"]
    assert [json.loads(x)["train_loss"] for x in (dev / "metrics.jsonl").read_text().splitlines()] == \
        [json.loads(x)["train_loss"] for x in (ref / "metrics.jsonl").read_text().splitlines()]
    np.testing.assert_array_equal(np.load(dev / "predictions.npz")["logits"], np.load(ref / "predictions.npz")["logits"])


def test_same_spec_on_changed_data_is_refused_not_reused(tmp_path, monkeypatch):
    """New synthetic defaults (or generator) keep the spec hash but change the data: the completed result and the
    checkpoint of the old data are not silently reused, the run stops with a one-line error naming the folder."""
    import pytest

    from bench.datasets import synthetic as S
    from bench.errors import BenchError
    from bench.spec import resolve_spec
    from bench.train import run

    monkeypatch.setenv("DFER_DATA_HOME", str(tmp_path / "data"))
    sets = ["data.options.clips_per_class=4", "data.options.folds=2", "data.options.resolution=32", "data.size=32",
            "data.frames=4", "train.epochs=1", "train.batch_size=4", "data.workers=0"]
    spec = resolve_spec("test_tiny", "synthetic", fold=1, sets=sets)
    first = run(spec, tmp_path / "results", progress=False, profile_latency=False)
    assert run(spec, tmp_path / "results", progress=False, profile_latency=False) == first  # same data: skipped

    monkeypatch.setitem(S.DEFAULTS, "intensity", S.DEFAULTS["intensity"] + 0.5)
    assert resolve_spec("test_tiny", "synthetic", fold=1, sets=sets).run_id == spec.run_id
    with pytest.raises(BenchError) as e:
        run(spec, tmp_path / "results", progress=False, profile_latency=False)
    msg = str(e.value)
    assert "\n" not in msg and "result.json: computed on other data" in msg and "move " in msg

    (tmp_path / "results" / "runs" / "synthetic" / "fold1" / "test_tiny" / spec.run_id / "result.json").unlink()
    with pytest.raises(BenchError, match="last.pt: computed on other data"):
        run(spec, tmp_path / "results", progress=False, profile_latency=False)
