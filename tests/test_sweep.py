"""Many runs: the local backend (one `bench run` subprocess per run) and the in-process debug backend; a
completed run id is skipped, never duplicated. And one run split over two processes with torchrun (DDP on
CPU with gloo), rank 0 writing the result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import bench_cli

TINY = ["--set", "data.options.clips_per_class=4", "--set", "data.options.folds=2", "--set", "data.options.resolution=32",
        "--set", "data.size=32", "--set", "data.frames=4", "--set", "data.workers=0", "--set", "train.batch_size=4"]


def _results(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((root / "results" / "runs").rglob("result.json"))]


@pytest.mark.slow
def test_sweep_runs_each_spec_once(tmp_path, data_home):
    env = {"DFER_DATA_HOME": str(data_home)}
    bench_cli(["sweep", "--methods", "test_tiny", "--datasets", "synthetic", "--folds", "1", "--backend", "local",
               "--epochs", "1", *TINY], tmp_path, env, check=True)
    assert [r["fold"] for r in _results(tmp_path)] == [1]
    proc = bench_cli(["sweep", "--methods", "test_tiny", "--datasets", "synthetic", "--folds", "1,2", "--backend", "debug",
                      "--epochs", "1", *TINY], tmp_path, env, check=True)
    assert "1 already completed" in proc.stdout
    runs = _results(tmp_path)
    assert sorted(r["fold"] for r in runs) == [1, 2] and len({r["run_id"] for r in runs}) == 2
    plan = bench_cli(["sweep", "--methods", "test_tiny", "--datasets", "synthetic", "--folds", "1,2", "--dry-run",
                      "--epochs", "1", *TINY], tmp_path, env, check=True)
    assert "2 already completed" in plan.stdout


@pytest.mark.slow
def test_one_run_on_two_processes_with_torchrun(tmp_path, data_home):
    env = {"DFER_DATA_HOME": str(data_home), "OMP_NUM_THREADS": "1"}
    bench_cli(["run", "-m", "test_tiny", "-d", "synthetic", "--fold", "1", "--epochs", "1", "--gpus", "2",
               "--device", "cpu", "--no-latency", "--no-progress", *TINY], tmp_path, env, check=True)
    (result,) = _results(tmp_path)
    assert result["status"] == "completed" and result["data"]["n_test"] > 0


def test_sweep_does_not_skip_a_result_computed_on_other_data(tmp_path, monkeypatch):
    """Like `bench run`, the sweep plan reuses a completed run only for the data it was computed on: after the
    synthetic defaults change (same spec hash), planning stops with the one-line error instead of skipping."""
    import pytest

    from bench.datasets import synthetic as S
    from bench.errors import BenchError
    from bench.sweep import execute_plan, make_plan

    monkeypatch.setenv("DFER_DATA_HOME", str(tmp_path / "data"))
    sets = TINY[1::2]
    args = (["test_tiny"], ["synthetic"], "1", [0], {"train": {"epochs": 1}}, sets, tmp_path / "results")
    plan = make_plan(*args)
    assert not plan[0].done
    execute_plan(plan, backend="debug", results=tmp_path / "results")
    assert make_plan(*args)[0].done
    monkeypatch.setitem(S.DEFAULTS, "intensity", S.DEFAULTS["intensity"] + 0.5)
    with pytest.raises(BenchError, match="result.json: computed on other data"):
        make_plan(*args)


@pytest.mark.slow
def test_a_slurm_plan_is_resolved_for_the_jobs_device(tmp_path):
    """The plan is resolved on the submitting machine and each run again on its job's node: both must see the same
    device, or a recipe's on_cuda layer (IFDD on synthetic) would give two run ids. GPU jobs plan for cuda, CPU jobs
    for cpu, and the job's command carries it."""
    from bench.spec import resolve_spec
    from bench.sweep import make_plan

    def planned_id(*args: str) -> str:
        proc = bench_cli(["sweep", "--methods", "ifdd", "--datasets", "synthetic", "--folds", "1", "--backend",
                          "slurm", "--dry-run", "--results", str(tmp_path / "results"), *args], tmp_path, check=True)
        return next(w for w in proc.stdout.split() if w.startswith("ifdd-synthetic"))

    cuda = resolve_spec("ifdd", "synthetic", flags={"train": {"device": "cuda"}}).run_id
    cpu = resolve_spec("ifdd", "synthetic", flags={"train": {"device": "cpu"}}).run_id
    assert cuda != cpu
    assert planned_id("--gpus", "1") == cuda
    assert planned_id("--gpus", "0") == cpu
    assert planned_id("--gpus", "0", "--device", "cuda") == cuda
    (planned,) = make_plan(["ifdd"], ["synthetic"], "1", [0], {"train": {"device": "cuda"}}, [], tmp_path)
    argv = planned.argv(tmp_path)
    assert argv[argv.index("--device") + 1] == "cuda" and planned.spec.run_id == cuda
