"""`--workers N` on the CPU: workers 1..N-1 forked from the launching process once it has checked
the study and filled its queue.

A worker started as a new `cnnlab study --worker` process spent its first seconds importing torch,
Optuna and matplotlib and reading the dataset again, while the launching process had done all of
that already: the second worker of the MNIST grid began its first run about 5 s after the first
(bench/RESULTS.md, "Study overhead"). A forked worker begins with the launching process's modules
and with the dataset its study check read (data/memo.py hands it to the first run of each process).

Forking is safe here because nothing has run a torch operation yet (no OpenMP thread pool to
inherit: the study's check reads the dataset with NumPy) and no other thread runs; with GPUs the
workers are new processes (studies/launch.py): CUDA must not be touched before a fork, and each
gets its own CUDA_VISIBLE_DEVICES. Only on Linux, where fork is the default start method.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnlab.errors import UserError
from cnnlab.lease import PARENT_ENV


def can_fork() -> bool:
    return sys.platform.startswith("linux")


class Forked:
    """A forked process (a study worker, a figure), waited on and stopped as a subprocess.Popen is."""

    def __init__(self, process: multiprocessing.process.BaseProcess):
        self.process = process

    def wait(self, timeout: float | None = None) -> int:
        self.process.join(timeout)
        if self.process.exitcode is None:
            raise subprocess.TimeoutExpired(f"study worker (pid {self.process.pid})", timeout or 0)
        return self.process.exitcode

    def kill(self) -> None:
        self.process.kill()


def start(run_worker: Callable[..., Any], path: Path, overrides: list[str], storage: str | None, threads: int,
          index: int, say: Callable[[str], None]) -> Forked:
    """Fork worker `index`: it runs trials with `run_worker` (launch.run_worker, what `cnnlab study FILE
    --worker` runs), then exits with that command's exit code (0, 130 after Ctrl-C, 2 with one line for
    bad input, 1 with a traceback)."""
    return fork(functools.partial(_work, run_worker, path, overrides, storage, threads, index, say, os.getpid()),
                f"cnnlab-study-worker-{index}")


def fork(fn: Callable[[], Any], name: str) -> Forked:
    """Run fn() in a forked copy of this process; its exit code is 0 when fn returned, 1 (with a
    traceback) when it raised, or what it passed to sys.exit. Nothing comes back but that code."""
    sys.stdout.flush()
    sys.stderr.flush()
    process = multiprocessing.get_context("fork").Process(target=fn, name=name)
    process.start()
    return Forked(process)


def _work(run_worker: Callable[..., Any], path: Path, overrides: list[str], storage: str | None, threads: int,
          index: int, say: Callable[[str], None], parent: int) -> None:
    os.environ[PARENT_ENV] = str(parent)  # the worker exits when the launching process dies (lease.py)
    code = 1
    try:
        run_worker(path, overrides, storage, threads, index, say=say)
        code = 0
    except KeyboardInterrupt:  # the launching process reports the interruption once
        code = 130
    except UserError as e:
        print(f"cnnlab: error: {e}", file=sys.stderr)
        code = e.exit_code
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    sys.exit(code)
