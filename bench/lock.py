"""One holder per run directory: `bench run` (and every sweep backend, which runs `bench run`) takes `<run dir>/lock`
before it trains, so the same command started twice never trains one spec into one directory twice.

Refuse, not wait: a second start exits at once (exit code 3) with one line naming the holder (pid, host, user, start
time, command). Waiting would hold a GPU or a SLURM allocation idle for the whole of the holder's run, and a user who
typed the command twice wants to hear so now; nothing is lost by refusing, because the same command run after the
holder ends skips the completed run (or resumes a failed one from its checkpoint). Sweeps skip a held run when they
plan, as they skip a queued SLURM job.

The lock file is created with O_CREAT|O_EXCL (atomic on a local disk and on NFSv3 or later) and holds JSON: pid, host,
the process's start time (/proc), start time, user, command and SLURM job id and restart count. Its mtime is a
heartbeat, touched every HEARTBEAT_S by a daemon thread. The lock is stale, and the next start takes it over with a
line saying so, when
- it names this host and its pid is not running (dead, a zombie, or reused by a process that started later);
- it names this SLURM job at an earlier restart count (a requeued job: SLURM runs one job id once at a time);
- it names another host and its heartbeat is older than STALE_AFTER_S (10 minutes: clock skew between nodes and NFS
  attribute caching of up to a minute never make a live holder look dead).
A lock whose holder died on another host therefore blocks that run for up to 10 minutes (the refusal says when it
goes stale, and which file to delete sooner). Taking over renames the stale file aside (atomic) and checks that what
moved is what was judged stale, so two starts that both find a stale lock cannot both take it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.errors import LockHeldError, StorageError

LOCK_FILE = "lock"
HEARTBEAT_S = 60.0
STALE_AFTER_S = 600.0
_UNWRITTEN_GRACE_S = 60.0  # a lock created but not yet filled in (its holder is between open and write)


def _storage_error(e: OSError, path: Path) -> StorageError | None:
    from bench.store import storage_error  # imported here: bench.store imports torch, a lock needs none of it

    return storage_error(e, path, "--results")


def _host() -> str:
    return socket.gethostname()


def _proc(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) of a local process from /proc, None when there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:  # no /proc (not Linux): all that is known is whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return ("?", "")
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[0], fields[19]


def _slurm() -> tuple[str | None, str | None]:
    job = os.environ.get("SLURM_JOB_ID")
    return job, (os.environ.get("SLURM_RESTART_COUNT", "0") if job else None)


def _program() -> str:
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    return "bench" if name in ("bench", "cli.py", "__main__.py") else name


def _me() -> dict:
    pid = os.getpid()
    proc = _proc(pid)
    job, restarts = _slurm()
    try:
        import getpass

        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return {"pid": pid, "host": _host(), "proc_start": proc[1] if proc else "", "user": user,
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([_program(), *sys.argv[1:]])[:300],
            "slurm_job": job, "slurm_restart": restarts}


def stale_reason(info: dict, age_s: float) -> str | None:
    """Why the holder recorded in a lock cannot be running any more; None when it may be. `age_s`: seconds since
    the lock's last heartbeat (its mtime)."""
    if not info:
        return f"unreadable lock, untouched for {age_s:.0f} s" if age_s > _UNWRITTEN_GRACE_S else None
    job, restarts = _slurm()
    if job and info.get("slurm_job") == job and info.get("slurm_restart") != restarts:
        return f"held by an earlier start of this SLURM job {job} (requeued)"
    if info.get("host") == _host():
        try:
            proc = _proc(int(info.get("pid", -1)))
        except (TypeError, ValueError):
            return f"no pid in the lock ({info.get('pid')!r})"
        if proc is None:
            return f"pid {info.get('pid')} is not running on {info.get('host')}"
        state, start = proc
        if state in ("Z", "X"):
            return f"pid {info.get('pid')} has exited"
        if info.get("proc_start") and start and start != info["proc_start"]:
            return f"pid {info.get('pid')} now belongs to another process"
        return None
    if age_s > STALE_AFTER_S:
        return f"no heartbeat from {info.get('host')} for {age_s / 60:.0f} min"
    return None


def _read(path: Path) -> tuple[str, float] | None:
    """(text, mtime) of a lock file, None when there is none."""
    try:
        mtime = path.stat().st_mtime
        return path.read_text(), mtime
    except FileNotFoundError:
        return None


