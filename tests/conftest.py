"""Shared test settings: small thread count (CI has 2 cores) and an isolated data home per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
torch.set_num_threads(2)


def pytest_collection_modifyitems(config, items) -> None:
    """`gpu` tests need CUDA: skipped (with the reason) on a machine without it."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (run `pytest -m gpu` on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def data_home(tmp_path_factory) -> Path:
    """One data home per test session: synthetic data generated once, reused by every end-to-end test."""
    return tmp_path_factory.mktemp("dfer-data")


BENCH_SCRIPT = Path(sys.executable).parent / "bench"  # the console script `pip install` put beside python


def bench_cli(args: list[str], cwd: Path, env_extra: dict | None = None, timeout: int = 600,
              check: bool = False) -> subprocess.CompletedProcess:
    """Run the installed `bench` console script in a subprocess, as a user would."""
    env = dict(os.environ)
    env.update({"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2", "COLUMNS": "200"})
    env.update(env_extra or {})
    cmd = [str(BENCH_SCRIPT)] if BENCH_SCRIPT.is_file() else [sys.executable, "-m", "bench.cli"]
    proc = subprocess.run([*cmd, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"bench {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc
