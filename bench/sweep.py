"""Many runs (methods x datasets x folds x seeds). One run = one spec = one process.

Backends: `debug` runs in this process (tests); `local` runs one subprocess per run with a small GPU-slot
queue (CUDA_VISIBLE_DEVICES per child; submitit's LocalExecutor starts every job at once); `slurm` submits a
job array through submitit, each job re-running `bench run` (which resumes from its checkpoint if requeued).
Completed run ids are skipped (only when computed on the data the spec resolves to now, as `bench run` checks);
every run writes only inside its own directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.data.manifest import current_checksum
from bench.spec import RunSpec, parse_folds, resolve_spec
from bench.store import completed_result, run_dir


@dataclass
class PlannedRun:
    spec: RunSpec
    sets: list[str]
    flags: dict
    done: bool

    def argv(self, results: Path) -> list[str]:
        """The `bench run` command line that reproduces this spec."""
        s = self.spec
        cmd = [sys.executable, "-m", "bench.cli", "run", "--method", s.method, "--dataset", s.dataset,
               "--seed", str(s.seed), "--protocol", s.protocol, "--results", str(results), "--no-progress"]
        if s.fold is not None:
            cmd += ["--fold", str(s.fold)]
        epochs = self.flags.get("train", {}).get("epochs")
        if epochs is not None:
            cmd += ["--epochs", str(epochs)]
        for item in self.sets:
            cmd += ["--set", item]
        return cmd


def make_plan(methods: list[str], datasets: list[str], folds: str, seeds: list[int], flags: dict, sets: list[str],
              results: Path) -> list[PlannedRun]:
    plan = []
    for ds in datasets:
        for m in methods:
            for f in parse_folds(ds, folds):
                for seed in seeds:
                    spec = resolve_spec(m, ds, fold=f, seed=seed, flags=flags, sets=sets)
                    done = completed_result(run_dir(results, spec), ds, lambda s=spec: current_checksum(s)) is not None
                    plan.append(PlannedRun(spec, sets, flags, done))
    return plan


def plan_table(plan: list[PlannedRun]) -> Table:
    t = Table(title=f"sweep: {len(plan)} runs, {sum(p.done for p in plan)} already completed")
    for col in ("run id", "method", "dataset", "fold", "seed", "state"):
        t.add_column(col)
    for p in plan:
        s = p.spec
        t.add_row(s.run_id, s.method, s.dataset, str(s.fold), str(s.seed), "done (skip)" if p.done else "todo")
    return t


def execute_plan(plan: list[PlannedRun], *, backend: str, results: Path, max_parallel: int = 0,
                 slurm_partition: str | None = None, timeout_min: int = 720, console: Console | None = None) -> None:
    todo = [p for p in plan if not p.done]
    console = console or Console()
    if backend == "debug":
        from bench.train import run

        for p in todo:
            run(p.spec, results, progress=False, profile_latency=False)
    elif backend == "local":
        _run_local(todo, results, max_parallel, console)
    elif backend == "slurm":
        _run_slurm(todo, results, slurm_partition, timeout_min, console)
    else:
        from bench.errors import UnknownNameError

        raise UnknownNameError("sweep backend", backend, ["debug", "local", "slurm"])


def _visible_gpus() -> list[str]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in env.split(",") if g.strip()]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except ImportError:  # pragma: no cover
        return []


def _run_local(todo: list[PlannedRun], results: Path, max_parallel: int, console: Console) -> None:
    """A GPU-slot queue: at most one run per GPU (or `max_parallel` CPU runs), logs in each run directory."""
    gpus = _visible_gpus()
    slots = gpus[: max_parallel or len(gpus)] if gpus else [None] * max(max_parallel, 1)
    free = list(range(len(slots)))
    running: list[tuple[subprocess.Popen, int, PlannedRun]] = []
    queue = list(todo)
    failures = []
    while queue or running:
        while queue and free:
            slot = free.pop(0)
            p = queue.pop(0)
            env = dict(os.environ)
            if slots[slot] is not None:
                env["CUDA_VISIBLE_DEVICES"] = slots[slot]
            rdir = run_dir(results, p.spec)
            rdir.mkdir(parents=True, exist_ok=True)
            logf = open(rdir / "train.log", "ab")  # noqa: SIM115 - closed when the child ends
            proc = subprocess.Popen(p.argv(results), stdout=logf, stderr=subprocess.STDOUT, env=env)
            proc.log = logf  # type: ignore[attr-defined]
            running.append((proc, slot, p))
            console.print(f"started {p.spec.run_id} on slot {slots[slot] or slot}")
        time.sleep(1.0)
        for item in list(running):
            proc, slot, p = item
            if proc.poll() is not None:
                proc.log.close()  # type: ignore[attr-defined]
                running.remove(item)
                free.append(slot)
                state = "completed" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
                if proc.returncode:
                    failures.append(p.spec.run_id)
                console.print(f"{state}: {p.spec.run_id}")
    if failures:
        console.print(f"[red]{len(failures)} runs failed[/]: see train.log / error.txt in their run directories")


class _BenchRunJob:
    """A submitit-friendly callable: runs `bench run` for one spec; on preemption it is requeued and the
    run resumes from its last checkpoint."""

    def __init__(self, argv: list[str]):
        self.argv = argv

    def __call__(self) -> int:
        return subprocess.call(self.argv)

    def checkpoint(self):  # submitit calls this on timeout/preemption
        import submitit

        return submitit.helpers.DelayedSubmission(_BenchRunJob(self.argv))


def _run_slurm(todo: list[PlannedRun], results: Path, partition: str | None, timeout_min: int, console: Console) -> None:
    try:
        import submitit
    except ImportError:
        from bench.errors import BenchError

        raise BenchError("the slurm backend needs submitit: pip install 'dfer-bench[slurm]'") from None
    executor = submitit.AutoExecutor(folder=results / "sweeps" / "submitit")
    params = {"timeout_min": timeout_min, "gpus_per_node": 1, "cpus_per_task": 8, "slurm_array_parallelism": 64}
    if partition:
        params["slurm_partition"] = partition
    executor.update_parameters(**params)
    jobs = []
    with executor.batch():
        for p in todo:
            jobs.append(executor.submit(_BenchRunJob(p.argv(results))))
    console.print(f"submitted {len(jobs)} jobs ({executor.cluster}); results appear under {results}/runs as they finish")
