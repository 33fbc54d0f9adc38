"""The one training loop: used by `cnnlab train`, `cnnlab resume` and every study run, for both engines.

Each step: the schedule's lr goes to the engine, the engine takes one step on the batch.
After each epoch the loop evaluates every split that exists, steps the schedule, calls the
callbacks' on_epoch_end (early stopping, study pruning, the user's: cnnlab/callbacks.py, dispatched
by hooks.py), saves best (by validation accuracy) and last (the full state needed to resume
bit-for-bit on CPU), and rewrites metrics.jsonl and curves.png, all through the run directory
(cnnlab/rundir.py). A callback's stop() ends the run after the current step as `stopped`, with
last.pt written where it stopped.

last is also saved inside an epoch: every `train.checkpoint_every` steps, and when a stop is
requested (SIGINT, SIGTERM: signals.py). Such a checkpoint holds the epoch's progress
("partial": steps done, running sums, the data generator as the epoch began), and resuming
from it replays the same batches from the next step on.

A run stops as diverged when a step loss is NaN or infinite, or when the smoothed loss
(TensorBoard's smoothing, weight 0.9) exceeds `train.diverge_factor` times the loss of the
run's first step, taken before any update (ln K for a K-class cross-entropy): an lr that blows
the weights up does so within a few steps, so a mean over several first steps would already
hold the blow-up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cnnlab.callbacks import Callback, StopTraining
from cnnlab.data.batches.memory import Loader
from cnnlab.device import Autocast
from cnnlab.errors import DivergedError, Interrupted
from cnnlab.plots.curves import plot_curves
from cnnlab.rundir import Run
from cnnlab.training.bookkeeping import DivergenceGuard, EpochSums, PlateauWindow
from cnnlab.training.engine import Engine, StepResult
from cnnlab.training.hooks import Hooks
from cnnlab.training.logged import metric_mode
from cnnlab.training.metrics import balanced_metrics, evaluate
from cnnlab.training.progress import Reporter
from cnnlab.training.schedule import Schedule

__all__ = ["Callback", "StopTraining", "TrainState", "Trainer"]

@dataclass
class TrainState:
    """Everything about a run's progress that is not the engine's."""

    epoch: int = 0  # epochs completed
    history: list[dict[str, Any]] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    best_value: float | None = None
    best_epoch: int | None = None
    elapsed: float = 0.0  # training seconds over all sessions of this run
    stop: list[str] | None = None  # [status, reason] once a callback ended the run early

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "history": self.history, "best_value": self.best_value,
                "best_epoch": self.best_epoch, "elapsed": self.elapsed, "stop": self.stop}


class Trainer:
    """Fits an engine's network; owns nothing but the loop and what it writes into the run."""

    def __init__(
        self,
        *,
        engine: Engine,
        schedule: Schedule,
        loss_fn: nn.Module,
        train_loader: Loader,
        eval_loaders: dict[str, Loader],
        num_classes: int,
        epochs: int,
        run: Run,
        generator: torch.Generator,
        autocast: Autocast,
        reporter: Reporter,
        meta: dict[str, Any],
        callbacks: list[Callback] | None = None,
        checkpoint_every: int | None = None,
        diverge_factor: float | None = None,
        stop_requested: Callable[[], int | None] = lambda: None,
        select: str | None = None,
    ):
        self.engine, self.schedule, self.loss_fn = engine, schedule, loss_fn
        self.train_loader, self.eval_loaders = train_loader, eval_loaders
        self.num_classes, self.epochs, self.run = num_classes, epochs, run
        self.generator, self.autocast = generator, autocast
        self.reporter, self.meta = reporter, meta
        self.hooks = Hooks(callbacks or [])
        self.callbacks = self.hooks.callbacks
        self.checkpoint_every, self.diverge_factor, self.stop_requested = checkpoint_every, diverge_factor, stop_requested
        self._partial: dict[str, Any] | None = None  # the epoch in progress, as a checkpoint keeps it
        self._pending: list[tuple[float, torch.Tensor]] = []  # (lr, loss) of steps whose loss is still on the device
        self.guard = DivergenceGuard(diverge_factor)
        # train.select (val_acc by default; None: the last epoch is best), compared in its own direction.
        self.select = select if select is not None else "val_acc" if "val" in eval_loaders else None
        self.sign = 1.0 if self.select is None or metric_mode(self.select) == "max" else -1.0
        self.device = train_loader.device
        # A host sync per step is free on CPU; on a GPU check for NaN every few steps instead.
        self.check_every = 1 if self.device.type == "cpu" else 25
        self.state = TrainState()

    # ------------------------------------------------------------------ state

    def restore(self, payload: dict[str, Any]) -> None:
        """Continue from a last checkpoint's payload, exactly where it stopped."""
        self.engine.load_state(payload)
        self.schedule.load_state_dict(payload["schedule"])
        rng = payload["rng"]
        if "torch" in rng:  # NumPy-engine runs of cnnlab 0.1 kept only the data generator
            torch.set_rng_state(_tensor(rng["torch"]))
        if len(rng.get("cuda", [])) and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.generator.set_state(_tensor(rng["data"]))
        saved = payload.get("callbacks", {})
        for cb in self._stateful():
            if cb.state_key in saved:  # a callback added since the run started begins fresh
                cb.load_state_dict(saved[cb.state_key])
        s = payload["state"]
        self.state = TrainState(epoch=s["epoch"], history=list(s["history"]), step_losses=list(payload["step_losses"]),
                                best_value=s["best_value"], best_epoch=s["best_epoch"], elapsed=s["elapsed"],
                                stop=s.get("stop"))
        self._partial = payload.get("partial")
        self.guard.restore(self.state.step_losses)  # the guard's running average, as it was

    def position(self) -> str:
        """Where the run stands, in words: 'after epoch 2' or 'in epoch 3 after step 40'."""
        if self._partial is not None:
            return f"in epoch {self._partial['epoch']} after step {self._partial['step']}"
        return f"after epoch {self.state.epoch}"

    def _stateful(self) -> list[Any]:
        return self.hooks.stateful()

    def save_init(self) -> None:
        """init: the weights before the first step (the landscape analysis starts its line there)."""
        payload = {**self.meta, "model": self.engine.weights(), "epoch": 0}
        self.run.write_checkpoint("init", payload, self.engine.checkpoint_format)
        self._saved("init")

    def _saved(self, which: str) -> None:
        if self.run.writes and self.hooks.wants("on_checkpoint"):
            self.hooks.call("on_checkpoint", which, self.run.checkpoint_path(which))

    def save_best(self, epoch: int, metrics: dict[str, Any]) -> None:
        """best: the evaluated weights of the best epoch so far."""
        payload = {**self.meta, "model": self.engine.weights(), "epoch": epoch, "metrics": metrics}
        self.run.write_checkpoint("best", payload, self.engine.checkpoint_format)
        self._saved("best")

    def save_last(self) -> None:
        """last: everything needed to resume after this epoch."""
        payload = {
            **self.meta,
            **self.engine.state(),
            "schedule": self.schedule.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
                "data": self.generator.get_state(),
            },
            "callbacks": {cb.state_key: cb.state_dict() for cb in self._stateful()},
            "state": self.state.to_dict(),
            "step_losses": self.state.step_losses,
            **({"partial": self._partial} if self._partial is not None else {}),
        }
        self.run.write_checkpoint("last", payload, self.engine.checkpoint_format)
        self._saved("last")

    # ------------------------------------------------------------------ loop

    def fit(self) -> TrainState:
        """Train from state.epoch to the last epoch (or until a callback stops the run)."""
        if self.state.stop is not None:  # resuming a run that already ended early
            raise StopTraining(*self.state.stop)
        with self.engine.running():
            for epoch in range(self.state.epoch + 1, self.epochs + 1):
                start = time.perf_counter()
                self.hooks.call("on_epoch_start", epoch)
                partial, self._partial = self._partial, None
                metrics = {"epoch": epoch, "lr": partial["lr"] if partial else self.schedule.lr}
                metrics.update(self._train_epoch(epoch, partial))
                for name, loader in self.eval_loaders.items():
                    ev = evaluate(self.engine.eval_model(), loader, self.loss_fn, self.num_classes, self.autocast)
                    metrics[f"{name}_loss"], metrics[f"{name}_acc"] = ev.loss, ev.acc
                    if ev.top5 is not None:
                        metrics[f"{name}_top5"] = ev.top5
                    metrics[f"{name}_balanced_acc"], metrics[f"{name}_macro_f1"] = balanced_metrics(ev.confusion)
                    metrics[f"{name}_ece"] = ev.ece  # calibration: study tables can rank by it
                metrics["seconds"] = time.perf_counter() - start + (partial["seconds"] if partial else 0.0)
                self.schedule.after_epoch(metrics)
                stop = None
                try:
                    self.hooks.call("on_epoch_end", epoch, metrics)
                except StopTraining as e:
                    stop = e  # raised again once this epoch's files are written
                if stop is None and (reason := self.hooks.stop_requested()) is not None:
                    stop = StopTraining("stopped", reason)
                self._end_epoch(epoch, metrics, stop)
                if stop is not None:
                    raise stop
                if self.stop_requested() is not None and epoch < self.epochs:
                    raise Interrupted(self.stop_requested(), f"after epoch {epoch}")  # type: ignore[arg-type]
        return self.state

    def _train_epoch(self, epoch: int, partial: dict[str, Any] | None = None) -> dict[str, float]:
        """One pass over the training batches (the rest of one, from a mid-epoch checkpoint)."""
        started = time.perf_counter()
        if partial is not None:  # replay the epoch's draws from where it began, then carry on
            self.generator.set_state(_tensor(partial["epoch_rng"]))
        epoch_rng = self.generator.get_state()
        lr = self.schedule.lr if partial is None else partial["lr"]
        done = 0 if partial is None else int(partial["step"])
        sums = EpochSums.start(self.device, self.num_classes, partial["sums"] if partial else None)
        every = self.schedule.every
        window = PlateauWindow(every, self.device, (partial or {}).get("sums", {}).get("window", 0.0)) if every else None
        self.reporter.start_epoch(epoch, done)
        watch = self.hooks.wants("on_batch_start")
        for x, y in self.train_loader.batches(skip=done):
            if watch:
                self.hooks.call("on_batch_start", (epoch - 1) * len(self.train_loader) + done + 1, x, y)
            step = self._step(x, y)
            sums.add(step, y)
            done += 1
            mean = window.add(step.loss, done) if window is not None else None
            if mean is not None:
                self.schedule.after_window(mean)
            # Between steps: losses to the host, stop requests, checkpoints inside the epoch.
            signum, save = self._after_step(done)
            if (signum is not None or save or self.state.stop is not None) and done < len(self.train_loader):
                self._partial = {"epoch": epoch, "step": done, "lr": lr, "epoch_rng": epoch_rng,
                                 "seconds": time.perf_counter() - started + (partial["seconds"] if partial else 0.0),
                                 "sums": {**sums.to_dict(), "window": float(window.sum) if window else 0.0}}
                self.save_last()
                self._partial = None
                self._stop_inside_epoch(signum, epoch, done)
        self._flush()
        self.reporter.close()
        return sums.metrics()

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> StepResult:
        """One optimizer step at the schedule's lr (its loss kept, to be read in bulk by _flush)."""
        lr = self.schedule.lr
        self.engine.set_lr(lr, self.schedule.momentum)
        step = self.engine.train_step(x, y)
        self._pending.append((lr, step.loss))
        self.schedule.after_batch()
        return step

    def _after_step(self, done: int) -> tuple[int | None, bool]:
        """(the signal asking the run to stop, whether to save last.pt now), after reading the losses
        when it is time (every step on the CPU, every 25 on a GPU) and whenever a stop or save is due."""
        signum = self.stop_requested()
        save = self.checkpoint_every is not None and done % self.checkpoint_every == 0
        asked = self.hooks.stop_requested()  # a callback's stop(): after this step, checkpoints written
        if len(self._pending) >= self.check_every or signum is not None or save or asked is not None:
            self._flush()
            asked = self.hooks.stop_requested()  # on_step_end may have asked just now
        if asked is not None and done < len(self.train_loader):
            self.state.stop = ["stopped", f"{asked} (in epoch {self.state.epoch + 1} after step {done})"]
        return signum, save

    def _stop_inside_epoch(self, signum: int | None, epoch: int, done: int) -> None:
        """After last.pt was saved inside an epoch: end here on a signal or a callback's stop()."""
        if signum is not None:
            self.reporter.close()
            raise Interrupted(signum, f"in epoch {epoch} after step {done}")
        if self.state.stop is not None:
            self.reporter.close()
            self.reporter.message(self.state.stop[1])
            raise StopTraining(*self.state.stop)

    def _flush(self) -> None:
        """Move the pending step losses to the host (one sync), hand them to the callbacks and the
        progress bar, and stop the run at the first one the divergence guard refuses."""
        if not self._pending:
            return
        lrs = [lr for lr, _ in self._pending]
        values = torch.stack([loss for _, loss in self._pending]).cpu().tolist()
        self._pending.clear()
        report = self.hooks.wants("on_step_end")
        for v, lr in zip(values, lrs):
            self.state.step_losses.append(v)
            step = len(self.state.step_losses)
            if report:
                self.hooks.call("on_step_end", step, v, lr)
            self.reporter.advance(v)
            what = self.guard.problem(v, step)
            if what is not None:
                kept = (f"best.pt still holds epoch {self.state.best_epoch}" if self.state.best_epoch is not None
                        else "no epoch had finished")
                epoch = self.state.epoch + 1
                raise DivergedError(
                    f"{what} at epoch {epoch}, step {step}: the run diverged. "
                    f"Try a lower learning rate (optim.lr is {self.schedule.lr:.3g} now) or gradient clipping "
                    f"(train.grad_clip=1.0); {kept}"
                )

    def _end_epoch(self, epoch: int, metrics: dict[str, Any], stop: StopTraining | None) -> None:
        s = self.state
        s.epoch = epoch
        s.elapsed += metrics["seconds"]
        s.history.append(metrics)
        if stop is not None:
            s.stop = [stop.status, stop.reason]
        value = self.sign * metrics[self.select] if self.select else float(epoch)
        if s.best_value is None or value > s.best_value:
            s.best_value, s.best_epoch = value, epoch
            self.save_best(epoch, metrics)
        self.save_last()
        self.run.write_history(s.history)
        self.run.write_steps(s.step_losses, len(self.train_loader))
        if self.run.writes:  # not the other processes of a distributed run
            plot_curves(s.history, s.step_losses, len(self.train_loader), self.run.curves_png, title=self.run.name)
        notes = self.hooks.notes()
        self.reporter.end_epoch(metrics, self.engine.eval_tag, notes)
        if stop is not None:
            self.reporter.message(stop.reason)


def _tensor(state: Any) -> torch.Tensor:
    """A generator state as torch wants it (.npz checkpoints hold it as a NumPy array)."""
    return state if isinstance(state, torch.Tensor) else torch.from_numpy(state.copy())
