"""Learning-rate schedules, registered under the name used in `schedule.name`, and warm-up.

A Schedule holds the learning rate (and, for one-cycle with cycle_momentum, the momentum)
that the next optimizer step uses; the engine reads it before every step. It knows no
optimizer, so the torch engine and the NumPy engine take their rates from the same object.
The rules are the closed forms of torch.optim.lr_scheduler's (tests/test_schedules.py checks
them against torch's own schedulers, step by step).

Each builder gets `lr` (optim.lr), `steps`, the number of optimizer steps the schedule itself
covers (the run's steps minus any warm-up), and `steps_per_epoch`.

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

import bisect
import math
from collections.abc import Callable
from typing import Any, Literal

from cnnlab.config import ScheduleConfig
from cnnlab.errors import ConfigError
from cnnlab.registry import Registry
from cnnlab.training.logged import metric_mode

CONTEXT = ("lr", "steps", "steps_per_epoch")
SCHEDULES = Registry("schedule", "schedule", context=CONTEXT)

Rule = Callable[[int], float]  # the lr after t steps (per-step) or t counted epochs (per-epoch)


class Plateau:
    """ReduceLROnPlateau's rule: lr *= factor once the metric has not improved for more than `patience` epochs."""

    def __init__(self, lr: float, mode: Literal["min", "max"], factor: float, patience: int, threshold: float,
                 threshold_mode: Literal["rel", "abs"], cooldown: int, min_lr: float, eps: float = 1e-8):
        self.lr, self.mode, self.factor, self.patience = lr, mode, factor, patience
        self.threshold, self.threshold_mode, self.cooldown, self.min_lr, self.eps = (
            threshold, threshold_mode, cooldown, min_lr, eps)
        self.best = math.inf if mode == "min" else -math.inf
        self.bad_epochs = 0
        self.cooldown_left = 0

    def _better(self, value: float) -> bool:
        if self.threshold_mode == "rel":
            scale = 1 - self.threshold if self.mode == "min" else 1 + self.threshold
            return value < self.best * scale if self.mode == "min" else value > self.best * scale
        return value < self.best - self.threshold if self.mode == "min" else value > self.best + self.threshold

    def update(self, value: float) -> None:
        if self._better(value):
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.bad_epochs = 0  # no bad epochs are counted during cooldown
        if self.bad_epochs > self.patience:
            new = max(self.lr * self.factor, self.min_lr)
            if self.lr - new > self.eps:  # smaller changes are ignored, as in torch
                self.lr = new
            self.cooldown_left, self.bad_epochs = self.cooldown, 0

    def state_dict(self) -> dict[str, Any]:
        return {"lr": self.lr, "best": self.best, "bad_epochs": self.bad_epochs, "cooldown_left": self.cooldown_left}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lr, self.best = float(state["lr"]), float(state["best"])
        self.bad_epochs, self.cooldown_left = int(state["bad_epochs"]), int(state["cooldown_left"])


class Schedule:
    """The lr of every optimizer step: a rule (or a Plateau), when it advances, and a linear warm-up."""

    def __init__(self, rule: Rule, per: Literal["step", "epoch"] = "epoch", monitor: str | None = None,
                 plateau: Plateau | None = None, momentum: Rule | None = None, every: int | None = None):
        self.rule, self.per, self.monitor, self.plateau, self._momentum = rule, per, monitor, plateau, momentum
        # A plateau stepped every `every` batches on the mean training loss of those batches
        # (the trainer feeds it through after_window) instead of once per epoch.
        self.every = every
        self.warmup_steps = 0
        self.steps = 0  # optimizer steps taken so far
        self.epochs = 0  # epochs counted by a per-epoch schedule (those with a step after warm-up)

    def warm_up(self, steps: int) -> None:
        """Ramp the lr linearly up to the schedule's starting lr over the first `steps` steps."""
        self.warmup_steps = steps

    def _t(self) -> int:
        return max(0, self.steps - self.warmup_steps) if self.per == "step" else self.epochs

    @property
    def lr(self) -> float:
        """The learning rate of the next optimizer step."""
        if self.steps < self.warmup_steps:
            return self.rule(0) * (self.steps + 1) / self.warmup_steps
        return self.plateau.lr if self.plateau is not None else self.rule(self._t())

    @property
    def momentum(self) -> float | None:
        """The momentum (SGD) or beta1 (Adam) of the next step, when the schedule cycles it; else None."""
        return None if self._momentum is None else self._momentum(self._t() if self.steps >= self.warmup_steps else 0)

    def after_batch(self) -> None:
        self.steps += 1

    def after_epoch(self, metrics: dict[str, float]) -> None:
        # An epoch counts for a per-epoch schedule once one of its steps ran after warm-up.
        if self.per != "epoch" or self.steps <= self.warmup_steps:
            return
        self.epochs += 1
        if self.plateau is not None and self.every is None:
            self.plateau.update(float(metrics[self.monitor]))  # type: ignore[index]

    def after_window(self, mean_loss: float) -> None:
        """The mean training loss of the last `every` batches of an epoch (plateau with `every`)."""
        if self.plateau is not None and self.steps > self.warmup_steps:
            self.plateau.update(mean_loss)

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "epochs": self.epochs,
                "plateau": None if self.plateau is None else self.plateau.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        if "epochs" not in state:  # a run of cnnlab 0.1: a torch lr_scheduler's state
            state = _from_torch_scheduler(state, self)
        self.epochs = int(state["epochs"])
        if self.plateau is not None:
            self.plateau.load_state_dict(state["plateau"])


