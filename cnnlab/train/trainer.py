"""The one training loop: used by `cnnlab train`, `cnnlab resume` and every study run.

After each epoch it evaluates every split that exists, steps the schedule, calls the
callbacks (early stopping, study pruning), saves best.pt (by validation accuracy) and last.pt
(the full state needed to resume bit-for-bit on CPU), and rewrites metrics.jsonl and curves.png.

With `train.ema`, evaluation (every epoch, and so the choice of best.pt) uses the exponential
moving average of the weights, updated after every optimizer step, BatchNorm running statistics
averaged alike; best.pt and
last.pt hold those averaged weights under "model" (what evaluate and predict load), and
last.pt keeps the optimizer's own weights under "raw_model" for resuming.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from cnnlab.analysis.curves import plot_curves
from cnnlab.data.augment import hard_labels
from cnnlab.data.loader import Loader
from cnnlab.errors import DivergedError
from cnnlab.io import write_jsonl
from cnnlab.train import checkpoint
from cnnlab.train.losses import L2Penalty
from cnnlab.train.metrics import evaluate
from cnnlab.train.progress import Reporter
from cnnlab.train.schedule import Schedule
from cnnlab.train.tta import with_tta

# Called as callback(epoch, metrics) after each epoch's evaluation, before its checkpoints are
# written; it may raise StopTraining. Optional members: `state_key` with `state_dict()` and
# `load_state_dict()` (its state then travels in last.pt), and `note()` (words for the epoch line).
Callback = Callable[[int, dict[str, Any]], None]


class StopTraining(Exception):
    """Raised by a callback to end a run after this epoch (early stopping, study pruning)."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class TrainState:
    """Everything about a run's progress that is not model or optimizer tensors."""

    epoch: int = 0  # epochs completed
    history: list[dict[str, Any]] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    best_value: float | None = None
    best_epoch: int | None = None
    elapsed: float = 0.0  # training seconds over all sessions of this run
    stop: list[str] | None = None  # [status, reason] once a callback ended the run early


