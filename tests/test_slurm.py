"""`bench sweep --backend slurm` against a real single-node SLURM (tests/slurm_cluster.py): a sweep through sbatch
equals the local backend, a second submission submits nothing, a requeued and a cancelled-then-resubmitted job
resume from their checkpoints to the uninterrupted result, `--status` reports each run, and one run over two
SLURM tasks equals the two-process torchrun run."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import bench_cli

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

TINY = ["--set", "data.options.clips_per_class=2", "--set", "data.options.folds=2", "--set", "data.options.resolution=32",
        "--set", "data.size=32", "--set", "data.frames=4", "--set", "data.workers=0", "--set", "train.batch_size=4",
        "--epochs", "1"]
# several seconds per run, so that a job can be requeued or cancelled inside it
LONGER = ["--set", "data.options.clips_per_class=12", "--set", "data.options.folds=2", "--set",
          "data.options.resolution=48", "--set", "data.size=48", "--set", "data.frames=8", "--set", "data.workers=0",
          "--set", "train.batch_size=4", "--set", "model.kwargs.width=48", "--epochs", "4"]


def _env(data_home: Path) -> dict:
    return {"DFER_DATA_HOME": str(data_home), "OMP_NUM_THREADS": "1"}


def _results(root: Path) -> dict[str, dict]:
    return {json.loads(p.read_text())["run_id"]: json.loads(p.read_text()) for p in root.rglob("result.json")}


def _wait_idle(cluster, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = subprocess.run(["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True)
        if out.returncode == 0 and not out.stdout.strip():
            return
        time.sleep(1)
    raise AssertionError("SLURM jobs did not finish in time\n" + cluster.tails())


def _job_ids() -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True)
    return [j.strip() for j in out.stdout.split()]


def test_sweep_through_sbatch_equals_local_and_is_not_resubmitted(tmp_path, data_home, slurm_cluster):
    env = _env(data_home)
    sweep = ["sweep", "--methods", "test_tiny,static_r18", "--datasets", "synthetic", "--folds", "1,2", *TINY]
    plan = bench_cli([*sweep, "--backend", "slurm", "--results", "slurm", "--dry-run"], tmp_path, env, check=True)
    assert "0 GPUs/node" in plan.stdout and "2 CPUs" in plan.stdout  # resources fit the CPU-only node
    bench_cli([*sweep, "--backend", "slurm", "--results", "slurm"], tmp_path, env, check=True)
    _wait_idle(slurm_cluster)
    bench_cli([*sweep, "--backend", "local", "--results", "local"], tmp_path, env, check=True)
    via_slurm, local = _results(tmp_path / "slurm"), _results(tmp_path / "local")
    assert len(local) == 4 and sorted(via_slurm) == sorted(local), slurm_cluster.tails()
    for run_id, r in local.items():
        for key in ("uar", "war", "confusion", "per_class_recall"):
            assert via_slurm[run_id]["metrics"][key] == r["metrics"][key], (run_id, key)
    again = bench_cli([*sweep, "--backend", "slurm", "--results", "slurm"], tmp_path, env, check=True)
    assert "nothing to submit" in again.stdout and not _job_ids()
    status = bench_cli([*sweep, "--results", "slurm", "--status"], tmp_path, env, check=True)
    assert "4 done" in status.stdout


def test_status_shows_a_failed_jobs_one_line_error(tmp_path, data_home, slurm_cluster):
    env = _env(data_home)
    sweep = ["sweep", "--methods", "test_tiny", "--datasets", "dfew", "--folds", "1", "--set",
             f"data.root={tmp_path / 'no_dfew_here'}", "--results", "r"]
    bench_cli([*sweep, "--backend", "slurm"], tmp_path, env, check=True)
    queued = bench_cli([*sweep, "--status"], tmp_path, env, check=True).stdout
    assert ("queued" in queued or "running" in queued or "failed" in queued), queued
    _wait_idle(slurm_cluster)
    text = " ".join(bench_cli([*sweep, "--status"], tmp_path, env, check=True).stdout.split())
    assert "1 failed" in text and "no_dfew_here" in text and "not found" in text, text


def _first_epoch_logged(results: Path, timeout: float = 300) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        logs = list(results.rglob("metrics.jsonl"))
        if logs and logs[0].read_text().strip():
            return logs[0]
        time.sleep(0.1)
    raise AssertionError("the job never finished its first epoch")


def test_requeued_and_cancelled_jobs_resume_to_the_uninterrupted_result(tmp_path, data_home, slurm_cluster):
    env = _env(data_home)
    sweep = ["sweep", "--methods", "test_tiny", "--datasets", "synthetic", "--folds", "1", *LONGER]
    bench_cli([*sweep, "--backend", "local", "--results", "straight"], tmp_path, env, check=True)
    (reference,) = _results(tmp_path / "straight").values()

    # requeued mid-run (what a preemption does): the job starts again and resumes from its checkpoint
    bench_cli([*sweep, "--backend", "slurm", "--results", "requeued"], tmp_path, env, check=True)
    (job,) = _job_ids()
    _first_epoch_logged(tmp_path / "requeued")
    slurm_cluster.scontrol("requeue", job)
    slurm_cluster.scontrol("update", f"JobId={job}", "StartTime=now")  # SLURM delays a requeued job by 2 minutes
    _wait_idle(slurm_cluster)

    # cancelled mid-run, then the same sweep submitted again
    bench_cli([*sweep, "--backend", "slurm", "--results", "cancelled"], tmp_path, env, check=True)
    (job,) = _job_ids()
    _first_epoch_logged(tmp_path / "cancelled")
    subprocess.run(["scancel", job], check=True)
    _wait_idle(slurm_cluster)
    assert not _results(tmp_path / "cancelled")
    resubmitted = bench_cli([*sweep, "--backend", "slurm", "--results", "cancelled"], tmp_path, env, check=True)
    assert "submitted 1 jobs" in resubmitted.stdout
    _wait_idle(slurm_cluster)

    for name in ("requeued", "cancelled"):
        (result,) = _results(tmp_path / name).values()
        assert result["run_id"] == reference["run_id"] and result["metrics"] == {**reference["metrics"]}, name
        rdir = next((tmp_path / name).rglob("result.json")).parent
        logs = " ".join(Path(p).read_text(errors="replace") for p in (tmp_path / name).rglob("*_log.*"))
        assert "resuming after epoch" in " ".join(logs.split()), (name, logs[-2000:])
        ref_dir = next((tmp_path / "straight").rglob("result.json")).parent
        np.testing.assert_array_equal(np.load(rdir / "predictions.npz")["logits"],
                                      np.load(ref_dir / "predictions.npz")["logits"])


def test_one_run_over_two_slurm_tasks_equals_torchrun(tmp_path, data_home, slurm_cluster):
    env = _env(data_home)
    bench_cli(["run", "-m", "test_tiny", "-d", "synthetic", "--fold", "1", "--gpus", "2", "--device", "cpu",
               "--no-latency", "--no-progress", "--results", "torchrun", *TINY], tmp_path, env, check=True)
    bench_cli(["sweep", "--methods", "test_tiny", "--datasets", "synthetic", "--folds", "1", "--backend", "slurm",
               "--tasks", "2", "--cpus", "1", "--results", "slurm", "--set", "train.device=cpu", *TINY],
              tmp_path, env, check=True)
    _wait_idle(slurm_cluster)
    (ddp,) = _results(tmp_path / "torchrun").values()
    (via_slurm,) = _results(tmp_path / "slurm").values()
    assert via_slurm["run_id"] == ddp["run_id"], slurm_cluster.tails()
    assert via_slurm["metrics"] == ddp["metrics"]
