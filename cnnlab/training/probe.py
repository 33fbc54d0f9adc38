"""The loss-landscape probe (`train.probe`): how smooth the loss is along the gradient, measured
during training the way Santurkar et al. (2018, "How Does Batch Normalization Help
Optimization?", section 3.2 and figure 4) measure it.

Before optimizer step s (counted from 1 over the run, as steps.csv counts) whenever
(s - 1) is a multiple of `every` (so the first step is probed), on that step's own batch and
at the weights w the step starts from, the probe computes the gradient g of the batch's data
loss (train mode, as the step computes it; an explicit loss.l2 penalty and the optimizer's
weight decay are left out), then for each of `steps` sizes eta_k spaced
geometrically over `range` x the step's lr:

    loss_k        L(w - eta_k g)                       the loss landscape along g
    grad_change_k ||grad L(w - eta_k g) - g||          gradient predictiveness (small: predictive)
    beta_k        grad_change_k / (eta_k ||g||)        the gradient's change per unit of distance

From these a study reads the loss band (min..max of loss_k), the gradient change (max over k)
and the effective beta-smoothness (max over k of beta_k), per probe (cnnlab/studies/probe_stats.py).

Every pass draws the dropout masks the training step itself draws next, so the probe follows
one function and loss0 is the step's own training loss (steps.csv). The run is left exactly as
it was: the engine's probing() (engine.py) restores weights, BN running statistics (the
passes run in train mode, with batch statistics, as the step does), gradients and the engine's
random generators bit for bit and never touches the optimizer; the batch is the one the loop
already drew, so the data generator is not used. The passes run in full precision (no autocast).
Costs: 1 + `steps` forward/backward passes per probe. The rows travel in last.pt (as callback
state), so a resumed run writes each probe once; probe.csv is rewritten at every epoch's end.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from cnnlab.callbacks import Callback
from cnnlab.config import ProbeConfig
from cnnlab.errors import ConfigError
from cnnlab.rundir import PROBE_COLUMNS, Run
from cnnlab.training.engine import Engine, ProbeAccess
from cnnlab.training.schedule import Schedule


def sizes(settings: ProbeConfig) -> np.ndarray:
    """The step sizes of one probe, in multiples of the current lr."""
    low, high = settings.range
    return np.geomspace(low, high, settings.steps)


def measure(point: ProbeAccess, x: torch.Tensor, y: torch.Tensor, etas: np.ndarray) -> dict[str, Any]:
    """The probe's numbers at the weights `point` starts from: loss0 and grad_norm there, and
    loss, grad_change and beta at each step size in `etas`."""
    loss0, g0 = point.gradient(x, y)
    g0d = g0.double()
    norm = float(g0d.norm())
    losses, changes, betas = [], [], []
    for eta in etas:
        point.shift(g0 * -float(eta))
        loss, g = point.gradient(x, y)
        change = float((g.double() - g0d).norm())
        losses.append(loss)
        changes.append(change)
        betas.append(change / (float(eta) * norm) if norm > 0 else math.nan)
    return {"loss0": loss0, "grad_norm": norm, "loss": losses, "grad_change": changes, "beta": betas}


class Probe(Callback):
    """The trainer callback that probes (on_batch_start) and writes probe.csv (after each epoch)."""

    state_key = "probe"

    def __init__(self, settings: ProbeConfig, engine: Engine, schedule: Schedule, run: Run, steps_per_epoch: int):
        self.every, self.sizes = settings.every, sizes(settings)
        self.engine, self.schedule, self.run, self.steps_per_epoch = engine, schedule, run, steps_per_epoch
        self.rows: dict[str, list[float]] = {c: [] for c in PROBE_COLUMNS}

    def on_batch_start(self, step: int, x: torch.Tensor, y: torch.Tensor) -> None:
        if (step - 1) % self.every:
            return
        lr = self.schedule.lr
        etas = lr * self.sizes
        with self.engine.probing() as point:
            m = measure(point, x, y, etas)
        epoch = (step - 1) // max(1, self.steps_per_epoch) + 1
        for k, eta in enumerate(etas):
            row = {"step": step, "epoch": epoch, "lr": lr, "size": k + 1, "eta": eta, "loss": m["loss"][k],
                   "grad_change": m["grad_change"][k], "beta": m["beta"][k], "loss0": m["loss0"],
                   "grad_norm": m["grad_norm"]}
            for c in PROBE_COLUMNS:  # plain floats: last.pt loads with weights_only
                self.rows[c].append(float(row[c]))

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        """At an epoch's end, with steps.csv: probe.csv with every probe so far."""
        self.run.write_probe(self.rows)

    def state_dict(self) -> dict[str, list[float]]:
        return {c: list(v) for c, v in self.rows.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = {c: [float(v) for v in state.get(c, [])] for c in PROBE_COLUMNS}


# ----------------------------------------------------------------------------- before the run


def check_restorable(engine: Engine, input_shape: tuple[int, ...], num_classes: int, device: torch.device) -> None:
    """Refuse (ConfigError) a model the probe would change: one whose state lives outside what
    probing() restores (a module with its own random generator or counters, say).

    On a small random batch (drawn from a generator of its own): the engine's state and torch's
    generators must come back unchanged from a probe, and a gradient taken after it must equal
    the one taken before. Runs before the run directory is made."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((4, *input_shape), generator=gen).to(device)
    y = (torch.arange(4) % num_classes).to(device)
    before = _state(engine)
    with engine.probing() as point:
        first = measure(point, x, y, np.array([1e-3]))
    with engine.probing() as point:
        second = measure(point, x, y, np.array([1e-3]))
    after = _state(engine)
    why = None
    if not _same(before, after, device):
        why = "its weights, buffers or random state differ after a probe"
    elif not _same([first["loss0"], first["loss"], first["grad_norm"]],
                   [second["loss0"], second["loss"], second["grad_norm"]], device):
        why = "the same batch at the same weights gave a different loss or gradient after a probe"
    if why is not None:
        raise ConfigError(f"train.probe: this model keeps state the probe cannot restore ({why}), so probing would "
                          "change the run; remove train.probe, or keep the model's random draws on torch's generator "
                          "and its running values in registered buffers")


def _state(engine: Engine) -> list[Any]:
    """Copies of everything the engine's checkpoints hold and of torch's generators, flattened."""
    out: list[Any] = [torch.get_rng_state()]
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out += torch.cuda.get_rng_state_all()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for k in sorted(value, key=str):
                out.append(str(k))
                walk(value[k])
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)
        elif isinstance(value, torch.Tensor):
            out.append(value.detach().clone())
        elif isinstance(value, np.ndarray):
            out.append(value.copy())
        else:
            out.append(value)

    walk(engine.state())
    return out


def _same(a: list[Any], b: list[Any], device: torch.device) -> bool:
    """Equal, bit for bit on the CPU; on an accelerator, up to its non-deterministic kernels."""
    if len(a) != len(b):
        return False
    exact = device.type == "cpu"
    for u, v in zip(a, b):
        if isinstance(u, (list, tuple)):
            if not _same(list(u), list(v), device):
                return False
            continue
        if isinstance(u, torch.Tensor) or isinstance(u, np.ndarray):
            tu, tv = torch.as_tensor(u).cpu(), torch.as_tensor(v).cpu()
            if tu.shape != tv.shape or tu.dtype != tv.dtype:
                return False
            if exact or not tu.is_floating_point():
                if not torch.equal(tu, tv):
                    return False
            elif not torch.allclose(tu, tv, rtol=1e-3, atol=1e-6, equal_nan=True):
                return False
        elif isinstance(u, float) and not exact:
            if not math.isclose(u, v, rel_tol=1e-3, abs_tol=1e-6):
                return False
        elif u != v and not (isinstance(u, float) and math.isnan(u) and math.isnan(v)):
            return False
    return True
