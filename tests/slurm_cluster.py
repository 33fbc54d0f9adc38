"""A real single-node Slurm cluster on loopback, for tests/test_study_slurm.py and bench/slurm_study.py.

Debian's munged, slurmctld and slurmd (`make slurm` installs them: slurmctld slurmd slurm-client
munge) run from a temporary folder with their own munge key, ports, state and spool, and are
stopped when the block ends. Two partitions: `debug`, this machine's one node (NodeName=localhost),
the default; `far`, one node `far1` that is declared for the future and never started, standing for
the other machines of a real cluster (the study's storage check must refuse a local disk for it).
far1 comes first in slurm.conf: while a cluster has one node and it is named localhost, Slurm's
node lookup answers every name with it, and far1 would clash with it.

Settings a container needs: process tracking by /proc (no cgroups: proctrack/linuxproc, task/none,
jobacct_gather/none), no accounting database. Two settings keep the test fast: Slurm holds a
requeued job back for the credential lifetime plus one second (AuthInfo cred_expire, 120 s by
default; 5 s here), and its main scheduler passes over pending jobs every 60 s by default
(sched_interval=1 here).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel")
INSTALL = "apt-get install -y slurmctld slurmd slurm-client munge (`make slurm` does, as root)"


def missing() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]


def _binary(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(root: Path, cpus: int) -> str:
    user = pwd.getpwuid(os.geteuid()).pw_name
    return f"""\
ClusterName=cnnlabtest
SlurmctldHost=localhost
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/run/munge.socket,cred_expire=5
SlurmUser={user}
SlurmdUser={user}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
ReturnToService=2
KillWait=15
MinJobAge=300
NodeName=far1 CPUs=1 State=FUTURE
NodeName=localhost CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=far Nodes=far1 MaxTime=INFINITE State=UP
"""


def _log_tail(root: Path) -> str:
    parts = []
    for log in sorted((root / "log").glob("*")):
        lines = log.read_text(errors="replace").splitlines()[-15:]
        parts.append(f"--- {log.name}\n" + "\n".join(lines))
    return "\n".join(parts)


@contextlib.contextmanager
def cluster(cpus: int = 2) -> Iterator[dict[str, str]]:
    """Start munged, slurmctld and slurmd; yield the environment that points Slurm's commands at
    them (SLURM_CONF); cancel every job and stop the daemons afterwards."""
    root = Path(tempfile.mkdtemp(prefix="cnnlab-slurm-"))
    root.chmod(0o755)  # munged wants its socket's folders searchable by everyone
    for sub, mode in (("key", 0o700), ("run", 0o755), ("state", 0o755), ("spool", 0o755), ("log", 0o755)):
        (root / sub).mkdir(mode=mode)
    key = root / "key" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = root / "slurm.conf"
    conf.write_text(_config(root, max(1, min(cpus, os.cpu_count() or 1))))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    daemons: list[subprocess.Popen] = []
    try:
        daemons.append(subprocess.Popen([_binary("munged"), "--foreground", f"--socket={root}/run/munge.socket",
                                         f"--key-file={key}", f"--log-file={root}/log/munged.log",
                                         f"--pid-file={root}/run/munged.pid", f"--seed-file={root}/key/munged.seed"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        while not (root / "run" / "munge.socket").exists() and daemons[0].poll() is None:
            time.sleep(0.05)
        for daemon in ("slurmctld", "slurmd"):
            with (root / "log" / f"{daemon}.out").open("w") as out:
                daemons.append(subprocess.Popen([_binary(daemon), "-D", "-f", str(conf)], env=env,
                                                stdout=out, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 60
        state = ""
        while time.monotonic() < deadline:
            if any(d.poll() is not None for d in daemons):
                raise RuntimeError("a Slurm daemon exited at start:\n" + _log_tail(root))
            done = subprocess.run(["sinfo", "--noheader", "--partition=debug", "--format=%T"], env=env,
                                  capture_output=True, text=True, timeout=30)
            state = done.stdout.strip()
            if state == "idle":
                break
            time.sleep(0.3)
        else:
            raise RuntimeError(f"the Slurm node is not idle after 60 s (sinfo: {state!r}):\n" + _log_tail(root))
        yield {"SLURM_CONF": str(conf)}
    finally:
        _stop(root, env, daemons)


def _stop(root: Path, env: dict[str, str], daemons: list[subprocess.Popen]) -> None:
    """Cancel every job (its workers save their runs), give them a moment, stop the daemons."""
    if len(daemons) == 3 and all(d.poll() is None for d in daemons):
        subprocess.run(["scancel", f"--user={pwd.getpwuid(os.geteuid()).pw_name}"], env=env,
                       capture_output=True, timeout=30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            left = subprocess.run(["squeue", "--noheader"], env=env, capture_output=True, text=True, timeout=30)
            if left.returncode != 0 or not left.stdout.strip():
                break
            time.sleep(0.3)
    for d in reversed(daemons):  # slurmd, slurmctld, then munged
        d.terminate()
        try:
            d.wait(timeout=15)
        except subprocess.TimeoutExpired:
            d.kill()
            d.wait()
    shutil.rmtree(root, ignore_errors=True)
