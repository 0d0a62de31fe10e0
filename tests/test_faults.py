"""Faults a user meets on a shared machine, made for real: a read-only results directory (a read-only bind mount: the
suite runs as root, whom permission bits do not stop), a full disk (a 600 KiB tmpfs filled by a file), and the same
run started twice (two `bench run` processes of one spec through the installed script). Where the command must fail
it exits non-zero with one line and no traceback, nothing already computed is lost, and a later run resumes. The same
for `bench report --out` on a read-only or full target, and for `bench sweep` and a held run."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from bench.errors import LockHeldError
from bench.lock import LOCK_FILE, STALE_AFTER_S, RunLock
from bench.spec import resolve_spec
from bench.store import run_dir
from tests.conftest import BENCH_SCRIPT, THREADS, TINY_SYNTHETIC, bench_cli

# one epoch of the smallest synthetic variant (the read-only case: it must stop before any of it)
QUICK = ["run", "-m", "test_tiny", "-d", "synthetic", "--fold", "1", "--epochs", "1", "--workers", "0",
         "--no-progress", "--no-latency", *TINY_SYNTHETIC]
# test_tiny at width 128 on 48² clips: ~1 s epochs and a ~150 KiB last.pt, which a 600 KiB tmpfs holds twice
LONG = ["run", "-m", "test_tiny", "-d", "synthetic", "--fold", "1", "--epochs", "5", "--batch-size", "4",
        "--workers", "0", "--no-latency", "--no-progress", "--set", "data.options.clips_per_class=8",
        "--set", "data.options.folds=2", "--set", "data.options.resolution=48", "--set", "data.size=48",
        "--set", "data.frames=8", "--set", "model.kwargs.width=128"]


def _env(data_home: Path) -> dict:
    return {**os.environ, "DFER_DATA_HOME": str(data_home), "OMP_NUM_THREADS": str(THREADS), "PYTHONUNBUFFERED": "1",
            "COLUMNS": "200"}


BENCH = [str(BENCH_SCRIPT)] if BENCH_SCRIPT.is_file() else [sys.executable, "-m", "bench.cli"]  # the installed script


def _one_line_error(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _fill(fs: Path, leave: int) -> Path:
    """Write a file until only `leave` bytes are free on `fs` (zeros take real pages on tmpfs)."""
    filler = fs / "filler"
    todo = shutil.disk_usage(fs).free - leave
    chunk = b"\0" * 65536
    with open(filler, "wb") as f:
        try:
            while todo > 0:
                todo -= f.write(chunk[: min(len(chunk), todo)])
            f.flush()
        except OSError:  # full before `leave` was reached (page rounding): full is what is wanted
            pass
    return filler


@pytest.fixture
def mounts():
    """`mounts.read_only(src, target)` and `mounts.tmpfs(target, size)`, undone at teardown. Without the right to
    mount the test skips with the reason; under CI it fails: these faults must be tested for real there."""

    done: list[Path] = []

    def mount(args: list[str], target: Path) -> None:
        proc = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
        if proc.returncode:
            why = f"cannot mount ({' '.join(args)} {target}): {proc.stderr.strip()}; needs root or CAP_SYS_ADMIN"
            if os.environ.get("CI"):
                pytest.fail(why)
            pytest.skip(why)
        done.append(target)

    class Mounts:
        @staticmethod
        def read_only(src: Path, target: Path) -> None:
            mount(["--bind", str(src)], target)
            mount(["-o", "remount,ro,bind"], target)
            with pytest.raises(OSError, match="Read-only"):  # the fault is real: root cannot write there either
                (target / "probe").write_text("x")

        @staticmethod
        def tmpfs(target: Path, size: str) -> None:
            mount(["-t", "tmpfs", "-o", f"size={size}", "tmpfs"], target)

    yield Mounts
    for target in reversed(done):
        if subprocess.run(["umount", str(target)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(target)], capture_output=True)


def _wait_for(pred, proc: subprocess.Popen, what: str, timeout: float = 600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = pred()
        if got:
            return got
        assert proc.poll() is None, f"the run ended before {what}: {proc.communicate()}"
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _epoch_logged(results: Path, evaluated: bool):
    """The metrics.jsonl of the run under `results` once it has an epoch (evaluated or not), else None."""
    for log in (results / "runs").rglob("metrics.jsonl") if (results / "runs").exists() else ():
        lines = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
        if lines and (not evaluated or "eval" in lines[0]):
            return log
    return None


# ---------------------------------------------------------------------------------------------- read-only results
@pytest.mark.slow
def test_a_read_only_results_dir_stops_the_run_with_one_line_before_any_work(tmp_path, data_home, mounts):
    results, ro = tmp_path / "results", tmp_path / "ro"
    results.mkdir()
    ro.mkdir()
    mounts.read_only(results, ro)
    env = {"DFER_DATA_HOME": str(data_home)}

    proc = bench_cli([*QUICK, "--results", str(ro)], tmp_path, env)
    line = _one_line_error(proc)
    assert f"{ro}: read-only file system" in line and "pass --results DIR on a writable disk" in line, line
    assert "fold 1:" not in proc.stderr and "epoch" not in proc.stderr  # stopped before data, model or training
    assert not list(results.iterdir())

    # the same run on the writable path completes; the read-only view of it then serves the completed run
    bench_cli([*QUICK, "--results", str(results)], tmp_path, env, check=True)
    again = bench_cli([*QUICK, "--results", str(ro)], tmp_path, env)
    assert again.returncode == 0 and "already completed" in again.stderr, again.stderr


# ---------------------------------------------------------------------------------------------- full disk
@pytest.mark.slow
def test_a_full_disk_stops_the_run_with_one_line_and_it_resumes_once_there_is_room(tmp_path, data_home, mounts):
    full = tmp_path / "full"
    full.mkdir()
    mounts.tmpfs(full, "600k")
    cmd = [*BENCH, *LONG, "--results", str(full)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(data_home), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    log = _wait_for(lambda: _epoch_logged(full, evaluated=True), proc, "epoch 1 was evaluated")
    rdir = log.parent
    filler = _fill(full, leave=64 * 1024)  # the small files still fit; the next ~150 KiB checkpoint does not
    out, err = proc.communicate(timeout=600)
    line = _one_line_error(subprocess.CompletedProcess(cmd, proc.returncode, out, err))
    assert "no space left on device" in line and str(full) in line and "run the same command again" in line, line
    saved = int(re.search(r"it resumes after epoch (\d+), which is saved", line).group(1))

    # nothing computed is lost: the last checkpoint is whole and is the epoch the line names; no half-written file
    ck = torch.load(rdir / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert ck["epoch"] == saved >= 1
    assert (rdir / "status").read_text().strip() == "failed"
    assert "DiskFullError" in (rdir / "error.txt").read_text()  # the traceback, for a bug report
    assert not (rdir / "result.json").exists()
    assert not [p for p in full.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".write-probe")]
    assert not (rdir / LOCK_FILE).exists()

    filler.unlink()
    again = subprocess.run(cmd, cwd=tmp_path, env=_env(data_home), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming after epoch {saved}" in again.stderr
    result = json.loads((rdir / "result.json").read_text())
    assert result["status"] == "completed" and len((rdir / "metrics.jsonl").read_text().splitlines()) == 5


# ---------------------------------------------------------------------------------------------- the same run twice
@pytest.mark.slow
def test_the_same_run_started_twice_trains_once_and_the_second_start_names_the_holder(tmp_path, data_home):
    results = tmp_path / "results"
    cmd = [*BENCH, *LONG, "--results", str(results)]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=_env(data_home), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, LockHeldError.exit_code], (codes, [o[1][-2000:] for o in outs])
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    refused = subprocess.CompletedProcess(cmd, codes[loser], *outs[loser])
    line = _one_line_error(refused, code=LockHeldError.exit_code)
    assert f"already being computed by pid {procs[winner].pid} on {socket.gethostname()}" in line, line
    assert "bench run -m test_tiny" in line and "not starting it twice" in line
    assert "epoch 1:" not in refused.stderr and "epoch 1:" in outs[winner][1]  # trained once

    (result,) = list((results / "runs").rglob("result.json"))
    assert not [p.name for p in result.parent.iterdir() if p.name.startswith(LOCK_FILE)]  # released, nothing stale
    later = subprocess.run(cmd, cwd=tmp_path, env=_env(data_home), capture_output=True, text=True, timeout=600)
    assert later.returncode == 0 and "already completed" in later.stderr


@pytest.mark.slow
def test_a_lock_left_by_a_killed_run_is_taken_over_and_the_run_resumes(tmp_path, data_home):
    results = tmp_path / "results"
    cmd = [*BENCH, *LONG, "--results", str(results)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(data_home), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    log = _wait_for(lambda: _epoch_logged(results, evaluated=False), proc, "epoch 1 was checkpointed")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    lock = json.loads((log.parent / LOCK_FILE).read_text())  # a crash leaves its lock behind
    assert lock["pid"] == proc.pid and lock["host"] == socket.gethostname()

    again = subprocess.run(cmd, cwd=tmp_path, env=_env(data_home), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"took over the stale lock of this run (pid {proc.pid} is not running on" in again.stderr
    assert re.search(r"resuming after epoch [1-5]", again.stderr)
    assert (log.parent / "result.json").is_file() and not (log.parent / LOCK_FILE).exists()


# ---------------------------------------------------------------------------------------------- the lock's rules
def _foreign_lock(rdir: Path, age_s: float, **fields) -> Path:
    rdir.mkdir(parents=True, exist_ok=True)
    path = rdir / LOCK_FILE
    path.write_text(json.dumps({"pid": 4242, "host": "node-elsewhere", "proc_start": "1", "user": "someone",
                                "started_at": "2026-12-01T10:00:00+00:00", "command": "bench run -m r3d18",
                                "slurm_job": None, "slurm_restart": None, **fields}))
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


def test_a_lock_on_another_host_holds_until_its_heartbeat_is_stale(tmp_path):
    path = _foreign_lock(tmp_path / "run", age_s=30)
    with pytest.raises(LockHeldError, match="pid 4242 on node-elsewhere .*stale after 10 min"):
        RunLock(tmp_path / "run").acquire()
    _foreign_lock(tmp_path / "run", age_s=STALE_AFTER_S + 60)
    with RunLock(tmp_path / "run") as lock:
        assert lock.took_over.startswith("no heartbeat from node-elsewhere for 11 min")
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists()


def test_the_heartbeat_outlives_a_passing_file_system_error_and_stops_when_the_lock_is_gone(tmp_path, monkeypatch):
    """An EIO from the lock's file system (an NFS hiccup) skips one beat, not all later ones: the lock's mtime
    keeps moving, so other hosts do not take over a run that still computes; a lock moved away ends the beat."""
    import errno

    import bench.lock as lock_module

    monkeypatch.setattr(lock_module, "HEARTBEAT_S", 0.02)
    real_utime, calls = os.utime, []

    def flaky_utime(path, *args, **kwargs):
        calls.append(path)
        if len(calls) <= 2:
            raise OSError(errno.EIO, "Input/output error")
        return real_utime(path, *args, **kwargs)

    monkeypatch.setattr(lock_module.os, "utime", flaky_utime)
    with RunLock(tmp_path / "run") as lock:
        real_utime(lock.path, (1.0, 1.0))  # as if the last beat were long ago
        deadline = time.time() + 10
        while lock.path.stat().st_mtime < time.time() - 60 and time.time() < deadline:
            time.sleep(0.02)
        assert lock.path.stat().st_mtime > time.time() - 60 and len(calls) > 2
        lock.path.rename(tmp_path / "moved")  # taken over: the beat stops
        deadline = time.time() + 10
        while lock._beat.is_alive() and time.time() < deadline:
            time.sleep(0.02)
        assert not lock._beat.is_alive()


def test_a_requeued_slurm_job_takes_over_its_earlier_start(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    _foreign_lock(tmp_path / "run", age_s=5, slurm_job="77", slurm_restart="0")
    with RunLock(tmp_path / "run") as lock:
        assert "earlier start of this SLURM job 77" in lock.took_over
    _foreign_lock(tmp_path / "run", age_s=5, slurm_job="78", slurm_restart="0")  # another job: held
    with pytest.raises(LockHeldError, match="SLURM job 78"):
        RunLock(tmp_path / "run").acquire()


def test_processes_racing_for_a_stale_lock_have_one_winner(tmp_path):
    """Several processes find the lock of a dead pid at the same moment: exactly one takes it over."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    rdir = tmp_path / "run"
    rdir.mkdir()
    (rdir / LOCK_FILE).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "proc_start": "1"}))
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from bench.errors import LockHeldError
        from bench.lock import RunLock
        d = Path({str(tmp_path)!r})
        (d / f"ready{{sys.argv[1]}}").touch()
        while not (d / "go").exists():
            time.sleep(0.001)
        try:
            lock = RunLock(d / "run").acquire()
        except LockHeldError:
            print("held"); sys.exit(0)
        print("won", flush=True)
        while not (d / "stop").exists():
            time.sleep(0.01)
        lock.release()
    """)
    n = 4
    procs = [subprocess.Popen([sys.executable, "-c", script, str(i)], stdout=subprocess.PIPE, text=True)
             for i in range(n)]
    deadline = time.time() + 120
    while len(list(tmp_path.glob("ready*"))) < n and time.time() < deadline:
        time.sleep(0.01)
    (tmp_path / "go").touch()
    outs = {}
    deadline = time.time() + 120
    while len(outs) < n - 1 and time.time() < deadline:  # the losers end; the winner waits for "stop"
        for p in procs:
            if p not in outs and p.poll() is not None:
                outs[p] = p.stdout.read().strip()
        time.sleep(0.01)
    (tmp_path / "stop").touch()
    for p in procs:
        if p not in outs:
            outs[p] = p.communicate(timeout=60)[0].strip()
    assert sorted(outs.values()) == ["held"] * (n - 1) + ["won"], outs
    assert not list(rdir.iterdir())  # the winner released; no stale copies left aside


def test_files_written_atomically_get_the_mode_of_a_plain_open(tmp_path):
    """mkstemp makes 0600 files; a result on a shared machine must be readable as the umask allows (a colleague's
    `bench report` reads it)."""
    from bench.store import atomic_write_text

    atomic_write_text(tmp_path / "result.json", "{}")
    (tmp_path / "plain.json").write_text("{}")
    mode = (tmp_path / "result.json").stat().st_mode & 0o777
    assert mode == (tmp_path / "plain.json").stat().st_mode & 0o777  # 0644 under the usual umask, not 0600


# ---------------------------------------------------------------------------------------------- sweeps
SWEEP = ["sweep", "--methods", "test_tiny", "--datasets", "synthetic", "--folds", "1", "--epochs", "1",
         *TINY_SYNTHETIC]


@pytest.mark.slow
def test_a_sweep_skips_a_held_run_and_names_its_holder(tmp_path, data_home):
    results = tmp_path / "results"
    spec = resolve_spec("test_tiny", "synthetic", fold=1, seed=0, flags={"train": {"epochs": 1}},
                        sets=TINY_SYNTHETIC[1::2])
    env = {"DFER_DATA_HOME": str(data_home)}
    with RunLock(run_dir(results, spec)):  # this test process holds the run, as a `bench run` in another shell
        proc = bench_cli([*SWEEP, "--backend", "local", "--results", str(results)], tmp_path, env, check=True)
        assert f"held by pid {os.getpid()} on {socket.gethostname()}" in proc.stdout, proc.stdout
        assert "1 being computed by another process" in proc.stdout and "started" not in proc.stdout
        status = bench_cli([*SWEEP, "--status", "--results", str(results)], tmp_path, env, check=True)
        assert "running" in status.stdout and f"pid {os.getpid()}" in status.stdout, status.stdout
    assert not list(results.rglob("result.json"))


@pytest.mark.slow
def test_a_sweep_into_a_read_only_results_dir_is_one_line(tmp_path, data_home, mounts):
    results, ro = tmp_path / "results", tmp_path / "ro"
    results.mkdir()
    ro.mkdir()
    mounts.read_only(results, ro)
    proc = bench_cli([*SWEEP, "--backend", "local", "--results", str(ro)], tmp_path, {"DFER_DATA_HOME": str(data_home)})
    line = _one_line_error(proc)
    assert f"{ro}: read-only file system" in line and "--results" in line, line


# ---------------------------------------------------------------------------------------------- bench report --out
def _main(args: list[str], capsys, monkeypatch) -> subprocess.CompletedProcess:
    """The console entry point in this process: the code path of the `bench` script without its start-up cost."""
    from bench.cli import main

    monkeypatch.setattr(sys, "argv", ["bench", *args])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


@pytest.fixture
def report_results(tmp_path) -> Path:
    from tests.test_report import DFEW_CLASSES, _write_run

    root = tmp_path / "results"
    for fold in (1, 2):
        _write_run(root, "r3d18", "dfew", fold, 0, DFEW_CLASSES, acc=0.5)
    return root


@pytest.mark.slow
def test_report_to_a_read_only_out_is_one_line_and_keeps_the_report_there(tmp_path, report_results, mounts, capsys,
                                                                           monkeypatch):
    out = tmp_path / "reports"
    args = ["report", "--results", str(report_results), "--out", str(out), "--no-plots"]
    assert _main(args, capsys, monkeypatch).returncode == 0
    before = _snapshot(out)
    assert "tables/dfew.md" in before
    mounts.read_only(out, out)
    line = _one_line_error(_main(args, capsys, monkeypatch))
    assert f"{out}: read-only file system" in line and "pass --out DIR on a writable disk" in line, line
    assert _snapshot(out) == before


@pytest.mark.slow
def test_report_on_a_full_disk_is_one_line_and_leaves_no_half_written_file(tmp_path, report_results, mounts, capsys,
                                                                           monkeypatch):
    full = tmp_path / "full"
    full.mkdir()
    mounts.tmpfs(full, "4m")  # the report with its site (the Vega runtime alone is ~1 MB), then filled to the brim
    out = full / "reports"
    args = ["report", "--results", str(report_results), "--out", str(out)]
    assert _main(args, capsys, monkeypatch).returncode == 0  # with plots: PNGs go through the same atomic path
    before = _snapshot(out)
    assert "manifest.json" in before and any(k.endswith(".png") for k in before)
    filler = _fill(full, leave=0)
    line = _one_line_error(_main(args, capsys, monkeypatch))
    assert "no space left on device" in line and str(out) in line, line
    assert _snapshot(out) == before  # every file is the good one it was; no temp file left beside them
    filler.unlink()
    assert _main(args, capsys, monkeypatch).returncode == 0
    assert json.loads((out / "manifest.json").read_text())["run_ids"] == json.loads(before["manifest.json"])["run_ids"]
