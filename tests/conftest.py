"""Shared test settings: small thread count (CI has 2 cores) and an isolated data home per session."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
# The README runs the suite on 2 pytest-xdist workers with `--dist loadfile` (a file's tests share one worker: its
# module fixtures, the one SLURM cluster). Each worker, and every `bench` it starts, gets its share of the cores and
# never more: oversubscribed OpenMP threads slow torch down several-fold.
THREADS = max(1, (os.cpu_count() or 2) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
torch.set_num_threads(THREADS)


def pytest_collection_modifyitems(config, items) -> None:
    """The SLURM file first: its ~5 minutes, mostly waiting on the scheduler, overlap the rest on the other worker
    instead of ending the run alone. `gpu` tests need CUDA: skipped (with the reason) on a machine without it."""
    items.sort(key=lambda item: "slurm" not in item.keywords)  # stable: the rest keep their order
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (run `pytest -m gpu` on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A real single-node SLURM (munge, slurmctld, slurmd), started for the first `slurm` test, stopped at the end."""
    from tests.slurm_cluster import start_cluster, stop_cluster

    cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    yield cluster
    stop_cluster(cluster)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing `slurm` test shows the tails of the daemons' logs."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)  # for _drop_checkpoints
    if report.failed and "slurm" in item.keywords and "slurm_cluster" in item.funcargs:
        report.sections.append(("SLURM daemon logs", item.funcargs["slurm_cluster"].tails()))


@pytest.fixture(autouse=True)
def _drop_checkpoints(request):
    """A passed test's run checkpoints go when it ends: the one-epoch runs of 100 M-parameter models write GBs, and
    a full suite kept ~29 GB of them in pytest's temp directories (a failed test keeps its files)."""
    yield
    tmp, report = request.node.funcargs.get("tmp_path"), getattr(request.node, "report_call", None)
    if tmp is not None and report is not None and report.passed:
        for folder in list(tmp.rglob("checkpoints")):
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def data_home(tmp_path_factory) -> Path:
    """One data home per test session: synthetic data generated once, reused by every end-to-end test."""
    return tmp_path_factory.mktemp("dfer-data")


BENCH_SCRIPT = Path(sys.executable).parent / "bench"  # the console script `pip install` put beside python


def bench_cli(args: list[str], cwd: Path, env_extra: dict | None = None, timeout: int = 600,
              check: bool = False) -> subprocess.CompletedProcess:
    """Run the installed `bench` console script in a subprocess, as a user would."""
    env = dict(os.environ)
    env.update({"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(THREADS), "COLUMNS": "200"})
    env.update(env_extra or {})
    cmd = [str(BENCH_SCRIPT)] if BENCH_SCRIPT.is_file() else [sys.executable, "-m", "bench.cli"]
    proc = subprocess.run([*cmd, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"bench {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


TINY_SYNTHETIC = ["--set", "data.options.clips_per_class=2", "--set", "data.options.folds=2"]  # 2 clips/class, 2 folds


def tiny_synthetic_run(method: str, cwd: Path, data_home: Path, *args: str) -> tuple[dict, Path]:
    """One epoch of `bench run` on the smallest synthetic variant through the installed script; returns the run's
    result.json (parsed) and its path. `args` add flags (batch size, input size, --set ...)."""
    bench_cli(["run", "-m", method, "-d", "synthetic", "--fold", "1", "--epochs", "1", "--workers", "0",
               "--no-progress", "--no-latency", *TINY_SYNTHETIC, *args],
              cwd, {"DFER_DATA_HOME": str(data_home)}, check=True)
    (result,) = (cwd / "results" / "runs").rglob("result.json")
    return json.loads(result.read_text()), result
