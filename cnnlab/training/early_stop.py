"""Early stopping (`train.early_stop`): a trainer callback that ends a run whose metric stalls."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field

from cnnlab.callbacks import CALLBACKS, Callback, StopTraining
from cnnlab.training.logged import metric_mode


class EarlyStopping(Callback):
    """Stop after `patience` epochs in a row in which `monitor` did not beat its best by more than min_delta."""

    state_key = "early_stop"  # where the trainer keeps this callback's counters in last.pt

    def __init__(self, monitor: str, patience: int, mode: Literal["auto", "min", "max"] = "auto",
                 min_delta: float = 0.0):
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.mode = metric_mode(monitor, mode)
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return not math.isnan(value)
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        value = float(metrics[self.monitor])
        if self._improved(value):
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs >= self.patience:
            best = "none" if self.best is None else f"{self.best:.4g} at epoch {self.best_epoch}"
            epochs = f"{self.patience} epoch" + ("s" if self.patience > 1 else "")
            raise StopTraining("early_stopped", f"early stop after epoch {epoch}: {self.monitor} did not improve "
                                                f"by more than {self.min_delta:g} for {epochs} (best {best})")

    def note(self) -> str:
        """A few words for the epoch's progress line."""
        return f"no {self.monitor} gain {self.bad_epochs}/{self.patience}" if self.bad_epochs else ""

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.bad_epochs = state["best"], state["best_epoch"], state["bad_epochs"]


@CALLBACKS.register("early_stop")
def early_stop(monitor: str = "val_acc", patience: Annotated[int, Field(ge=1)] = 5,
               mode: Literal["auto", "min", "max"] = "auto",
               min_delta: Annotated[float, Field(ge=0.0)] = 0.0) -> EarlyStopping:
    """Stop a run whose `monitor` has not beaten its best by more than min_delta for `patience` epochs
    (also written train.early_stop: {...})."""
    return EarlyStopping(monitor, patience, mode, min_delta)