class Trainer:
    """Fits a model; owns nothing but the loop and the files it writes into run_dir."""

    def __init__(
        self,
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: Schedule,
        loss_fn: nn.Module,
        train_loader: Loader,
        eval_loaders: dict[str, Loader],
        num_classes: int,
        epochs: int,
        run_dir: Path,
        generator: torch.Generator,
        autocast: Callable[[], contextlib.AbstractContextManager],
        scaler: torch.amp.GradScaler | None,
        grad_clip: float | None,
        reporter: Reporter,
        meta: dict[str, Any],
        callbacks: list[Callback] | None = None,
        grad_clip_value: float | None = None,
        penalty: L2Penalty | None = None,
        ema: float | None = None,
        tta: str = "none",
        compile_mode: str | None = None,
    ):
        self.model, self.optimizer, self.schedule, self.loss_fn = model, optimizer, schedule, loss_fn
        self.train_loader, self.eval_loaders = train_loader, eval_loaders
        self.num_classes, self.epochs, self.run_dir = num_classes, epochs, run_dir
        self.generator, self.autocast, self.scaler, self.grad_clip = generator, autocast, scaler, grad_clip
        self.reporter, self.meta, self.callbacks = reporter, meta, callbacks or []
        self.grad_clip_value, self.penalty = grad_clip_value, penalty
        # Training steps may run a compiled model; it shares its parameters with self.model,
        # whose state_dict (no `_orig_mod.` prefixes) is what checkpoints hold.
        self.step_model = torch.compile(model, mode=compile_mode) if compile_mode else model
        self.ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema), use_buffers=True)
                    if ema is not None else None)
        self.eval_model = with_tta(self.ema.module if self.ema is not None else model, tta)
        self.eval_tag = ", ".join((["ema"] if ema is not None else []) + (["tta"] if tta != "none" else []))
        self.select = "val_acc" if "val" in eval_loaders else None  # None: the last epoch is best
        self.device = train_loader.device
        # A host sync per step is free on CPU; on a GPU check for NaN every few steps instead.
        self.check_every = 1 if self.device.type == "cpu" else 25
        self.state = TrainState()

    # ------------------------------------------------------------------ state

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Continue from a last.pt payload, exactly where it stopped."""
        if self.ema is not None:
            self.model.load_state_dict(ckpt["raw_model"])
            self.ema.module.load_state_dict(ckpt["model"])
            self.ema.n_averaged.copy_(ckpt["ema_updates"])
        else:
            self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.schedule.load_state_dict(ckpt["schedule"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        rng = ckpt["rng"]
        torch.set_rng_state(rng["torch"])
        if rng.get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.generator.set_state(rng["data"])
        saved = ckpt.get("callbacks", {})
        for cb in self._stateful():
            if cb.state_key in saved:  # a callback added since the run started begins fresh
                cb.load_state_dict(saved[cb.state_key])
        s = ckpt["state"]
        self.state = TrainState(
            epoch=s["epoch"], history=list(s["history"]), step_losses=ckpt["step_losses"].tolist(),
            best_value=s["best_value"], best_epoch=s["best_epoch"], elapsed=s["elapsed"], stop=s.get("stop"),
        )

    def _stateful(self) -> list[Any]:
        return [cb for cb in self.callbacks if hasattr(cb, "state_key")]

    def eval_weights(self) -> dict[str, torch.Tensor]:
        """The weights evaluation uses: the EMA weights when train.ema is set."""
        return (self.ema.module if self.ema is not None else self.model).state_dict()

    def _full_state(self) -> dict[str, Any]:
        s = self.state
        ema = {} if self.ema is None else {"raw_model": self.model.state_dict(), "ema_updates": self.ema.n_averaged}
        return {
            **self.meta,
            "model": self.eval_weights(),
            **ema,
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
                "data": self.generator.get_state(),
            },
            "callbacks": {cb.state_key: cb.state_dict() for cb in self._stateful()},
            "state": {"epoch": s.epoch, "history": s.history, "best_value": s.best_value,
                      "best_epoch": s.best_epoch, "elapsed": s.elapsed, "stop": s.stop},
            "step_losses": torch.tensor(s.step_losses, dtype=torch.float32),
        }

    def save_best(self, epoch: int, metrics: dict[str, Any]) -> None:
        """best.pt: the evaluated weights of the best epoch so far."""
        checkpoint.save(self.run_dir / "best.pt",
                        {**self.meta, "model": self.eval_weights(), "epoch": epoch, "metrics": metrics})

    def save_last(self) -> None:
        """last.pt: everything needed to resume after this epoch."""
        checkpoint.save(self.run_dir / "last.pt", self._full_state())

    # ------------------------------------------------------------------ loop

    def fit(self) -> TrainState:
        """Train from state.epoch to the last epoch (or until a callback stops the run)."""
        if self.state.stop is not None:  # resuming a run that already ended early
            raise StopTraining(*self.state.stop)
        for epoch in range(self.state.epoch + 1, self.epochs + 1):
            start = time.perf_counter()
            metrics = {"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"]}
            metrics.update(self._train_epoch(epoch))
            for name, loader in self.eval_loaders.items():
                ev = evaluate(self.eval_model, loader, self.loss_fn, self.num_classes, self.autocast)
                metrics[f"{name}_loss"], metrics[f"{name}_acc"] = ev.loss, ev.acc
                if ev.top5 is not None:
                    metrics[f"{name}_top5"] = ev.top5
            metrics["seconds"] = time.perf_counter() - start
            self.schedule.after_epoch(metrics)
            stop = None
            try:
                for callback in self.callbacks:
                    callback(epoch, metrics)
            except StopTraining as e:
                stop = e  # raised again once this epoch's files are written
            self._end_epoch(epoch, metrics, stop)
            if stop is not None:
                raise stop
        return self.state

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        self.reporter.start_epoch(epoch)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        l2_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        seen = 0
        pending: list[torch.Tensor] = []
        for x, y in self.train_loader:
            with self.autocast():
                logits = self.step_model(x)
                loss = self.loss_fn(logits, y)
            total = loss
            if self.penalty is not None:  # in full precision, outside autocast
                l2 = self.penalty()
                total = loss + l2
                l2_sum += l2.detach().double() * len(y)
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(total).backward()
                self.scaler.unscale_(self.optimizer)  # clipping below sees the true gradients
            else:
                total.backward()
            if self.grad_clip_value is not None:
                nn.utils.clip_grad_value_(self.model.parameters(), self.grad_clip_value)
            if self.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            if self.scaler is not None:
                self.scaler.step(self.optimizer)  # skipped when unscale_ found inf/NaN gradients
                self.scaler.update()
            else:
                self.optimizer.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            self.schedule.after_batch()
            loss = loss.detach().float()
            loss_sum += loss.double() * len(y)
            # With mixup/cutmix, y holds class probabilities: a hit is the argmax of the mixed target.
            correct += (logits.detach().argmax(1) == hard_labels(y)).sum()
            seen += len(y)
            pending.append(loss)
            if len(pending) >= self.check_every:
                self._flush(pending, epoch)
        self._flush(pending, epoch)
        self.reporter.close()
        out = {"train_loss": float(loss_sum) / seen, "train_acc": float(correct) / seen}
        if self.penalty is not None:
            out["train_l2"] = float(l2_sum) / seen
        return out

    def _flush(self, pending: list[torch.Tensor], epoch: int) -> None:
        """Move step losses to the host, stopping the run at the first non-finite one."""
        if not pending:
            return
        values = torch.stack(pending).cpu().tolist()
        pending.clear()
        for v in values:
            self.state.step_losses.append(v)
            self.reporter.advance(v)
            if not torch.isfinite(torch.tensor(v)):
                step = len(self.state.step_losses)
                lr = self.optimizer.param_groups[0]["lr"]
                raise DivergedError(
                    f"training loss became {v} at epoch {epoch}, step {step}: the run diverged. "
                    f"Try a lower learning rate (optim.lr is {lr:.3g} now) or gradient clipping "
                    f"(train.grad_clip=1.0); best.pt still holds the best epoch before it"
                )

    def _end_epoch(self, epoch: int, metrics: dict[str, Any], stop: StopTraining | None) -> None:
        s = self.state
        s.epoch = epoch
        s.elapsed += metrics["seconds"]
        s.history.append(metrics)
        if stop is not None:
            s.stop = [stop.status, stop.reason]
        value = metrics[self.select] if self.select else float(epoch)
        if s.best_value is None or value > s.best_value:
            s.best_value, s.best_epoch = value, epoch
            self.save_best(epoch, metrics)
        self.save_last()
        write_jsonl(self.run_dir / "metrics.jsonl", s.history)
        plot_curves(s.history, s.step_losses, len(self.train_loader), self.run_dir / "curves.png",
                    title=self.run_dir.name)
        notes = [n for cb in self.callbacks if hasattr(cb, "note") and (n := cb.note())]
        self.reporter.end_epoch(metrics, self.eval_tag, notes)
        if stop is not None:
            self.reporter.message(stop.reason)
