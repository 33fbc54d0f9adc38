"""Learning-rate schedules and warm-up: the lr of every optimizer step against its formula."""

from __future__ import annotations

import io
import math
import re

import pytest
import torch
from torch.optim import lr_scheduler

from cnnlab.config import ScheduleConfig
from cnnlab.errors import ConfigError
from cnnlab.training.schedule import SCHEDULES, build_schedule

LR = 0.1


def make(name: str, epochs: int = 3, spe: int = 4, warmup: float = 0.0, **opts):
    """A schedule from optim.lr = LR, options validated as a config would be."""
    cfg = ScheduleConfig.model_validate({"name": name, "warmup_epochs": warmup,
                                         **SCHEDULES.validate(name, opts, "schedule")})
    return build_schedule(cfg, LR, epochs, spe)


def drive(sched, epochs: int, spe: int, metrics=None, start_epoch: int = 0) -> list[float]:
    """The lr each optimizer step ran with, stepping the schedule as the trainer does."""
    used = []
    for e in range(start_epoch, epochs):
        for _ in range(spe):
            used.append(sched.lr)
            sched.after_batch()
        sched.after_epoch(metrics[e] if metrics else {})
    return used


def lrs(name: str, epochs: int = 3, spe: int = 4, warmup: float = 0.0, metrics=None, **opts) -> list[float]:
    return drive(make(name, epochs, spe, warmup, **opts), epochs, spe, metrics)


def per_epoch(values: list[float], spe: int) -> list[float]:
    assert all(v == pytest.approx(values[i - i % spe]) for i, v in enumerate(values)), "lr changed inside an epoch"
    return values[::spe]


def test_none_is_constant():
    assert lrs("none") == [LR] * 12


