"""The callbacks of one run, called by the loop at their named hooks (cnnlab/callbacks.py).

Only callbacks that implement a hook are called for it, so a run without step-level callbacks
pays nothing per step. An exception in the user's own callback ends the run as failed, with
their traceback (cnnlab/usercode/blame.py); cnnlab's own callbacks raise as they are, and
StopTraining, interrupts and divergence pass through untouched.
"""

from __future__ import annotations

from typing import Any

from cnnlab.callbacks import HOOKS, Callback, StopTraining, as_callback, overrides
from cnnlab.errors import DivergedError, Interrupted, UserError
from cnnlab.registry import origin_of
from cnnlab.usercode.blame import add_code_of, user_code_error


class Hooks:
    """Dispatches the loop's moments to the callbacks that implement them."""

    def __init__(self, callbacks: list[Any]):
        self.callbacks: list[Callback] = [as_callback(cb) for cb in callbacks]
        self._users = {id(cb) for cb in self.callbacks if origin_of(type(cb)) is not None}
        for cb in self.callbacks:
            if id(cb) in self._users:
                add_code_of(cb)  # its frames are shown when it raises, even from a notebook cell
        self._by_hook = {h: [cb for cb in self.callbacks if _implements(cb, h)] for h in (*HOOKS, "note")}

    def wants(self, hook: str) -> bool:
        return bool(self._by_hook[hook])

    def call(self, hook: str, *args: Any) -> None:
        """Every callback's hook; a StopTraining (early stopping at an epoch's end) is raised once all
        of them have seen the moment, so a callback listed after early stopping still logs that epoch."""
        stop: StopTraining | None = None
        for cb in self._by_hook[hook]:
            try:
                self._call(cb, hook, *args)
            except StopTraining as e:
                stop = stop or e
        if stop is not None:
            raise stop

    def _call(self, cb: Callback, hook: str, *args: Any) -> Any:
        try:
            return getattr(cb, hook)(*args)
        except (StopTraining, Interrupted, KeyboardInterrupt, DivergedError, UserError):
            raise
        except Exception as e:
            if id(cb) not in self._users:
                raise
            raise user_code_error(e, f"callbacks: {type(cb).__name__}.{hook} raised") from None

    def notes(self) -> list[str]:
        return [n for cb in self._by_hook["note"] if (n := self._call(cb, "note"))]

    def stop_requested(self) -> str | None:
        """The reason of the first callback that asked the run to stop (Callback.stop), or None."""
        for cb in self.callbacks:
            reason = getattr(cb, "stop_requested", None)
            if isinstance(reason, str):
                return reason
        return None

    def stateful(self) -> list[Callback]:
        """Callbacks whose state travels in last.pt (they override state_dict, or have one)."""
        return [cb for cb in self.callbacks
                if (overrides(cb, "state_dict") or not isinstance(cb, Callback)) and hasattr(cb, "state_dict")]


def _implements(cb: Any, hook: str) -> bool:
    if isinstance(cb, Callback):
        return overrides(cb, hook)
    return callable(getattr(cb, hook, None))