def _parse(text: str) -> dict:
    try:
        info = json.loads(text)
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def describe(info: dict, age_s: float) -> str:
    """'pid 123 on host (user u, since ..., heartbeat 4 s ago, SLURM job 7)' for messages and `--status`."""
    if not info:
        return "an unknown process (its lock is being written, or unreadable)"
    extra = f", SLURM job {info['slurm_job']}" if info.get("slurm_job") else ""
    return (f"pid {info.get('pid')} on {info.get('host')} (user {info.get('user')}, since {info.get('started_at')}, "
            f"heartbeat {age_s:.0f} s ago{extra})")


def holder(rdir: Path) -> str | None:
    """Who holds the run directory now (a live, non-stale lock), for sweep plans and `--status`; None if no one."""
    found = _read(Path(rdir) / LOCK_FILE)
    if found is None:
        return None
    info, age = _parse(found[0]), max(0.0, time.time() - found[1])
    return None if stale_reason(info, age) else describe(info, age)


class RunLock:
    """The lock of one run directory. `acquire()` takes it or raises LockHeldError (one line naming the holder);
    `release()` removes it if it is still this process's. A context manager too."""

    def __init__(self, rdir: Path):
        self.rdir = Path(rdir)
        self.path = self.rdir / LOCK_FILE
        self.info: dict | None = None
        self.took_over: str | None = None  # why the lock found was stale, when one was taken over
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def acquire(self, tries: int = 5) -> RunLock:
        me = _me()
        text = json.dumps(me)
        for _ in range(tries):
            try:
                self.rdir.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                found = _read(self.path)
                for _ in range(20):  # created a moment ago and not written yet: give its holder time to fill it
                    if found is None or found[0]:
                        break
                    time.sleep(0.05)
                    found = _read(self.path)
                if found is None:  # released in between: try again
                    continue
                info, age = _parse(found[0]), max(0.0, time.time() - found[1])
                why = stale_reason(info, age)
                if why is None:
                    raise LockHeldError(self._held_message(info, age)) from None
                if self._break(found[0]):
                    self.took_over = f"{why}: {describe(info, age)}"
                continue
            except OSError as e:
                err = _storage_error(e, self.path)
                if err is None:
                    raise
                raise err from None
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:  # a full disk: no lock file left behind that names no one
                self.path.unlink(missing_ok=True)
                err = _storage_error(e, self.path)
                if err is None:
                    raise
                raise err from None
            self.info = me
            self._stop.clear()
            self._beat = threading.Thread(target=self._heartbeat, name="bench-run-lock", daemon=True)
            self._beat.start()
            return self
        raise LockHeldError(f"{self.path}: could not take the run's lock in {tries} tries (other processes keep taking "
                            "it); run the command again once they have ended")

    def _held_message(self, info: dict, age: float) -> str:
        when = "" if not info or info.get("host") == _host() else \
            f"; it counts as stale after {STALE_AFTER_S / 60:.0f} min without a heartbeat"
        return (f"{self.rdir}: this run is already being computed by {describe(info, age)}: `{info.get('command', '?')}`;"
                f" not starting it twice. Run the same command after that one ends (it then skips the completed run or "
                f"resumes it), or delete {self.path} if that process is gone{when}")

    def _break(self, seen: str) -> bool:
        """Move a stale lock aside; True when what moved is the lock judged stale (else it is put back)."""
        aside = self.path.with_name(f"{LOCK_FILE}.stale.{_host()}.{os.getpid()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False
        try:
            if aside.read_text() == seen:
                return True
            # a fresh lock taken between our read and the rename: give it back unless a newer one exists
            with contextlib.suppress(OSError):
                os.link(aside, self.path)
            return False
        finally:
            aside.unlink(missing_ok=True)

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except FileNotFoundError:  # taken over (moved aside) or deleted: nothing left to keep alive
                return
            except OSError:  # a passing error of a network file system: beat again next time, or the run
                continue     # would look stale to other hosts while it still computes

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
            self._beat = None
        if self.info is None:
            return
        found = _read(self.path)
        if found is not None and _parse(found[0]) == self.info:
            # read-only by now, or gone: a dead pid makes it stale for the next start anyway
            with contextlib.suppress(OSError):
                self.path.unlink()
        self.info = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
