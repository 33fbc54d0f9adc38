"""Callbacks: code of one's own that the training loop calls at named moments.

Subclass `cnnlab.Callback` and override the hooks you need; each is called with what the loop
knows at that moment (nothing to look up, nothing to return):

    class PrintBest(cnnlab.Callback):
        def on_run_start(self, run): self.best = 0.0
        def on_epoch_end(self, epoch, metrics):
            self.best = max(self.best, metrics.get("val_acc", 0.0))
            if self.best > 0.99:
                self.stop("good enough")       # ends the run as `stopped`, checkpoints written

Use one from a config (`callbacks: [my_callbacks.py:PrintBest]`, or `{name: ..., option: value}`
with the options of its __init__, validated like any builder's), register it by name
(`@cnnlab.register_callback("print_best")`), or pass instances to `cnnlab.train(...,
callbacks=[...])`. cnnlab's own early stopping, TensorBoard writer and landscape probe are
callbacks of this class.

Rules: a callback observes; it must not change the weights, the data or the random streams
(the landscape probe puts back whatever it touches), so a run with it trains as it would
without. An exception in a callback ends the run as `failed` with last.pt as it was, and its
traceback is shown. State kept across a resume: override `state_dict()` and
`load_state_dict()`; it travels in last.pt under `state_key` (the class name by default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.registry import Registry

CALLBACKS = Registry("callback", "callbacks[]")
HOOKS = ("on_run_start", "on_epoch_start", "on_batch_start", "on_step_end", "on_epoch_end", "on_checkpoint",
         "on_run_end")


class StopTraining(Exception):
    """Raised by a callback's on_epoch_end to end a run after this epoch (early stopping, study
    pruning), with a status and a reason for summary.json."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class RunContext:
    """What a callback is told when a run starts (or resumes)."""

    path: Path  # the run directory
    config: dict[str, Any]  # the resolved config, as config.yaml holds it
    classes: list[str]
    epochs: int  # planned
    steps_per_epoch: int
    resumed: bool = False  # continuing from a checkpoint (on_run_start runs again)
    writes: bool = True  # False in the processes of a distributed run other than rank 0
    history: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl so far (grows as the run does)
    step_losses: list[float] = field(default_factory=list)  # every step's training loss so far (grows too)
    files: Any = None  # the run directory's file layer (cnnlab.rundir.Run): where its files go


class Callback:
    """Base class of callbacks; every hook is optional. See the module docstring."""

    _stop_reason: str | None = None

    def on_run_start(self, run: RunContext) -> None:
        """Before the first step (and again when a run resumes, with run.resumed)."""

    def on_epoch_start(self, epoch: int) -> None:
        """Before the first step of an epoch (counted from 1)."""

    def on_batch_start(self, step: int, x: Any, y: Any) -> None:
        """Before optimizer step `step` (from 1 over the run), with its batch (tensors on the device).
        Advanced: anything it changes must be put back (the landscape probe does so)."""

    def on_step_end(self, step: int, loss: float, lr: float) -> None:
        """After an optimizer step: its training loss and the lr it used. On a GPU these arrive in
        bursts of up to 25 steps (the loop avoids a host sync per step)."""

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        """After an epoch's evaluation, before its checkpoints: the metrics.jsonl line
        (epoch, lr, train_loss, train_acc, val_loss, val_acc, test_*, seconds, ...)."""

    def on_checkpoint(self, which: str, path: Path) -> None:
        """After best/last (and init) are written: which, and the file."""

    def on_run_end(self, status: str, summary: dict[str, Any]) -> None:
        """After the run: its status (completed, stopped, early_stopped, diverged, failed,
        interrupted) and summary.json's content."""

    def note(self) -> str:
        """A few words for the epoch's progress line ('' for none)."""
        return ""

    # ------------------------------------------------------------------ stopping, state

    def stop(self, reason: str = "") -> None:
        """Ask the loop to end the run after the current step: status `stopped`, last.pt written
        (with the position inside the epoch), best.pt as it is."""
        self._stop_reason = reason or f"stopped by {type(self).__name__}"

    @property
    def stop_requested(self) -> str | None:
        return self._stop_reason

    @property
    def state_key(self) -> str:
        return type(self).__name__

    def state_dict(self) -> dict[str, Any] | None:
        """What to keep in last.pt for a resume (None: nothing)."""
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back what state_dict() returned."""


def overrides(cb: Any, hook: str) -> bool:
    """Whether a callback implements `hook` (not the base class's empty one)."""
    method = getattr(type(cb), hook, None)
    return method is not None and method is not getattr(Callback, hook, None)


class EpochFunction(Callback):
    """A plain function `fn(epoch, metrics)` as a callback (the older protocol, still accepted)."""

    def __init__(self, fn: Any):
        self.fn = fn

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        self.fn(epoch, metrics)

    @property
    def state_key(self) -> str:
        return getattr(self.fn, "__name__", "function")


def as_callback(obj: Any, where: str = "callbacks") -> Callback:
    """A Callback from what a user handed over: an instance, or a function(epoch, metrics)."""
    from cnnlab.errors import ConfigError

    if isinstance(obj, Callback):
        return obj
    if any(callable(getattr(obj, h, None)) for h in HOOKS):
        return obj  # duck-typed: the hooks it has are called, the rest are the base class's defaults
    if callable(obj):
        return EpochFunction(obj)
    raise ConfigError(f"{where}: {type(obj).__name__} is not a callback; subclass cnnlab.Callback and override "
                      f"its hooks ({', '.join(HOOKS)})")