def _from_torch_scheduler(state: dict[str, Any], schedule: Schedule) -> dict[str, Any]:
    """The counters of a checkpoint written when schedules drove torch's lr_schedulers."""
    old = state.get("scheduler") or {}
    epochs = int(old.get("last_epoch", 0)) if schedule.per == "epoch" else 0
    plateau = None
    if schedule.plateau is not None:
        plateau = {"lr": old["_last_lr"][0], "best": old["best"], "bad_epochs": old["num_bad_epochs"],
                   "cooldown_left": old["cooldown_counter"]}
    return {"steps": state["steps"], "epochs": epochs, "plateau": plateau}


def build_schedule(cfg: ScheduleConfig, lr: float, epochs: int, steps_per_epoch: int) -> Schedule:
    """The configured schedule from optim.lr, preceded by `cfg.warmup_epochs` of linear warm-up."""
    total = epochs * steps_per_epoch
    # Nearest whole step, halves rounded up (not Python's round-half-to-even), at least one.
    warm = max(1, int(cfg.warmup_epochs * steps_per_epoch + 0.5)) if cfg.warmup_epochs > 0 else 0
    if warm >= total:
        raise ConfigError(f"schedule.warmup_epochs: {cfg.warmup_epochs:g} epochs of warm-up ({warm} steps) "
                          f"leave nothing of a {epochs}-epoch run ({total} steps); lower it or raise train.epochs")
    schedule = SCHEDULES.build(cfg, lr=lr, steps=total - warm, steps_per_epoch=steps_per_epoch)
    schedule.warm_up(warm)
    return schedule


@SCHEDULES.register("none", context=CONTEXT)
def constant(lr: float, steps: int, steps_per_epoch: int) -> Schedule:
    """A constant learning rate."""
    return Schedule(lambda t: lr)


