"""What the training loop keeps track of beside the step itself: an epoch's running sums (kept on
the device, so a step costs no host sync) and the divergence guard over the step losses."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from cnnlab.data.augment import hard_labels
from cnnlab.training.engine import StepResult
from cnnlab.training.metrics import balanced_metrics

SMOOTHING = 0.9  # the divergence guard's smoothing: TensorBoard's


@dataclass
class EpochSums:
    """Running sums of an epoch's training steps; `to_dict` is what a mid-epoch checkpoint keeps."""

    loss: torch.Tensor  # float64, summed over images
    l2: torch.Tensor
    confusion: torch.Tensor  # (K * K,) long: true class * K + predicted class, for the balanced metrics
    num_classes: int
    seen: int = 0
    has_l2: bool = False

    @classmethod
    def start(cls, device: torch.device, num_classes: int, saved: dict[str, Any] | None = None) -> EpochSums:
        s = saved or {}
        confusion = torch.zeros(num_classes * num_classes, dtype=torch.long, device=device)
        if "confusion" in s:  # sparse: [cell, count] pairs
            for cell, count in s["confusion"]:
                confusion[int(cell)] = int(count)
        elif s.get("correct"):  # a checkpoint from before the confusion was kept: its hits, on the diagonal
            confusion[0] = int(s["correct"])
        return cls(torch.tensor(float(s.get("loss", 0.0)), dtype=torch.float64, device=device),
                   torch.tensor(float(s.get("l2", 0.0)), dtype=torch.float64, device=device),
                   confusion, num_classes, int(s.get("seen", 0)), bool(s.get("has_l2", False)))

    def add(self, step: StepResult, y: torch.Tensor) -> None:
        n = len(y)
        self.loss += step.loss.double() * n
        if step.l2 is not None:
            self.l2 += step.l2.double() * n
            self.has_l2 = True
        # With mixup/cutmix, y holds class probabilities: a hit is the argmax of the mixed target.
        # index_add_ touches only the batch's cells: a bincount over K*K cells (250,000 for the faces'
        # 500 classes) would allocate and add a full matrix every step.
        cells = hard_labels(y) * self.num_classes + step.logits.argmax(1)
        self.confusion.index_add_(0, cells, torch.ones_like(cells))
        self.seen += n

    def metrics(self) -> dict[str, float]:
        """train_loss, train_acc, train_balanced_acc, train_macro_f1 (and train_l2) of the epoch: one host sync."""
        k = self.num_classes
        confusion = self.confusion.view(k, k).cpu()
        balanced, f1 = balanced_metrics(confusion)
        out = {"train_loss": float(self.loss) / self.seen, "train_acc": float(confusion.diagonal().sum()) / self.seen,
               "train_balanced_acc": balanced, "train_macro_f1": f1}
        if self.has_l2:
            out["train_l2"] = float(self.l2) / self.seen
        return out

    def to_dict(self) -> dict[str, Any]:
        cells = torch.nonzero(self.confusion).flatten()
        return {"loss": float(self.loss), "l2": float(self.l2), "seen": self.seen, "has_l2": self.has_l2,
                "confusion": [[int(c), int(self.confusion[c])] for c in cells.tolist()]}


class DivergenceGuard:
    """Stops a run whose training loss is NaN or infinite, or whose smoothed loss exceeds `factor`
    times its first step's (module docstring of trainer.py says why the first step)."""

    def __init__(self, factor: float | None):
        self.factor = factor
        self.first: float | None = None
        self.avg = (0.0, 0.0)  # (value, bias-correction weight): value / weight is the average

    def restore(self, losses: list[float]) -> None:
        """The guard as it was after these step losses (a resumed run)."""
        self.first, self.avg = None, (0.0, 0.0)
        for v in losses:
            self._add(v)

    def _add(self, value: float) -> None:
        if self.first is None:
            self.first = value
        self.avg = SMOOTHING * self.avg[0] + (1 - SMOOTHING) * value, SMOOTHING * self.avg[1] + (1 - SMOOTHING)

    def problem(self, value: float, step: int) -> str | None:
        """Take step `step`'s loss; what is wrong with the run, or None."""
        self._add(value)
        if not math.isfinite(value):
            return f"training loss became {value}"
        if self.factor is not None and step > 1 and self.first is not None:
            smoothed = self.avg[0] / self.avg[1]
            if smoothed > self.factor * abs(self.first):
                return (f"smoothed training loss reached {smoothed:.4g}, more than train.diverge_factor "
                        f"({self.factor:g}) times its first step's {self.first:.4g}")
        return None


class PlateauWindow:
    """`schedule.every: N` (a plateau stepped every N batches, the faces write-up's loop): the mean
    training loss of each run of N batches of an epoch, summed on the device, one host sync a window."""

    def __init__(self, every: int, device: torch.device, saved: float = 0.0):
        self.every = every
        self.sum = torch.tensor(float(saved), dtype=torch.float64, device=device)

    def add(self, loss: torch.Tensor, done: int) -> float | None:
        """Take the loss of the epoch's step number `done` (from 1); the window's mean when it is full."""
        self.sum += loss.double()
        if done % self.every:
            return None
        mean = float(self.sum) / self.every
        self.sum.zero_()
        return mean
