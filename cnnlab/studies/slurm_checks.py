"""What would make a study's Slurm jobs fail or lose work, refused in one line before anything is
submitted or written:

- sbatch must be on PATH (the command runs where Slurm's commands work: a login node);
- every node of the partition must reach the study folder (its runs, checkpoints, logs and, by
  default, the journal file that holds the study's state): a folder on this machine's local disk
  is refused when the partition has nodes other than this machine; a database URL must name a
  server the nodes can reach (not this machine's loopback);
- --time must leave a worker time to start and to stop (it is asked to stop STOP_BEFORE_S
  before the limit), and --gpus-per-worker is 0 or 1 (a worker trains one run at a time, on one GPU).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from pathlib import Path

from cnnlab.errors import UserError

STOP_BEFORE_S = 60  # the worker's warning before the time limit: `#SBATCH --signal=B:USR1@60`
MIN_TIME_MIN = 5  # shorter limits leave a requeued worker too little time to get anywhere
# File systems that live on one machine's own disk or memory. Anything else (nfs, nfs4, lustre,
# gpfs, beegfs, cephfs, fuse.*, cifs, ...) is taken as reachable from the nodes.
LOCAL_FS = {"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "ramfs", "overlay", "zfs", "f2fs", "vfat",
            "exfat", "ntfs", "ntfs3", "jfs", "reiserfs", "bcachefs", "squashfs", "devtmpfs"}


def require_sbatch() -> str:
    path = shutil.which("sbatch")
    if path is None:
        raise UserError("--slurm: sbatch is not on PATH; run the command where Slurm's commands work (a login "
                        "node; Debian: apt-get install slurm-client), or leave out --slurm to run the study here")
    return path


def time_minutes(text: str) -> float | None:
    """Slurm's --time formats (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S) in minutes; None for unlimited."""
    t = text.strip().lower()
    if t in ("unlimited", "infinite"):
        return None
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", t)
    if m is None:
        raise UserError(f"--time {text!r}: not a Slurm time; use minutes (90), H:M:S (1:30:00) or D-H:M:S (2-00:00:00)")
    days, a, b, c = (int(g) if g is not None else None for g in m.groups())
    if days is None:
        if b is None:
            return float(a)  # M
        if c is None:
            return a + b / 60  # M:S
        return a * 60 + b + c / 60  # H:M:S
    return days * 1440 + a * 60 + (b or 0) + (c or 0) / 60  # D-H[:M[:S]]


def check_time(text: str | None) -> None:
    minutes = time_minutes(text) if text is not None else None
    if minutes is not None and minutes < MIN_TIME_MIN:
        raise UserError(f"--time {text}: a worker is asked to stop {STOP_BEFORE_S} s before its limit and needs time "
                        f"to start; give at least {MIN_TIME_MIN} minutes (a run longer than the limit is requeued "
                        "and resumed, so the limit need not cover a whole run)")


def check_gpus(gpus: int) -> None:
    if gpus > 1:
        raise UserError(f"--gpus-per-worker {gpus}: a study worker trains one run at a time on one GPU, so the "
                        "others would sit idle; use --gpus-per-worker 1 and more --workers")


def file_system(path: Path) -> tuple[str, str]:
    """(type, mount point) of the file system that holds `path` (or would: the nearest existing
    folder above it), from /proc/self/mountinfo; ("", "") where that cannot be read."""
    probe = Path(path).expanduser().absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    target = str(probe.resolve())
    best = ("", "")
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return best
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) < 5 or not rest:
            continue
        mount = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])  # "\040" is a space
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best[1]):  # the deepest mount wins (later ones over earlier)
            best = (rest[0], mount)
    return best


def this_machine(node: str) -> bool:
    host = socket.gethostname()
    return node in ("localhost", host, host.split(".")[0], socket.getfqdn())


def _scontrol(*args: str) -> str:
    try:
        done = subprocess.run(["scontrol", *args], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise UserError("--slurm: scontrol is not on PATH beside sbatch; install Slurm's client commands") from None
    except subprocess.TimeoutExpired:
        raise UserError("--slurm: scontrol did not answer within 60 s; is slurmctld up? (`sinfo` says)") from None
    if done.returncode != 0:
        msg = (done.stderr or done.stdout).strip().splitlines()
        raise UserError(f"--slurm: scontrol {' '.join(args)}: {msg[0] if msg else f'exit code {done.returncode}'}")
    return done.stdout


def partition_nodes(partition: str | None) -> tuple[str, list[str]]:
    """The partition the jobs go to (the cluster's default without --partition) and its nodes."""
    try:
        text = _scontrol("show", "partition", "--oneliner", *([partition] if partition else []))
    except UserError as e:
        if partition is not None and "not found" in str(e).lower():
            raise UserError(f"--partition {partition}: no such partition; `sinfo` lists them") from None
        raise
    for line in text.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if fields.get("PartitionName") == partition or (partition is None and fields.get("Default") == "YES"):
            nodes = fields.get("Nodes", "")
            if nodes in ("", "(null)"):
                return fields["PartitionName"], []
            if nodes == "ALL":
                listed = _scontrol("show", "node", "--oneliner")
                return fields["PartitionName"], re.findall(r"^NodeName=(\S+)", listed, flags=re.M)
            return fields["PartitionName"], _scontrol("show", "hostnames", nodes).split()
    raise UserError("--slurm: the cluster has no default partition; name one with --partition (`sinfo` lists them)")


def check_reachable(storage: str | None, folder: Path, partition: str, nodes: list[str]) -> None:
    """Refuse a study the partition's nodes cannot reach (see the module's docstring)."""
    others = [n for n in nodes if not this_machine(n)]
    if not others:
        return  # a cluster of this machine alone: its disk is every node's disk
    shown = ", ".join(others[:4]) + (f" and {len(others) - 4} more" if len(others) > 4 else "")
    if storage and "://" in storage and not storage.startswith("sqlite"):
        from sqlalchemy.engine import make_url

        try:
            host = make_url(storage).host
        except Exception:
            host = "?"  # a malformed URL: make_storage says what is wrong with it
        if not host or host == "localhost" or host.startswith("127.") or host == "::1":
            raise UserError(f"--storage: {host or 'a local socket'} is each node's own machine, not this one; "
                            f"give the database server's hostname, e.g. postgresql://user@{socket.gethostname()}/db")
    kind, mount = file_system(folder)
    if kind in LOCAL_FS:
        raise UserError(
            f"--slurm: the study folder {folder} is on this machine's local {kind} file system ({mount}), which "
            f"the nodes of partition {partition} ({shown}) cannot read; set out_dir: in the study file to a folder "
            "on a file system they share (NFS, Lustre, ...); the workers write their runs, logs and the journal there")
    if storage and (storage.startswith("sqlite") or "://" not in storage):  # a journal or SQLite file elsewhere
        path = Path(storage.split(":///", 1)[1] if storage.startswith("sqlite") else storage)
        kind, mount = file_system(path)
        if kind in LOCAL_FS:
            raise UserError(f"--storage {storage}: the state is on this machine's local {kind} file system "
                            f"({mount}), which the nodes of partition {partition} ({shown}) cannot read; put it "
                            "on a shared file system or use --storage postgresql://user@host/db")