def test_step():
    got = per_epoch(lrs("step", epochs=5, step_size=2, gamma=0.5), 4)
    assert got == pytest.approx([LR * 0.5 ** (e // 2) for e in range(5)])


def test_multistep_drops_after_each_milestone_epoch():
    got = per_epoch(lrs("multistep", epochs=5, milestones=[1, 3], gamma=0.1), 4)
    assert got == pytest.approx([LR, LR * 0.1, LR * 0.1, LR * 0.01, LR * 0.01])


def test_multistep_rejects_unsorted_milestones():
    with pytest.raises(ConfigError, match=r"schedule.milestones: expected increasing"):
        lrs("multistep", milestones=[3, 1])


def test_exponential_per_epoch_and_per_step():
    got = per_epoch(lrs("exponential", gamma=0.9), 4)
    assert got == pytest.approx([LR * 0.9**e for e in range(3)])
    got = lrs("exponential", gamma=0.9, per="step")
    assert got == pytest.approx([LR * 0.9**i for i in range(12)])


def test_cosine_per_step():
    total, low = 12, 0.001
    got = lrs("cosine", min_lr=low)
    assert got == pytest.approx([low + (LR - low) * (1 + math.cos(math.pi * i / total)) / 2 for i in range(total)])


def onecycle_formula(i: int, total: int, pct: float = 0.25, div: float = 25.0, final: float = 1e4) -> float:
    """The one-cycle policy as torch documents it, cosine annealing in both phases."""
    start, low = LR / div, LR / div / final
    peak = pct * total - 1  # the step at which lr reaches LR

    def anneal(a: float, b: float, t: float) -> float:
        return b + (a - b) / 2 * (1 + math.cos(math.pi * t))

    if i <= peak:
        return anneal(start, LR, i / peak)
    return anneal(LR, low, (i - peak) / (total - 1 - peak))


def test_onecycle():
    got = lrs("onecycle", epochs=5, spe=4)
    assert got == pytest.approx([onecycle_formula(i, 20) for i in range(20)], rel=1e-6)
    assert max(got) == pytest.approx(LR)


def test_warmup_then_cosine_over_the_remaining_steps():
    spe, epochs, low = 4, 3, 0.001
    got = lrs("cosine", epochs, spe, warmup=1.5, min_lr=low)
    w = 6  # round(1.5 * 4)
    assert got[:w] == pytest.approx([LR * (i + 1) / w for i in range(w)])
    rest = epochs * spe - w
    assert got[w:] == pytest.approx([low + (LR - low) * (1 + math.cos(math.pi * k / rest)) / 2 for k in range(rest)])


def test_fractional_warmup_before_a_per_epoch_schedule():
    # W = round(0.5 * 4) = 2 steps; the epoch in which warm-up ends is step's first epoch.
    got = lrs("step", epochs=4, spe=4, warmup=0.5, step_size=1, gamma=0.5)
    assert got == pytest.approx([LR / 2, LR] + [LR] * 2 + [LR * 0.5] * 4 + [LR * 0.25] * 4 + [LR * 0.125] * 4)


def test_warmup_of_whole_epochs_shifts_milestones():
    got = lrs("multistep", epochs=5, spe=2, warmup=2, milestones=[1], gamma=0.1)
    assert got[:4] == pytest.approx([LR / 4 * k for k in (1, 2, 3, 4)])  # epochs 1-2: warm-up
    # Epoch 3 is multistep's first epoch; its milestone 1 drops the lr from epoch 4 on.
    assert per_epoch(got[4:], 2) == pytest.approx([LR, LR * 0.1, LR * 0.1])


def test_warmup_before_onecycle_rises_to_its_starting_lr():
    got = lrs("onecycle", epochs=5, spe=4, warmup=1)
    start = LR / 25
    assert got[:4] == pytest.approx([start * (i + 1) / 4 for i in range(4)])
    assert got[4:] == pytest.approx([onecycle_formula(i, 16) for i in range(16)], rel=1e-6)


def test_warmup_of_one_step_minimum_and_too_long_warmup():
    assert lrs("none", warmup=0.01)[:2] == [LR, LR]  # round(0.04) -> still 1 step, at full lr
    with pytest.raises(ConfigError, match=r"schedule.warmup_epochs: 3 epochs of warm-up \(12 steps\) leave nothing"):
        lrs("none", warmup=3)


def test_plateau_rule_with_patience_cooldown_and_min_lr():
    flat = [{"train_loss": 1.0}] * 8
    got = per_epoch(lrs("plateau", epochs=8, spe=1, metrics=flat, monitor="train_loss",
                        patience=1, cooldown=1, factor=0.5, min_lr=0.03), 1)
    # best at epoch 1; 2 and 3 are flat -> more than `patience` -> halve after epoch 3;
    # epoch 4 is cooldown; 5, 6 flat -> reduce again after 6, clipped at min_lr.
    assert got == pytest.approx([LR] * 3 + [LR / 2] * 3 + [0.03] * 2)


def test_plateau_auto_mode_maximises_accuracy():
    accs = [{"val_acc": a} for a in (0.5, 0.6, 0.55, 0.6, 0.7, 0.7)]
    got = per_epoch(lrs("plateau", epochs=6, spe=2, metrics=accs, monitor="val_acc", patience=0, factor=0.5), 2)
    # patience 0: every epoch that does not beat the best halves the lr for the next one.
    assert got == pytest.approx([LR, LR, LR, LR / 2, LR / 4, LR / 4])


def roundtrip(obj: dict) -> dict:
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("name, warmup, opts", [
    ("step", 0.5, {"step_size": 1, "gamma": 0.5}),
    ("multistep", 1.0, {"milestones": [1, 2]}),
    ("exponential", 1.5, {"per": "step"}),
    ("cosine", 1.25, {}),
    ("onecycle", 0.0, {}),
    ("plateau", 0.5, {"monitor": "train_loss", "patience": 0}),
])
def test_schedule_state_resumes_exactly(name, warmup, opts):
    epochs, spe = 4, 4
    metrics = [{"train_loss": v} for v in (1.0, 1.2, 0.9, 1.1)]
    whole = lrs(name, epochs, spe, warmup, metrics, **opts)
    sched = make(name, epochs, spe, warmup, **opts)
    first = drive(sched, 1, spe, metrics)  # one epoch (inside warm-up for some), then "crash"
    saved = roundtrip({"schedule": sched.state_dict()})  # as last.pt is read
    sched2 = make(name, epochs, spe, warmup, **opts)
    sched2.load_state_dict(saved["schedule"])
    assert first + drive(sched2, epochs, spe, metrics, start_epoch=1) == whole


# Every schedule against torch's own lr_scheduler, step by step: the rules are their closed forms.
TORCH = {
    "step": ({"step_size": 2, "gamma": 0.5}, lambda o, n: lr_scheduler.StepLR(o, 2, 0.5), "epoch"),
    "multistep": ({"milestones": [1, 3], "gamma": 0.3}, lambda o, n: lr_scheduler.MultiStepLR(o, [1, 3], 0.3), "epoch"),
    "exponential": ({"gamma": 0.7}, lambda o, n: lr_scheduler.ExponentialLR(o, 0.7), "epoch"),
    "exponential-step": ({"gamma": 0.97, "per": "step"}, lambda o, n: lr_scheduler.ExponentialLR(o, 0.97), "step"),
    "cosine": ({"min_lr": 0.002}, lambda o, n: lr_scheduler.CosineAnnealingLR(o, n, 0.002), "step"),
    "onecycle": ({}, lambda o, n: lr_scheduler.OneCycleLR(o, LR, total_steps=n, pct_start=0.25, div_factor=25,
                                                           final_div_factor=1e4, cycle_momentum=False), "step"),
    "onecycle-linear": ({"anneal_strategy": "linear", "pct_start": 0.4},
                        lambda o, n: lr_scheduler.OneCycleLR(o, LR, total_steps=n, pct_start=0.4, anneal_strategy="linear",
                                                             cycle_momentum=False), "step"),
    "plateau": ({"monitor": "train_loss", "patience": 1, "factor": 0.5, "cooldown": 1, "threshold": 0.01},
                lambda o, n: lr_scheduler.ReduceLROnPlateau(o, "min", 0.5, 1, 0.01, "rel", 1), "plateau"),
}


@pytest.mark.parametrize("key", list(TORCH))
def test_every_rule_equals_torchs_scheduler(key):
    opts, make_torch, when = TORCH[key]
    name = key.split("-")[0]
    epochs, spe = 6, 5
    metrics = [{"train_loss": v} for v in (1.0, 0.9, 0.95, 0.96, 0.8, 0.81)]
    ours = lrs(name, epochs, spe, metrics=metrics, **opts)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    theirs_sched = make_torch(opt, epochs * spe)
    theirs = []
    for e in range(epochs):
        for _ in range(spe):
            theirs.append(opt.param_groups[0]["lr"])
            opt.step()
            if when == "step":
                theirs_sched.step()
        if when == "epoch":
            theirs_sched.step()
        elif when == "plateau":
            theirs_sched.step(metrics[e]["train_loss"])
    assert ours == pytest.approx(theirs, rel=1e-12)


def test_onecycle_too_short_for_its_phases_collapses_them():
    # 4 steps: the warm-up phase ends at step 0.25 * 4 - 1 = 0 and has no length.
    got = lrs("onecycle", epochs=1, spe=4)
    assert got[0] == pytest.approx(LR) and got[-1] == pytest.approx(LR / 25 / 1e4)
    assert got == sorted(got, reverse=True)
    for n in (1, 2, 3):  # shorter still: as torch's formula gives
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
        theirs = lr_scheduler.OneCycleLR(opt, LR, total_steps=n, pct_start=0.25, cycle_momentum=False)
        want = []
        for _ in range(n):
            want.append(opt.param_groups[0]["lr"])
            opt.step()
            if len(want) < n:
                theirs.step()
        assert lrs("onecycle", epochs=1, spe=n) == pytest.approx(want, rel=1e-12)


def test_onecycle_cycles_momentum_when_asked():
    sched = make("onecycle", epochs=1, spe=8, cycle_momentum=True)
    seen = []
    for _ in range(8):
        seen.append(sched.momentum)
        sched.after_batch()
    assert seen[0] == pytest.approx(0.95) and min(seen) == pytest.approx(0.85) and seen[-1] == pytest.approx(0.95)
    assert make("onecycle").momentum is None


def test_old_checkpoints_schedule_state_is_read():
    """cnnlab 0.1 kept torch's scheduler state; its counters carry over."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    old = lr_scheduler.ReduceLROnPlateau(opt, "min", 0.5, 0)
    for v in (1.0, 1.1, 1.2):
        old.step(v)
    sched = make("plateau", monitor="train_loss", patience=0, factor=0.5)
    sched.load_state_dict(roundtrip({"s": {"steps": 12, "scheduler": old.state_dict()}})["s"])
    assert sched.lr == pytest.approx(opt.param_groups[0]["lr"]) and sched.epochs == 3
    step_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    step_old = lr_scheduler.StepLR(step_opt, 2, 0.5)
    for _ in range(3):
        step_opt.step()
        step_old.step()
    sched = make("step", step_size=2, gamma=0.5)
    sched.load_state_dict({"steps": 12, "scheduler": step_old.state_dict()})
    assert sched.epochs == 3 and sched.lr == pytest.approx(LR * 0.5)


def test_exponential_compound_is_the_mnist_write_ups_loop():
    got = per_epoch(lrs("exponential", epochs=6, gamma=0.95, compound=True), 4)
    lr, want = LR, []
    for epoch in range(6):  # the write-up: after each epoch, learning_rate *= 0.95 ** (epoch + 1)
        want.append(lr)
        lr *= 0.95 ** (epoch + 1)
    assert got == pytest.approx(want, rel=1e-12)
    assert got[5] == pytest.approx(LR * 0.95**15)
    with pytest.raises(ConfigError, match=r"^schedule.compound: .*counts epochs"):
        make("exponential", compound=True, per="step")


def windowed(losses: list[list[float]], every: int, **opts) -> list[float]:
    """The lr of each step from our plateau with `every`, fed the given per-step losses."""
    sched = make("plateau", epochs=len(losses), spe=len(losses[0]), monitor="train_loss", every=every, **opts)
    used = []
    for epoch in losses:
        window = 0.0
        for i, loss in enumerate(epoch, 1):
            used.append(sched.lr)
            sched.after_batch()
            window += loss
            if i % every == 0:
                sched.after_window(window / every)
                window = 0.0
        sched.after_epoch({"train_loss": sum(epoch) / len(epoch)})
    return used


def test_plateau_every_n_batches_equals_torch_stepped_on_the_running_loss():
    # The faces write-up's loop: `if i % 10 == 9: scheduler.step(running_loss / 10)`, the
    # count restarting each epoch (its 3 leftover batches never reach the scheduler).
    g = torch.Generator().manual_seed(0)
    losses = [(2.0 + 0.3 * torch.rand(23, generator=g, dtype=torch.float64)).tolist() for _ in range(4)]
    opts = {"factor": 0.98, "patience": 1, "threshold": 1e-4, "eps": 1e-8}
    ours = windowed(losses, 10, **opts)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    torch_sched = lr_scheduler.ReduceLROnPlateau(opt, "min", factor=0.98, patience=1, threshold=1e-4, eps=1e-8)
    theirs = []
    for epoch in losses:
        running = 0.0
        for i, loss in enumerate(epoch):
            theirs.append(opt.param_groups[0]["lr"])
            opt.step()
            running += loss
            if i % 10 == 9:
                torch_sched.step(running / 10)
                running = 0.0
    assert ours == pytest.approx(theirs, rel=1e-12)
    assert len(set(theirs)) >= 2 and theirs[10] == theirs[0] and min(theirs) < LR  # it dropped inside an epoch


def test_plateau_eps_skips_tiny_reductions():
    flat = [[1.0] * 4] * 4
    assert set(windowed(flat, 2, patience=0, factor=0.5)) != {LR}
    assert set(windowed(flat, 2, patience=0, factor=0.5, eps=1.0)) == {LR}  # every reduction < eps


@pytest.mark.parametrize("opts, message", [
    ({"every": 0}, "schedule.every: must be at least 1 batch"),
    ({"every": 5, "monitor": "val_loss"}, "set schedule.monitor: train_loss (not val_loss)"),
    ({"every": 50, "monitor": "train_loss"}, "schedule.every: 50 batches is more than an epoch's 4"),
    ({"eps": -1.0}, "schedule.eps: must be at least 0"),
])
def test_plateau_every_bad_values(opts, message):
    with pytest.raises(ConfigError, match=r"^schedule\.\w+: .*" + re.escape(message.split(": ", 1)[1])):
        make("plateau", **opts)
