"""The one training loop: used by `cnnlab train`, `cnnlab resume` and every study run.

After each epoch it evaluates every split that exists, steps the schedule, calls the
callbacks (studies prune here), saves best.pt (by validation accuracy) and last.pt (the
full state needed to resume bit-for-bit on CPU), and rewrites metrics.jsonl and curves.png.
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

from cnnlab.analysis.curves import plot_curves
from cnnlab.data.augment import hard_labels
from cnnlab.data.loader import Loader
from cnnlab.errors import DivergedError
from cnnlab.io import write_jsonl
from cnnlab.train import checkpoint
from cnnlab.train.metrics import evaluate
from cnnlab.train.progress import Reporter
from cnnlab.train.schedule import Schedule

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
    ):
        self.model, self.optimizer, self.schedule, self.loss_fn = model, optimizer, schedule, loss_fn
        self.train_loader, self.eval_loaders = train_loader, eval_loaders
        self.num_classes, self.epochs, self.run_dir = num_classes, epochs, run_dir
        self.generator, self.autocast, self.scaler, self.grad_clip = generator, autocast, scaler, grad_clip
        self.reporter, self.meta, self.callbacks = reporter, meta, callbacks or []
        self.select = "val_acc" if "val" in eval_loaders else None  # None: the last epoch is best
        self.device = train_loader.device
        # A host sync per step is free on CPU; on a GPU check for NaN every few steps instead.
        self.check_every = 1 if self.device.type == "cpu" else 25
        self.state = TrainState()

    # ------------------------------------------------------------------ state

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Continue from a last.pt payload, exactly where it stopped."""
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
        s = ckpt["state"]
        self.state = TrainState(
            epoch=s["epoch"], history=list(s["history"]), step_losses=ckpt["step_losses"].tolist(),
            best_value=s["best_value"], best_epoch=s["best_epoch"], elapsed=s["elapsed"],
        )

    def _full_state(self) -> dict[str, Any]:
        s = self.state
        return {
            **self.meta,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
                "data": self.generator.get_state(),
            },
            "state": {"epoch": s.epoch, "history": s.history, "best_value": s.best_value,
                      "best_epoch": s.best_epoch, "elapsed": s.elapsed},
            "step_losses": torch.tensor(s.step_losses, dtype=torch.float32),
        }

    # ------------------------------------------------------------------ loop

    def fit(self) -> TrainState:
        """Train from state.epoch to the last epoch."""
        for epoch in range(self.state.epoch + 1, self.epochs + 1):
            start = time.perf_counter()
            metrics = {"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"]}
            metrics.update(self._train_epoch(epoch))
            for name, loader in self.eval_loaders.items():
                ev = evaluate(self.model, loader, self.loss_fn, self.num_classes, self.autocast)
                metrics[f"{name}_loss"], metrics[f"{name}_acc"] = ev.loss, ev.acc
                if ev.top5 is not None:
                    metrics[f"{name}_top5"] = ev.top5
            metrics["seconds"] = time.perf_counter() - start
            self.schedule.after_epoch(metrics)
            self._end_epoch(epoch, metrics)
            for callback in self.callbacks:
                callback(epoch, metrics)
        return self.state

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        self.reporter.start_epoch(epoch)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        seen = 0
        pending: list[torch.Tensor] = []
        for x, y in self.train_loader:
            with self.autocast():
                logits = self.model(x)
                loss = self.loss_fn(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(self.optimizer)
            else:
                loss.backward()
            if self.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
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
        return {"train_loss": float(loss_sum) / seen, "train_acc": float(correct) / seen}

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

    def _end_epoch(self, epoch: int, metrics: dict[str, Any]) -> None:
        s = self.state
        s.epoch = epoch
        s.elapsed += metrics["seconds"]
        s.history.append(metrics)
        value = metrics[self.select] if self.select else float(epoch)
        if s.best_value is None or value > s.best_value:
            s.best_value, s.best_epoch = value, epoch
            checkpoint.save(self.run_dir / "best.pt",
                            {**self.meta, "model": self.model.state_dict(), "epoch": epoch, "metrics": metrics})
        checkpoint.save(self.run_dir / "last.pt", self._full_state())
        write_jsonl(self.run_dir / "metrics.jsonl", s.history)
        plot_curves(s.history, s.step_losses, len(self.train_loader), self.run_dir / "curves.png",
                    title=self.run_dir.name)
        self.reporter.end_epoch(metrics)
