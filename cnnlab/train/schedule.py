"""Learning-rate schedules, registered under the name used in `schedule.name`.

Each builder returns a Schedule, which knows whether it steps after every batch or after
every epoch, and which logged metric (if any) it watches.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch.optim import lr_scheduler

from cnnlab.registry import Registry

SCHEDULES = Registry("schedule", "schedule.name")
CONTEXT = ("optimizer", "epochs", "steps_per_epoch")


class Schedule:
    """A torch LR scheduler plus when to step it and what it monitors."""

    def __init__(self, scheduler: Any = None, per: Literal["step", "epoch"] = "epoch", monitor: str | None = None):
        self.scheduler = scheduler
        self.per = per
        self.monitor = monitor

    def after_batch(self) -> None:
        if self.scheduler is not None and self.per == "step":
            self.scheduler.step()

    def after_epoch(self, metrics: dict[str, float]) -> None:
        if self.scheduler is None or self.per != "epoch":
            return
        if self.monitor is not None:
            self.scheduler.step(metrics[self.monitor])
        else:
            self.scheduler.step()

    def state_dict(self) -> dict:
        return {} if self.scheduler is None else self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state)


@SCHEDULES.register("none", context=CONTEXT)
def constant(optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int) -> Schedule:
    """A constant learning rate."""
    return Schedule()


@SCHEDULES.register("step", context=CONTEXT)
def step(optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int,
         step_size: int = 10, gamma: float = 0.1) -> Schedule:
    """Multiply the lr by gamma every step_size epochs."""
    return Schedule(lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma))


@SCHEDULES.register("exponential", context=CONTEXT)
def exponential(optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int,
                gamma: float = 0.95) -> Schedule:
    """Multiply the lr by gamma after every epoch."""
    return Schedule(lr_scheduler.ExponentialLR(optimizer, gamma=gamma))


@SCHEDULES.register("cosine", context=CONTEXT)
def cosine(optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int, min_lr: float = 0.0) -> Schedule:
    """Cosine decay from optim.lr to min_lr over the whole run, updated every step."""
    return Schedule(lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch, eta_min=min_lr), per="step")


@SCHEDULES.register("onecycle", context=CONTEXT)
def onecycle(optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int,
             pct_start: float = 0.25, div_factor: float = 25.0, final_div_factor: float = 1e4,
             anneal_strategy: Literal["cos", "linear"] = "cos", cycle_momentum: bool = False) -> Schedule:
    """One-cycle: warm up to optim.lr over pct_start of the run, then anneal far below it."""
    max_lr = [g["lr"] for g in optimizer.param_groups]
    return Schedule(lr_scheduler.OneCycleLR(
        optimizer, max_lr=max_lr, epochs=epochs, steps_per_epoch=steps_per_epoch, pct_start=pct_start,
        div_factor=div_factor, final_div_factor=final_div_factor, anneal_strategy=anneal_strategy,
        cycle_momentum=cycle_momentum), per="step")


@SCHEDULES.register("plateau", context=CONTEXT)
def plateau(optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int,
            monitor: str = "val_loss", mode: Literal["auto", "min", "max"] = "auto",
            factor: float = 0.1, patience: int = 10, threshold: float = 1e-4,
            cooldown: int = 0, min_lr: float = 0.0) -> Schedule:
    """ReduceLROnPlateau on a logged metric (val_loss, val_acc, ...): lr *= factor after `patience` flat epochs."""
    if mode == "auto":
        mode = "max" if monitor.endswith(("acc", "top5")) else "min"
    sched = lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=factor, patience=patience,
                                           threshold=threshold, cooldown=cooldown, min_lr=min_lr)
    return Schedule(sched, monitor=monitor)
