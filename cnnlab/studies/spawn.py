"""The worker processes of a local study (`cnnlab study FILE --workers N`): workers 1..N-1, each
`cnnlab study FILE --worker`, with its share of the cores (and its GPU on a machine with several).

A worker process spends seconds importing torch and planning the study before its first run. When
the GPUs it gets are known without torch (CUDA_VISIBLE_DEVICES set, or a machine with no GPU
device), the study command starts its workers before it imports torch itself, gated: each one
prepares, then waits on its stdin for "go", sent once the command has checked the study and filled
its queue; a command that fails first closes their stdin and they exit without a word or a file.
Their start-up then overlaps the command's, where it used to follow it (bench/RESULTS.md, "Study
overhead"). This module imports neither torch nor the study's machinery.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cnnlab.lease import PARENT_ENV

GO = "go"


def default_threads(workers: int) -> int:
    """torch threads per worker on CPU: the cores split between the workers."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, cores // workers)


def gpus_known_without_torch() -> list[str] | None:
    """The GPUs workers are handed out (cnnlab.device.visible_gpus) when that is known without
    importing torch: the CUDA_VISIBLE_DEVICES mask, or none on a machine without an NVIDIA or AMD
    GPU device; None when only torch can tell."""
    names = os.environ.get("CUDA_VISIBLE_DEVICES")
    if names is not None:
        return [g.strip() for g in names.split(",") if g.strip()]
    if glob.glob("/dev/nvidia[0-9]*") or os.path.exists("/dev/kfd"):
        return None
    return []


def start(path: Path, overrides: list[str], storage: str | None, n: int, gpus: list[str],
          say: Callable[[str], None], gated: bool = False) -> list[subprocess.Popen]:
    """Workers 1..n-1; `gated`: each waits for open_gate() before it touches the study's storage."""
    import cnnlab

    env = dict(os.environ)
    # Workers import this very copy of cnnlab, whatever their working directory.
    root = str(Path(cnnlab.__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env[PARENT_ENV] = str(os.getpid())  # so a worker still starting up when we die notices (lease.py)
    cmd = [sys.executable, "-m", "cnnlab", "study", str(path), *overrides, "--worker",
           "--threads", str(default_threads(n))]
    if storage:
        cmd += ["--storage", storage]
    if gated:
        cmd += ["--gated"]
    if len(gpus) >= 2:  # worker 0, this process, keeps the first: "cuda" is the first visible GPU
        per = ", ".join(f"GPU {g}: {len(range(i, n, len(gpus)))}" for i, g in enumerate(gpus[:n]))
        say(f"{n} workers over {len(gpus)} GPUs, round-robin ({per})")
    procs = []
    for i in range(1, n):
        gpu = gpus[i % len(gpus)] if len(gpus) >= 2 else None  # as cnnlab.device.worker_gpu
        procs.append(subprocess.Popen(cmd + ["--worker-index", str(i)],
                                      env=env if gpu is None else {**env, "CUDA_VISIBLE_DEVICES": gpu},
                                      stdin=subprocess.PIPE if gated else None, text=gated or None))
    return procs


def open_gate(procs: list[subprocess.Popen]) -> None:
    """Let gated workers start on the queue."""
    _send(procs, GO + "\n")


def close_gate(procs: list[subprocess.Popen], timeout: float = 10.0) -> None:
    """Gated workers still waiting (the command failed before it let them go): end them, quietly."""
    waiting = [p for p in procs if p.stdin is not None and not p.stdin.closed]
    _send(waiting, "")
    deadline = time.monotonic() + timeout
    for p in waiting:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _send(procs: list[subprocess.Popen], text: str) -> None:
    for p in procs:
        if p.stdin is None or p.stdin.closed:
            continue
        try:
            if text:
                p.stdin.write(text)
            p.stdin.close()
        except (BrokenPipeError, OSError):  # the worker is already gone: its exit code says why
            pass


def wait_at_gate() -> bool:
    """In a gated worker: whether the study command said go (False: it failed, or died)."""
    try:
        return sys.stdin.readline().strip() == GO
    except (OSError, ValueError):
        return False
