"""One directory per run; every file written atomically (temp file in the same directory, fsync, os.replace), and a
read-only, foreign or full directory is one line (StorageError / DiskFullError), never a traceback.

This module owns `result.json`: its schema (`run_result`), writing it (last, and only on success; a failed
run leaves `status` = failed and `error.txt`), reading it back (`load_runs`) and deciding whether a spec has
completed on the data it resolves to now (`completed_result`). Train, sweep, eval and report all go through it.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from bench.errors import BenchError, DiskFullError, StorageError

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
RESULT_FILE = "result.json"


# the process's umask, read once at import: mkstemp creates 0600 files, and results on a shared machine must get the
# mode a plain open() would give them (a colleague's `bench report` reads them)
_UMASK = os.umask(0o022)
os.umask(_UMASK)
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _user() -> str:
    try:
        import getpass

        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return f"uid {os.getuid()}"


def storage_error(e: OSError, path: Path, flag: str | None = None) -> StorageError | None:
    """The one line for an OSError caused by where a file goes (read-only, not permitted, disk full), naming the
    directory and the fix; None for any other OSError (a bug or a missing input: keep its traceback). `flag` is the
    option that chooses the directory (--results, --out), named in the fix."""
    failed = Path(e.filename) if getattr(e, "filename", None) else Path(path)  # a temp file, or a parent made
    where = failed if failed.is_dir() else _existing_ancestor(failed.parent)
    target = Path(path)
    elsewhere = f"pass {flag} DIR" if flag else "write to another directory"
    if e.errno in _NO_SPACE:
        try:
            free = f"{shutil.disk_usage(where).free / 1024:.0f} KiB free"
        except OSError:
            free = "free space unknown"
        what = "disk quota exceeded" if e.errno == errno.EDQUOT else "no space left on device"
        return DiskFullError(f"{where}: {what} ({free}) while writing {target.name}; free space there"
                             + (f" (or {elsewhere})" if flag else "")
                             + " and run the same command again (files already written are intact)")
    if e.errno == errno.EROFS:
        return StorageError(f"{where}: read-only file system, cannot write {target}; {elsewhere} on a writable disk")
    if e.errno in _NOT_WRITABLE:
        return StorageError(f"{where}: permission denied for {_user()}, cannot write {target}; {elsewhere} you can "
                            "write, or ask its owner for write access")
    return None


def writable_dir(path: Path, flag: str | None = None) -> Path:
    """Create `path` and create (then remove) a file in it, so a read-only, foreign or NFS root-squashed directory
    stops the command with one line before any work; permission bits alone miss read-only mounts and ACLs."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        err = storage_error(e, path, flag)
        if err is None:
            raise
        raise err from None
    return path


class _RecordingFile:
    """A file whose write() keeps the OSError it raised: torch.save turns ENOSPC into 'RuntimeError: [enforce fail
    at inline_container.cc] unexpected pos', and the errno is what tells a full disk from a bug."""

    def __init__(self, f):
        self._f = f
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name: str):
        return getattr(self._f, name)


def atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """`write(file object)` into a temp file beside `path`, fsync, then os.replace onto `path`: `path` is always
    the old or the new file, never half of one. A read-only, foreign or full directory raises StorageError (one
    line) after removing the temp file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        err = storage_error(e, path)
        if err is None:
            raise
        raise err from None
    sink = None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)
            sink = _RecordingFile(f)
            write(sink)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        cause = e if isinstance(e, OSError) else getattr(sink, "error", None)
        err = storage_error(cause, path) if cause is not None else None
        if err is None:
            raise
        raise err from e


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def atomic_torch_save(path: Path, obj: Any) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_savefig(fig: Any, path: Path) -> None:
    """A matplotlib figure written like every other file: a full disk never leaves half a PNG in place of one."""
    atomic_write(path, lambda f: fig.savefig(f, format=Path(path).suffix.lstrip(".") or "png"))


def run_dir(results: Path, spec) -> Path:
    fold = f"fold{spec.fold}" if spec.fold is not None else "single"
    return results / "runs" / spec.dataset / fold / spec.method / spec.run_id


def set_status(rdir: Path, status: str) -> None:
    atomic_write_text(rdir / "status", status + "\n")


def read_status(rdir: Path) -> str | None:
    p = rdir / "status"
    return p.read_text().strip() if p.is_file() else None


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_info(repo: Path | None = None) -> dict:
    """Commit and dirty flag of the code that produced a result (None outside a git checkout)."""
    repo = repo or Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
        if commit.returncode:
            return {"git_commit": None, "git_dirty": None}
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10)
        return {"git_commit": commit.stdout.strip(), "git_dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}


def environment(device: torch.device) -> dict:
    env = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "host": platform.node(),
    }
    env.update(git_info())
    return env


# ----------------------------------------------------------------------------------------------------------
# result.json: schema, writing, reading, completed runs


def run_result(*, spec: Any, family: str, variant_of: str | None, duration_s: float, selected_epoch: int,
               views_per_video: float, init: dict, metrics: dict, metrics_last: dict | None, profile: dict,
               env: dict, data: dict, training: str = "trained", run_id: str | None = None) -> dict:
    """The result.json of a completed run (schema v1). The protocol block is derived from the spec here, so
    every result records its frames, size, sampling, test views, selection rule and init the same way.
    `training` is "trained", or "zero-shot" for an evaluation with no training (its rows are reported apart)."""
    d, t = spec.data, spec.train
    return {
        "schema_version": SCHEMA_VERSION, "run_id": run_id or spec.run_id, "status": "completed", "created_at": now_iso(),
        "duration_s": round(float(duration_s), 2),
        "method": spec.method, "family": family, "parent": variant_of, "dataset": spec.dataset,
        "fold": spec.fold, "seed": spec.seed, "protocol_name": spec.protocol, "config_hash": spec.config_hash(),
        "spec": spec.to_dict(),
        "protocol": {
            "frames": d.frames, "size": d.size, "sampler": d.sampler, "stride": d.stride,
            "segment_len": d.segment_len, "test_temporal": d.test_temporal, "test_views": d.test_views,
            "test_crops": d.test_crops, "views_per_video": views_per_video, "aggregate": d.aggregate,
            "selection": t.selection, "selection_metric": t.selection_metric, "selected_epoch": selected_epoch,
            "epochs": t.epochs if training == "trained" else 0, "init": init, "training": training,
            "normalisation": "none" if d.mean is None else "mean/std",
        },
        "metrics": metrics,
        "metrics_last": metrics_last,
        "profile": profile,
        "env": env,
        "data": data,
        "artifacts": {"predictions": "predictions.npz", "metrics_log": "metrics.jsonl",
                      "checkpoint": "checkpoints/last.pt"},
    }


REQUIRED_RESULT_KEYS = ("schema_version", "run_id", "status", "method", "dataset", "fold", "seed", "metrics")


def result_problem(data: Any) -> str | None:
    """Why a loaded result.json cannot be used (None when it can)."""
    if not isinstance(data, dict):
        return "not a JSON object"
    version = data.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        return f"unknown schema_version {version!r}"
    if data.get("status") != "completed":
        return f"status {data.get('status')!r}"
    missing = [k for k in REQUIRED_RESULT_KEYS if k not in data]
    return f"missing keys {missing}" if missing else None


def write_result(rdir: Path, result: dict) -> None:
    """result.json last and atomically, then the status marker."""
    problem = result_problem(result)
    if problem:
        raise ValueError(f"refusing to write an invalid result.json: {problem}")
    atomic_write_json(rdir / RESULT_FILE, result)
    set_status(rdir, "completed")


@dataclass
class StoredRun:
    """One completed run as read from its result.json, with its per-epoch log."""

    path: Path
    data: dict
    curves: list[dict] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return str(self.data["run_id"])

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            line = line.strip()
            if line:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    warnings.warn(f"{path}: skipping a malformed line", stacklevel=3)
    return rows


def load_runs(results_dir: Path) -> tuple[list[StoredRun], list[dict]]:
    """All completed runs under results_dir/runs (sorted by run id) and the result files skipped (with why)."""
    runs, skipped = [], []
    for path in sorted((Path(results_dir) / "runs").glob(f"**/{RESULT_FILE}")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            data, problem = None, f"unreadable: {e}"
        else:
            problem = result_problem(data)
        if problem:
            skipped.append({"path": str(path), "reason": problem})
            warnings.warn(f"{path}: {problem}, skipped", stacklevel=2)
            continue
        log_name = (data.get("artifacts") or {}).get("metrics_log") or "metrics.jsonl"
        runs.append(StoredRun(path=path, data=data, curves=read_jsonl(path.parent / log_name)))
    ids = [r.run_id for r in runs]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        warnings.warn(f"run ids found more than once (all kept): {sorted(dup)}", stacklevel=2)
    return sorted(runs, key=lambda r: (r.run_id, str(r.path))), skipped


def check_same_data(recorded: str | None, current: str | None, path: Path, rdir: Path, dataset: str) -> None:
    """A result or checkpoint is reused only for the data it was computed on: the same spec is not enough
    when the data behind it changed (a regenerated `synthetic` variant, an edited split file)."""
    if recorded is None or current is None or recorded == current:
        return
    raise BenchError(f"{path}: computed on other data than {dataset} resolves to now (manifest {recorded[:12]} vs "
                     f"{current[:12]}); move {rdir} away to run again")


def completed_result(rdir: Path, dataset: str, current_checksum: Callable[[], str | None]) -> dict | None:
    """The run's result when it completed on the data the spec resolves to now, else None. A result computed on
    other data stops with a one-line error. `current_checksum` is called only when a result exists (it may
    walk the dataset), and returns None when the data is not on this machine (the result then stands)."""
    path = rdir / RESULT_FILE
    if not path.is_file():
        return None
    done = json.loads(path.read_text())
    recorded = (done.get("env") or {}).get("manifest_sha256")
    if recorded is not None:
        check_same_data(recorded, current_checksum(), path, rdir, dataset)
    return done