@SCHEDULES.register("step", context=CONTEXT)
def step(lr: float, steps: int, steps_per_epoch: int, step_size: int = 10, gamma: float = 0.1) -> Schedule:
    """Multiply the lr by gamma every step_size epochs."""
    if step_size < 1:
        raise ConfigError(f"schedule.step_size: must be at least 1 epoch, got {step_size}")
    return Schedule(lambda t: lr * gamma ** (t // step_size))


@SCHEDULES.register("multistep", context=CONTEXT)
def multistep(lr: float, steps: int, steps_per_epoch: int,
              milestones: list[int] = [30, 60, 90], gamma: float = 0.1) -> Schedule:  # noqa: B006
    """Multiply the lr by gamma after each epoch listed in milestones (epoch counts, e.g. [30, 60])."""
    if any(m <= 0 for m in milestones) or sorted(milestones) != milestones:
        raise ConfigError(f"schedule.milestones: expected increasing positive epoch counts, got {milestones}")
    return Schedule(lambda t: lr * gamma ** bisect.bisect_right(milestones, t))


@SCHEDULES.register("exponential", context=CONTEXT)
def exponential(lr: float, steps: int, steps_per_epoch: int,
                gamma: float = 0.95, per: Literal["epoch", "step"] = "epoch", compound: bool = False) -> Schedule:
    """Multiply the lr by gamma after every epoch (or after every optimizer step).

    compound: after epoch e (counted from 0) multiply by gamma ** (e + 1) instead, so epoch t
    runs at lr * gamma ** (1 + 2 + ... + t) = lr * gamma ** (t (t + 1) / 2): the MNIST NumPy
    write-up's `learning_rate *= 0.95 ** (epoch + 1)`, which decays much faster than gamma ** t.
    """
    if compound:
        if per != "epoch":
            raise ConfigError("schedule.compound: the compounding decay counts epochs; remove schedule.per: step")
        return Schedule(lambda t: lr * gamma ** (t * (t + 1) // 2))
    return Schedule(lambda t: lr * gamma**t, per=per)


@SCHEDULES.register("cosine", context=CONTEXT)
def cosine(lr: float, steps: int, steps_per_epoch: int, min_lr: float = 0.0) -> Schedule:
    """Cosine decay from optim.lr to min_lr over the whole run, updated every step."""
    return Schedule(lambda t: min_lr + (lr - min_lr) * (1 + math.cos(math.pi * min(t, steps) / steps)) / 2, per="step")


@SCHEDULES.register("onecycle", context=CONTEXT)
def onecycle(lr: float, steps: int, steps_per_epoch: int,
             pct_start: float = 0.25, div_factor: float = 25.0, final_div_factor: float = 1e4,
             anneal_strategy: Literal["cos", "linear"] = "cos", cycle_momentum: bool = False) -> Schedule:
    """One-cycle: warm up to optim.lr over pct_start of the run, then anneal far below it.

    As torch's OneCycleLR: the peak is at step pct_start * steps - 1, the end at step steps - 1.
    A phase too short to have a length (a run of a few steps) collapses to its end value
    instead of dividing by zero. cycle_momentum anneals momentum (SGD) or beta1 (Adam) the
    other way, from 0.95 down to 0.85 at the peak and back (torch's defaults).
    """
    if not 0 <= pct_start <= 1:
        raise ConfigError(f"schedule.pct_start: must be in [0, 1], got {pct_start}")
    start, low = lr / div_factor, lr / div_factor / final_div_factor
    peak, end = float(pct_start * steps) - 1, float(steps - 1)

    def anneal(a: float, b: float, pct: float) -> float:
        if anneal_strategy == "linear":
            return (b - a) * pct + a
        return b + (a - b) / 2.0 * (math.cos(math.pi * pct) + 1)

    def phase(t: int, first: tuple[float, float], second: tuple[float, float]) -> float:
        if t <= peak:
            return anneal(*first, (t / peak) if peak > 0 else 1.0)
        return anneal(*second, ((t - peak) / (end - peak)) if end > peak else 1.0)

    momentum = (lambda t: phase(t, (0.95, 0.85), (0.85, 0.95))) if cycle_momentum else None
    return Schedule(lambda t: phase(t, (start, lr), (lr, low)), per="step", momentum=momentum)


@SCHEDULES.register("plateau", context=CONTEXT)
def plateau(lr: float, steps: int, steps_per_epoch: int,
            monitor: str = "val_loss", mode: Literal["auto", "min", "max"] = "auto",
            factor: float = 0.1, patience: int = 10, threshold: float = 1e-4,
            threshold_mode: Literal["rel", "abs"] = "rel", cooldown: int = 0, min_lr: float = 0.0,
            eps: float = 1e-8, every: int | None = None) -> Schedule:
    """ReduceLROnPlateau on any logged metric: lr *= factor after more than `patience` flat epochs.

    every: step it every N batches instead, on the mean training loss of those N batches
      (monitor: train_loss; patience and cooldown then count windows, not epochs), as
      `if i % 10 == 9: scheduler.step(running_loss / 10)` does; the count restarts each epoch
      and an epoch's last batches that do not fill a window are not used.
    eps: a reduction smaller than eps is skipped (torch's eps).
    """
    if not 0 < factor < 1:
        raise ConfigError(f"schedule.factor: must be in (0, 1), got {factor}")
    if every is not None:
        if every < 1:
            raise ConfigError(f"schedule.every: must be at least 1 batch, got {every}")
        if monitor != "train_loss":
            raise ConfigError(f"schedule.every: a plateau stepped every {every} batches watches the batches' training "
                              f"loss; set schedule.monitor: train_loss (not {monitor}) or remove schedule.every")
        if every > steps_per_epoch:
            raise ConfigError(f"schedule.every: {every} batches is more than an epoch's {steps_per_epoch}, so the "
                              "schedule would never step; lower it")
    if eps < 0:
        raise ConfigError(f"schedule.eps: must be at least 0, got {eps}")
    rule = Plateau(lr, metric_mode(monitor, mode), factor, patience, threshold, threshold_mode, cooldown, min_lr, eps)
    return Schedule(lambda t: lr, monitor=monitor, plateau=rule, every=every)
