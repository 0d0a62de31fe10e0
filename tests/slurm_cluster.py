"""A real single-node SLURM for the `slurm`-marked tests: munge, slurmctld and slurmd from Debian's packages,
configured in a temporary folder (own ports, state and spool dirs), started once per test session and stopped
after it. Installed with apt-get where missing. Skipped with the reason where the machine cannot run it, except
under CI, where that is a failure."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"SLURM tests cannot run in CI: {reason}")
    pytest.skip(f"no single-node SLURM here: {reason}")


def _ensure_installed() -> None:
    if all(shutil.which(d) for d in DAEMONS):
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        _unavailable("slurmctld/slurmd/munged are not installed and apt-get cannot run as root here")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "slurm-wlm", "munge"]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode:
            _unavailable(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-300:]}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    conf: Path
    logs: Path
    pids: list[int]

    def tails(self, lines: int = 30) -> str:
        out = []
        for name in ("slurmctld.log", "slurmd.log"):
            p = self.logs / name
            text = p.read_text(errors="replace").splitlines()[-lines:] if p.is_file() else ["(no log)"]
            out.append(f"--- {p} (last {lines} lines) ---\n" + "\n".join(text))
        return "\n".join(out)

    def scontrol(self, *args: str) -> str:
        proc = subprocess.run(["scontrol", *args], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr + "\n" + self.tails()
        return proc.stdout


def _write_conf(base: Path, node: str, cpus: int) -> Path:
    for d in ("state", "spool", "log", "run"):
        (base / d).mkdir(parents=True, exist_ok=True)
    conf = base / "slurm.conf"
    conf.write_text(f"""ClusterName=benchtest
SlurmctldHost={node}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
# schedule pending and requeued jobs within a second (defaults 60 s / 30 s); SIGKILL 2 s after a cancel's SIGTERM
SchedulerParameters=sched_interval=1,bf_interval=1
KillWait=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
StateSaveLocation={base}/state
SlurmdSpoolDir={base}/spool
SlurmctldPidFile={base}/run/slurmctld.pid
SlurmdPidFile={base}/run/slurmd.pid
SlurmctldLogFile={base}/log/slurmctld.log
SlurmdLogFile={base}/log/slurmd.log
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
NodeName={node} CPUs={cpus} RealMemory=4000 State=UNKNOWN
PartitionName=cpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
    return conf


def start_cluster(base: Path) -> Cluster:
    _ensure_installed()
    if os.geteuid() != 0:
        _unavailable("the daemons run as root in this single-node set-up")
    node = socket.gethostname().split(".")[0]
    conf = _write_conf(base, node, os.cpu_count() or 2)
    os.environ["SLURM_CONF"] = str(conf)  # every sbatch/squeue/scontrol of the tests (and submitit) reads it
    pids = []
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode:
        for d in ("/run/munge", "/var/lib/munge", "/var/log/munge"):
            Path(d).mkdir(parents=True, exist_ok=True)
        if not Path("/etc/munge/munge.key").is_file():
            subprocess.run(["mungekey", "--create"], check=False, capture_output=True)
        subprocess.run(["munged", "--force"], capture_output=True, timeout=30)
    for daemon in ("slurmctld", "slurmd"):
        proc = subprocess.run([daemon, "-f", str(conf)], capture_output=True, text=True, timeout=60)
        if proc.returncode:
            _unavailable(f"{daemon} did not start: {proc.stderr.strip()[-300:]}")
    cluster = Cluster(conf, base / "log", pids)
    deadline = time.time() + 60
    while time.time() < deadline:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip() in ("idle", "mix", "alloc"):
            return cluster
        time.sleep(0.5)
    stop_cluster(cluster)
    _unavailable("the node did not become idle in 60 s\n" + cluster.tails())
    raise AssertionError  # unreachable


def stop_cluster(cluster: Cluster) -> None:
    subprocess.run(["scancel", "--full", "-u", "root"], capture_output=True, timeout=30)
    for name in ("slurmd.pid", "slurmctld.pid"):
        pid_file = cluster.conf.parent / "run" / name
        if pid_file.is_file():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().strip()), 15)
    os.environ.pop("SLURM_CONF", None)
