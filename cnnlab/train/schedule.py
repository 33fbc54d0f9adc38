"""Learning-rate schedules, registered under the name used in `schedule.name`, and warm-up.

Each builder returns a Schedule, which knows whether it steps after every batch or after
every epoch, and which logged metric (if any) it watches. Builders get `steps`, the number
of optimizer steps the schedule itself covers (the run's steps minus any warm-up).

Warm-up (`schedule.warmup_epochs`, fractions allowed) lasts W = warmup_epochs * steps_per_epoch
optimizer steps, rounded to the nearest step (halves up; at least 1). Optimizer step i (counting from 0) uses
    lr_i = lr_0 * (i + 1) / W            for i < W,
where lr_0 is the lr the named schedule starts from (optim.lr; optim.lr / div_factor for
onecycle). Step W is the named schedule's first step: a per-step schedule (cosine, onecycle,
exponential per step) then runs over the remaining steps and ends with the run; a per-epoch
schedule (step, multistep, exponential per epoch, plateau) counts the epoch in which warm-up
ends as its first epoch, so step_size and milestones count epochs after warm-up.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch.optim import lr_scheduler

from cnnlab.config import ScheduleConfig
from cnnlab.errors import ConfigError
from cnnlab.registry import Registry
from cnnlab.train.metrics import metric_mode

SCHEDULES = Registry("schedule", "schedule.name")
CONTEXT = ("optimizer", "steps", "steps_per_epoch")


class Schedule:
    """A torch LR scheduler plus when to step it, what it monitors, and a linear warm-up."""

    def __init__(self, optimizer: torch.optim.Optimizer, scheduler: Any = None,
                 per: Literal["step", "epoch"] = "epoch", monitor: str | None = None):
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.per = per
        self.monitor = monitor
        self.warmup_steps = 0
        self.steps = 0  # optimizer steps taken so far
        self._start_lrs: list[float] = []

    def warm_up(self, steps: int) -> None:
        """Ramp the lr linearly up to the schedule's starting lr over the first `steps` steps."""
        self.warmup_steps = steps
        self._start_lrs = [g["lr"] for g in self.optimizer.param_groups]
        if steps > 0:
            self._scale_lr(1 / steps)

    def _scale_lr(self, fraction: float) -> None:
        for group, lr in zip(self.optimizer.param_groups, self._start_lrs):
            group["lr"] = lr * fraction

    def after_batch(self) -> None:
        self.steps += 1
        if self.steps < self.warmup_steps:
            self._scale_lr((self.steps + 1) / self.warmup_steps)
        elif self.steps == self.warmup_steps:
            self._scale_lr(1.0)  # hand over: the wrapped schedule starts where it was built
        elif self.scheduler is not None and self.per == "step":
            self.scheduler.step()

    def after_epoch(self, metrics: dict[str, float]) -> None:
        # An epoch counts for a per-epoch schedule once one of its steps ran after warm-up.
        if self.scheduler is None or self.per != "epoch" or self.steps <= self.warmup_steps:
            return
        if self.monitor is not None:
            self.scheduler.step(metrics[self.monitor])
        else:
            self.scheduler.step()

    def state_dict(self) -> dict:
        return {"steps": self.steps, "scheduler": {} if self.scheduler is None else self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        # The optimizer's own state holds the current lr; this restores the counters.
        self.steps = state["steps"]
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])


def build_schedule(cfg: ScheduleConfig, optimizer: torch.optim.Optimizer, epochs: int,
                   steps_per_epoch: int) -> Schedule:
    """The configured schedule, preceded by `cfg.warmup_epochs` of linear warm-up."""
    total = epochs * steps_per_epoch
    # Nearest whole step, halves rounded up (not Python's round-half-to-even), at least one.
    warm = max(1, int(cfg.warmup_epochs * steps_per_epoch + 0.5)) if cfg.warmup_epochs > 0 else 0
    if warm >= total:
        raise ConfigError(f"schedule.warmup_epochs: {cfg.warmup_epochs:g} epochs of warm-up ({warm} steps) "
                          f"leave nothing of a {epochs}-epoch run ({total} steps); lower it or raise train.epochs")
    opts = {k: v for k, v in cfg.model_dump().items() if k not in ScheduleConfig.model_fields}
    schedule = SCHEDULES.build(cfg.name, opts, optimizer=optimizer, steps=total - warm,
                               steps_per_epoch=steps_per_epoch)
    schedule.warm_up(warm)
    return schedule


