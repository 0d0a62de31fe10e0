"""Many runs (methods x datasets x folds x seeds). One run = one spec = one process (or one multi-process job).

Backends: `debug` runs in this process; `local` runs one subprocess per run with a small GPU-slot queue
(CUDA_VISIBLE_DEVICES per child; submitit's LocalExecutor starts every job at once); `slurm` submits a job
array through submitit, each job running `bench run` for its spec, which resumes from its checkpoint when the
job is requeued (preemption, `scontrol requeue`) or cancelled and submitted again.

A run is planned only when it is not already done: completed on the data the spec resolves to now (the check
`bench run` makes), or, for `slurm`, still queued or running under a job recorded in its run directory
(`job.json`), or held by a live `bench run` anywhere (its lock file, bench.lock: the same rule as a second `bench
run`, which refuses; the sweep skips the run and names the holder). A run that loses the race for the lock after
planning exits with code 3 and is reported as held, not failed. `--status` reads the same records: queued, running, done or failed, with the job id, the log
path, and a failed run's one-line error. Every run writes only inside its own directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.data.manifest import current_checksum
from bench.errors import BenchError, LockHeldError, UnknownNameError
from bench.lock import holder
from bench.spec import RunSpec, parse_folds, resolve_spec
from bench.store import atomic_write_json, completed_result, read_status, run_dir, writable_dir

BACKENDS = ("debug", "local", "slurm")
JOB_FILE = "job.json"


@dataclass
class Resources:
    """What one run asks of a SLURM cluster. `gpus=None` means: 1 if the partition has GPUs (sinfo's GRES),
    else 0; `cpus=None`: 8, capped at the partition's CPUs per node. `nodes` x `gpus` > 1 runs one DDP job of
    nodes x gpus processes (on CPU: `tasks` processes with gloo)."""

    gpus: int | None = None
    cpus: int | None = None
    mem_gb: int | None = None
    time_min: int = 720
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    nodes: int = 1
    tasks: int | None = None  # processes per node; default max(gpus, 1)
    array_parallelism: int = 64

    def resolved(self) -> Resources:
        """Fill the automatic values from the cluster (sinfo), when there is one."""
        out = Resources(**asdict(self))
        if out.gpus is None:
            out.gpus = 1 if _partition_gres(out.partition) else 0
        if out.cpus is None:
            out.cpus = min(8, _partition_cpus(out.partition) or 8)
        if out.tasks is None:
            out.tasks = max(out.gpus, 1)
        return out

    def describe(self) -> str:
        r = self
        parts = [f"{r.nodes} node x {r.tasks} task" if r.nodes > 1 or (r.tasks or 1) > 1 else "1 task",
                 f"{r.gpus} GPU" + ("s" if r.gpus != 1 else "") + "/node", f"{r.cpus} CPUs",
                 f"{r.mem_gb} GB" if r.mem_gb else "default mem", f"{r.time_min} min"]
        parts += [f"{k} {v}" for k, v in (("partition", r.partition), ("account", r.account), ("qos", r.qos),
                                          ("constraint", r.constraint)) if v]
        return ", ".join(parts)

    def submitit_parameters(self) -> dict:
        p = {"timeout_min": self.time_min, "cpus_per_task": self.cpus, "nodes": self.nodes,
             "tasks_per_node": self.tasks, "slurm_array_parallelism": self.array_parallelism}
        if self.gpus:
            p["gpus_per_node"] = self.gpus
        if self.mem_gb:
            p["mem_gb"] = self.mem_gb
        for key in ("partition", "account", "qos", "constraint"):
            if getattr(self, key):
                p[f"slurm_{key}"] = getattr(self, key)
        return p


def _sinfo(fmt: str, partition: str | None) -> list[str]:
    if shutil.which("sinfo") is None:
        return []
    cmd = ["sinfo", "-h", "-o", fmt] + (["-p", partition] if partition else [])
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return [ln.strip() for ln in out.stdout.splitlines() if ln.strip()] if out.returncode == 0 else []


def _partition_gres(partition: str | None) -> bool:
    return any("gpu" in g for g in _sinfo("%G", partition))


def _partition_cpus(partition: str | None) -> int | None:
    values = [int(c.rstrip("+")) for c in _sinfo("%c", partition) if c.rstrip("+").isdigit()]
    return min(values) if values else None


@dataclass
class PlannedRun:
    spec: RunSpec
    sets: list[str]
    flags: dict
    done: bool
    active_job: str | None = None  # a SLURM job id still queued or running for this spec
    held_by: str | None = None  # a live `bench run` holding the run directory's lock (bench.lock)
    extra: dict = field(default_factory=dict)  # e.g. the GPU-hour estimate of `bench sweep --paper`

    @property
    def todo(self) -> bool:
        return not self.done and self.active_job is None and self.held_by is None

    def argv(self, results: Path) -> list[str]:
        """The `bench run` command line that reproduces this spec."""
        s = self.spec
        cmd = [sys.executable, "-m", "bench.cli", "run", "--method", s.method, "--dataset", s.dataset,
               "--seed", str(s.seed), "--protocol", s.protocol, "--results", str(Path(results).resolve()),
               "--no-progress"]
        if s.fold is not None:
            cmd += ["--fold", str(s.fold)]
        epochs = self.flags.get("train", {}).get("epochs")
        if epochs is not None:
            cmd += ["--epochs", str(epochs)]
        device = self.flags.get("train", {}).get("device")
        if device is not None:  # the device the plan was resolved for (a recipe's on_cuda layer depends on it)
            cmd += ["--device", device]
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
                    plan.append(plan_run(resolve_spec(m, ds, fold=f, seed=seed, flags=flags, sets=sets), sets, flags,
                                         results))
    return plan


def make_paper_plan(paper: str | Path, seeds: list[int], flags: dict, sets: list[str], results: Path) -> list[PlannedRun]:
    """Exactly the runs a paper's tables need (registered rows x dataset x folds x seeds, each at the method's
    own recipe for that dataset), each with its GPU-hour estimate."""
    from bench.report.papers import load_paper, planned_specs

    plan = []
    for method, dataset, fold, seed in planned_specs(load_paper(paper), seeds):
        p = plan_run(resolve_spec(method, dataset, fold=fold, seed=seed, flags=flags, sets=sets), sets, flags, results)
        p.extra.update(estimate_gpu_hours(p.spec, results))
        plan.append(p)
    return plan


def estimate_gpu_hours(spec: RunSpec, results: Path) -> dict:
    """epochs x training clips / the clips/s of a training step measured on a GPU by `bench profile --train` at
    this input (results/profiles). Says so when there is no such measurement."""
    from bench.registry import DATASETS

    info = DATASETS.get(spec.dataset)
    counts = info.counts_for(dict(spec.data.options)) if info.counts_for else info.official_counts
    n_train = (counts.get(spec.fold) or (None, None))[0]
    shape = [3, spec.data.frames, spec.data.size, spec.data.size]
    best = None
    for path in sorted((Path(results) / "profiles" / spec.method).glob("*.json")):
        try:
            prof = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        train = prof.get("train") or {}
        on_gpu = prof.get("input_shape") == shape and str(train.get("device", "")).startswith("cuda")
        if on_gpu and (best is None or train["clips_per_s"] > best["clips_per_s"]):
            best = {**train, "file": str(path)}
    if best is None or n_train is None:
        why = "no training-clip count" if n_train is None else \
            f"not measured: bench profile -m {spec.method} -d {spec.dataset} --device cuda --train"
        return {"gpu_hours": None, "estimate_note": why}
    hours = spec.train.epochs * n_train / best["clips_per_s"] / 3600.0
    return {"gpu_hours": hours, "estimate_from": best["file"], "train_clips_per_s": best["clips_per_s"]}


def plan_run(spec: RunSpec, sets: list[str], flags: dict, results: Path) -> PlannedRun:
    rdir = run_dir(results, spec)
    done = completed_result(rdir, spec.dataset, lambda: current_checksum(spec)) is not None
    job = read_job(rdir)
    active = job["job_id"] if job and not done and slurm_state(job["job_id"]) in ACTIVE else None
    return PlannedRun(spec, sets, flags, done, active, None if done else holder(rdir))


def plan_table(plan: list[PlannedRun], resources: Resources | None = None) -> Table:
    waiting = sum(p.active_job is not None for p in plan)
    held = sum(p.held_by is not None for p in plan)
    title = f"sweep: {len(plan)} runs, {sum(p.done for p in plan)} already completed" + \
        (f", {waiting} still queued or running" if waiting else "") + \
        (f", {held} being computed by another process" if held else "")
    if resources is not None:
        title += f"\nper run: {resources.describe()}"
    estimate = any("gpu_hours" in p.extra for p in plan)
    if estimate:
        todo = [p for p in plan if p.todo]
        measured = [p.extra["gpu_hours"] for p in todo if p.extra.get("gpu_hours") is not None]
        title += (f"\nGPU-hours of the {len(todo)} runs to do: {sum(measured):.1f} for the {len(measured)} measured; "
                  f"{len(todo) - len(measured)} without a GPU training measurement")
    t = Table(title=title)
    for col in ("run id", "method", "dataset", "fold", "seed", "state", *(["GPU-hours (est.)"] if estimate else [])):
        t.add_column(col)
    for p in plan:
        s = p.spec
        state = "done (skip)" if p.done else f"job {p.active_job} (skip)" if p.active_job else \
            f"held by {p.held_by} (skip)" if p.held_by else "todo"
        cells = [s.run_id, s.method, s.dataset, str(s.fold), str(s.seed), state]
        if estimate:
            g = p.extra.get("gpu_hours")
            cells.append(f"{g:.2f}" if g is not None else p.extra.get("estimate_note", "no measurement"))
        t.add_row(*cells)
    return t


def execute_plan(plan: list[PlannedRun], *, backend: str, results: Path, max_parallel: int = 0,
                 resources: Resources | None = None, console: Console | None = None) -> list[str]:
    """Run or submit every planned run that is to do; returns the job ids (slurm) or run ids started."""
    todo = [p for p in plan if p.todo]
    console = console or Console()
    if backend not in BACKENDS:
        raise UnknownNameError("sweep backend", backend, BACKENDS)
    if todo:  # a read-only or foreign results directory: one line before anything starts or is submitted
        writable_dir(Path(results), flag="--results")
    if backend == "debug":
        from bench.train import run

        for p in todo:
            try:
                run(p.spec, results, progress=False, profile_latency=False)
            except LockHeldError as e:  # started elsewhere since the plan: theirs to finish
                console.print(f"held by another process (skipped): {e}", highlight=False, soft_wrap=True)
        return [p.spec.run_id for p in todo]
    if backend == "local":
        _run_local(todo, results, max_parallel, console)
        return [p.spec.run_id for p in todo]
    if backend == "slurm":
        return _run_slurm(todo, results, (resources or Resources()).resolved(), console)
    raise UnknownNameError("sweep backend", backend, BACKENDS)


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
                state = "completed" if proc.returncode == 0 else \
                    "held by another process (skipped; see train.log)" if proc.returncode == LockHeldError.exit_code \
                    else f"FAILED (exit {proc.returncode})"
                if proc.returncode not in (0, LockHeldError.exit_code):
                    failures.append(p.spec.run_id)
                console.print(f"{state}: {p.spec.run_id}")
    if failures:  # a non-zero exit, so a script or CI running the sweep sees it
        raise BenchError(f"{len(failures)} of {len(todo)} runs failed ({', '.join(failures[:3])}"
                         f"{', ...' if len(failures) > 3 else ''}): see error.txt and train.log in their run "
                         f"directories under {results}/runs, or `bench sweep ... --status`")


# ---------------------------------------------------------------------------------------------------- slurm


class BenchRunJob:
    """The callable a SLURM job runs: `bench run` for one spec. Under several SLURM tasks it exports the torch
    distributed variables (rank, world size, master address) first, so the tasks form one DDP run. On
    preemption or timeout submitit calls `checkpoint`, which requeues the same command; the run then resumes
    from its last checkpoint."""

    def __init__(self, argv: list[str]):
        self.argv = argv

    def __call__(self) -> int:
        if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
            import submitit

            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        code = subprocess.call(self.argv)
        if code == LockHeldError.exit_code:
            raise RuntimeError(f"bench run refused: the run is being computed by another process (its lock file): "
                               f"{' '.join(self.argv[3:])}")
        if code:
            raise RuntimeError(f"bench run exited with {code}: {' '.join(self.argv[3:])}")
        return code

    def checkpoint(self):  # submitit calls this on timeout/preemption
        import submitit

        return submitit.helpers.DelayedSubmission(BenchRunJob(self.argv))


def submitit_folder(results: Path) -> Path:
    return Path(results).resolve() / "sweeps" / "submitit"


def _run_slurm(todo: list[PlannedRun], results: Path, resources: Resources, console: Console) -> list[str]:
    try:
        import submitit
    except ImportError:
        raise BenchError("the slurm backend needs submitit: pip install 'dfer-bench[slurm]'") from None
    if shutil.which("sbatch") is None:
        raise BenchError("the slurm backend needs sbatch on PATH (run on a SLURM login node), or use --backend local")
    if not todo:
        console.print("nothing to submit: every planned run is done, queued or running")
        return []
    folder = submitit_folder(results)
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(name="bench", **resources.submitit_parameters())
    with executor.batch():
        jobs = [executor.submit(BenchRunJob(p.argv(results))) for p in todo]
    for p, job in zip(todo, jobs, strict=True):
        rdir = run_dir(results, p.spec)
        rdir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(rdir / JOB_FILE, {"backend": "slurm", "job_id": str(job.job_id),
                                            "log": str(Path(job.paths.stdout)), "err": str(Path(job.paths.stderr)),
                                            "resources": asdict(resources), "submitted_at": time.time()})
    console.print(f"submitted {len(jobs)} jobs ({resources.describe()}); results appear under {results}/runs as they "
                  f"finish; watch them with the same command and --status")
    return [str(j.job_id) for j in jobs]


def read_job(rdir: Path) -> dict | None:
    path = rdir / JOB_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


ACTIVE = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED")


def slurm_state(job_id: str) -> str | None:
    """The job's state from squeue (queued or running jobs), else None (finished, or no SLURM here)."""
    if shutil.which("squeue") is None:
        return None
    try:
        out = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], capture_output=True, text=True,
                             timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    states = [s.strip() for s in out.stdout.splitlines() if s.strip()]
    return states[0] if out.returncode == 0 and states else None


