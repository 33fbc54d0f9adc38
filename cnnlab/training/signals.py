"""SIGINT (Ctrl-C) and SIGTERM (what schedulers and `kill` send) as requests to stop cleanly.

While a run trains, the first such signal only sets a flag: the loop finishes the optimizer
step it is in, saves last.pt where it is (mid-epoch), and ends with exit code 130 or 143 and
the command that resumes it. A second signal stops at once, as Python's default does, unless
it comes within a second of the first: under torchrun a Ctrl-C reaches each process twice, from
the terminal and forwarded by torchrun's agent, and that is still one request.
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType
from typing import Any

from cnnlab.errors import PeerLost, keep_reporting

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequests:
    """The context a run trains in; `requested()` is the signal number once one arrived."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._at = 0.0
        self._previous: dict[int, Any] = {}

    def requested(self) -> int | None:
        return self.signum

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            if time.monotonic() - self._at > 1.0:  # a second request: stop now
                raise KeyboardInterrupt
            return  # the same request, delivered twice (torchrun forwards the terminal's Ctrl-C)
        self.signum, self._at = signum, time.monotonic()

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():  # handlers live in the main thread only
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        if self._previous and exc_type is not None and issubclass(exc_type, PeerLost):
            keep_reporting()