@SCHEDULES.register("none", context=CONTEXT)
def constant(optimizer: torch.optim.Optimizer, steps: int, steps_per_epoch: int) -> Schedule:
    """A constant learning rate."""
    return Schedule(optimizer)


@SCHEDULES.register("step", context=CONTEXT)
def step(optimizer: torch.optim.Optimizer, steps: int, steps_per_epoch: int,
         step_size: int = 10, gamma: float = 0.1) -> Schedule:
    """Multiply the lr by gamma every step_size epochs."""
    return Schedule(optimizer, lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma))


@SCHEDULES.register("multistep", context=CONTEXT)
def multistep(optimizer: torch.optim.Optimizer, steps: int, steps_per_epoch: int,
              milestones: list[int] = [30, 60, 90], gamma: float = 0.1) -> Schedule:  # noqa: B006
    """Multiply the lr by gamma after each epoch listed in milestones (epoch counts, e.g. [30, 60])."""
    if any(m <= 0 for m in milestones) or sorted(milestones) != milestones:
        raise ConfigError(f"schedule.milestones: expected increasing positive epoch counts, got {milestones}")
    return Schedule(optimizer, lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=gamma))


@SCHEDULES.register("exponential", context=CONTEXT)
def exponential(optimizer: torch.optim.Optimizer, steps: int, steps_per_epoch: int,
                gamma: float = 0.95, per: Literal["epoch", "step"] = "epoch") -> Schedule:
    """Multiply the lr by gamma after every epoch (or after every optimizer step)."""
    return Schedule(optimizer, lr_scheduler.ExponentialLR(optimizer, gamma=gamma), per=per)


@SCHEDULES.register("cosine", context=CONTEXT)
def cosine(optimizer: torch.optim.Optimizer, steps: int, steps_per_epoch: int, min_lr: float = 0.0) -> Schedule:
    """Cosine decay from optim.lr to min_lr over the whole run, updated every step."""
    return Schedule(optimizer, lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=min_lr), per="step")


@SCHEDULES.register("onecycle", context=CONTEXT)
def onecycle(optimizer: torch.optim.Optimizer, steps: int, steps_per_epoch: int,
             pct_start: float = 0.25, div_factor: float = 25.0, final_div_factor: float = 1e4,
             anneal_strategy: Literal["cos", "linear"] = "cos", cycle_momentum: bool = False) -> Schedule:
    """One-cycle: warm up to optim.lr over pct_start of the run, then anneal far below it."""
    max_lr = [g["lr"] for g in optimizer.param_groups]
    return Schedule(optimizer, lr_scheduler.OneCycleLR(
        optimizer, max_lr=max_lr, total_steps=steps, pct_start=pct_start,
        div_factor=div_factor, final_div_factor=final_div_factor, anneal_strategy=anneal_strategy,
        cycle_momentum=cycle_momentum), per="step")


@SCHEDULES.register("plateau", context=CONTEXT)
def plateau(optimizer: torch.optim.Optimizer, steps: int, steps_per_epoch: int,
            monitor: str = "val_loss", mode: Literal["auto", "min", "max"] = "auto",
            factor: float = 0.1, patience: int = 10, threshold: float = 1e-4,
            threshold_mode: Literal["rel", "abs"] = "rel", cooldown: int = 0, min_lr: float = 0.0) -> Schedule:
    """ReduceLROnPlateau on any logged metric: lr *= factor after more than `patience` flat epochs."""
    if not 0 < factor < 1:
        raise ConfigError(f"schedule.factor: must be in (0, 1), got {factor}")
    sched = lr_scheduler.ReduceLROnPlateau(optimizer, mode=metric_mode(monitor, mode), factor=factor,
                                           patience=patience, threshold=threshold,
                                           threshold_mode=threshold_mode, cooldown=cooldown, min_lr=min_lr)
    return Schedule(optimizer, sched, monitor=monitor)