def run_state(p: PlannedRun, results: Path) -> dict:
    """What `--status` shows for one planned run: state, job id, log path, and a failed run's one line."""
    rdir = run_dir(results, p.spec)
    job = read_job(rdir) or {}
    row = {"run_id": p.spec.run_id, "job_id": job.get("job_id"), "log": job.get("log") or str(rdir / "train.log"),
           "error": ""}
    if p.done:
        return {**row, "state": "done"}
    live = slurm_state(job["job_id"]) if job.get("job_id") else None
    if live:
        return {**row, "state": "queued" if live == "PENDING" else "running"}
    held_by = holder(rdir)
    if held_by:
        return {**row, "state": "running", "log": f"held by {held_by}"}
    status = read_status(rdir)
    if status in ("failed", "interrupted") or (job and status != "completed"):
        return {**row, "state": "failed", "error": failure_line(rdir, job)}
    if status == "running":
        return {**row, "state": "running"}
    return {**row, "state": "not submitted"}


def failure_line(rdir: Path, job: dict) -> str:
    """The one-line error of a failed run: the last `error: ...`/exception line of its error.txt or job log."""
    for path in (rdir / "error.txt", Path(job["err"]) if job.get("err") else None,
                 Path(job["log"]) if job.get("log") else None):
        if path is None or not path.is_file():
            continue
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
        for ln in reversed(lines):
            if ln.startswith("error:") or "Error" in ln.split(":")[0]:
                return ln[:300]
    return "no error recorded (killed? see the job log)"


def status_table(plan: list[PlannedRun], results: Path) -> tuple[Table, list[dict]]:
    rows = [run_state(p, results) for p in plan]
    counts = {s: sum(r["state"] == s for r in rows) for s in ("done", "running", "queued", "failed", "not submitted")}
    t = Table(title="sweep status: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    for col in ("run id", "state", "job", "log / error"):
        t.add_column(col, overflow="fold")
    for r in rows:
        colour = {"done": "green", "failed": "red", "running": "cyan", "queued": "yellow"}.get(r["state"], "white")
        t.add_row(r["run_id"], f"[{colour}]{r['state']}[/]", r["job_id"] or "-",
                  r["error"] if r["state"] == "failed" else r["log"])
    return t, rows
