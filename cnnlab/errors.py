"""Errors a user can cause, each printed by the CLI as one line with its own exit code."""

from __future__ import annotations

import os


class UserError(Exception):
    """Bad input (config, data, paths): one line, exit code 2."""

    exit_code = 2

    def __init__(self, message: object = "", *args: object) -> None:
        # Messages quote third-party errors (a pickle's, scipy's, Pillow's), which may span
        # lines; the promise is one line, so line breaks become "; ".
        super().__init__(one_line(str(message)), *args)


def one_line(text: str) -> str:
    return "; ".join(part.strip() for part in text.strip().splitlines() if part.strip())


class ConfigError(UserError):
    """A config key or value that fails validation."""


class DataError(UserError):
    """A dataset file that is missing, truncated, corrupt or inconsistent."""


class DivergedError(Exception):
    """The training loss became NaN, infinite or far larger than it started: exit code 3."""

    exit_code = 3


class PeerLost(Exception):
    """Another process of a distributed run died or stopped answering: one line, exit code 4.
    The run keeps its last checkpoint; `cnnlab resume` continues it with any number of processes."""

    exit_code = 4

    def __init__(self, message: object = "") -> None:
        super().__init__(one_line(str(message)))


def keep_reporting() -> None:
    """A process of a distributed run lost a peer and is on its way out: it still writes the run's
    summary and its one line. torchrun's agent stops the survivors with SIGTERM as soon as it sees a
    process die; Python's default would kill this one mid-report (seen under load: no summary, no
    line, the launcher's exit code instead of 4). The agent kills it for good after 30 s."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


class Interrupted(KeyboardInterrupt):
    """A run stopped on SIGINT (exit code 130) or SIGTERM (143) after saving where it was."""

    def __init__(self, signum: int, where: str = ""):
        super().__init__(where)
        self.signum = signum
        self.where = where  # e.g. "in epoch 2 after step 31"
        self.run: object = None  # the run directory, once the runner knows it

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


EXIT_NOTE = "CNNLAB_EXIT_NOTE"  # set by `--nproc`'s launcher: where rank 0 notes the exit code of its line


def is_main_process() -> bool:
    """Rank 0 of a distributed run (torchrun sets RANK), or a process that is not part of one."""
    return os.environ.get("RANK", "0") == "0"


def note_exit(code: int) -> None:
    """Rank 0 printed its one line and exits with `code`: tell the `--nproc` launcher, which then
    adds no line of its own (cnnlab/distributed.py)."""
    path = os.environ.get(EXIT_NOTE)
    if path and is_main_process():
        try:
            with open(path, "w") as f:
                f.write(str(code))
        except OSError:
            pass


def suggest(word: str, candidates: list[str] | tuple[str, ...]) -> str:
    """Return ' (did you mean X?)' for the closest candidate, or '' when none is close."""
    import difflib

    best = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{best[0]}'?)" if best else ""
