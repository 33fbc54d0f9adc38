"""Who is running something (a study trial, a training run), and whether they still are: leases,
heartbeats, parent watch.

A worker writes a lease (host, pid, process start time, last beat) into the trial it runs
and refreshes it every HEARTBEAT_S. Another worker treats the trial as abandoned when the
lease names a process on its own host that no longer exists (kill -9: noticed at once),
or when the last beat is older than STALE_AFTER_S (a machine that went away).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

HEARTBEAT_S = 10.0
STALE_AFTER_S = 120.0


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()[:8]
    except OSError:
        return ""


HOST = f"{socket.gethostname()}:{_boot_id()}"


def process_start(pid: int) -> str | None:
    """The kernel's start time of a process (tells a reused pid apart), where /proc exists."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


def process_alive(pid: int, start: str | None) -> bool:
    """Whether the process that wrote a lease on this host still exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if start is not None:
        now = process_start(pid)
        if now is not None and now != start:
            return False  # the pid was reused by another process
        if now is None and os.path.isdir("/proc"):
            return False
    # A zombie (killed, not yet reaped by its parent) runs nothing.
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
    except OSError:
        pass
    return True


_START = process_start(os.getpid())


def _forked() -> None:
    """A forked child (studies/forked.py) is another process: its leases carry its own start time."""
    global _START
    _START = process_start(os.getpid())


os.register_at_fork(after_in_child=_forked)


def new_lease() -> dict[str, Any]:
    """A lease for this process, beating now."""
    return {"host": HOST, "pid": os.getpid(), "start": _START, "beat": time.time()}


def stale_reason(lease: dict[str, Any] | None, started: datetime | None, now: float | None = None) -> str | None:
    """Why a RUNNING trial's worker is gone, or None while it may still be alive."""
    now = time.time() if now is None else now
    if not lease:
        if started is not None and now - started.timestamp() > STALE_AFTER_S:
            return f"no worker took it within {STALE_AFTER_S:.0f} s"
        return None
    if lease.get("host") == HOST and not process_alive(int(lease["pid"]), lease.get("start")):
        return f"its worker (pid {lease['pid']}) is gone"
    if now - float(lease.get("beat", 0)) > STALE_AFTER_S:
        return f"no heartbeat from {str(lease.get('host', '?')).split(':')[0]} for {now - float(lease.get('beat', 0)):.0f} s"
    return None


class Heartbeat:
    """Calls `beat()` every HEARTBEAT_S seconds in a daemon thread while the block runs."""

    def __init__(self, beat: Callable[[], None], interval: float = HEARTBEAT_S):
        self._beat, self._interval = beat, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="cnnlab-heartbeat")

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._beat()
            except Exception:  # a missed beat is harmless; the next one retries
                pass

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


PARENT_ENV = "CNNLAB_STUDY_PARENT"  # the pid of the study command, given to the workers it starts


def exit_with_parent(poll: float = 0.5) -> None:
    """In a worker process: exit at once when the parent dies (kill -9 of the study command).

    The parent is the pid the study command wrote into PARENT_ENV when it started us, not
    os.getppid() read now: a parent killed while this worker was still starting up (importing
    torch takes seconds on a loaded machine) has already left it to init, and getppid() would
    then name init as the parent to watch, forever."""
    parent = int(os.environ.get(PARENT_ENV) or os.getppid())

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(75)  # the parent is gone; its rerun takes this trial back
            time.sleep(poll)

    threading.Thread(target=watch, daemon=True, name="cnnlab-parent-watch").start()
