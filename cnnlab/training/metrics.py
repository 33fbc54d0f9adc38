"""Evaluation of a model on a split: loss, top-1, top-5 and the confusion matrix."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.data.batches.memory import Loader


@dataclass
class Evaluation:
    """Totals over one split."""

    loss: float
    acc: float
    top5: float | None  # None when there are fewer than 5 classes
    confusion: torch.Tensor  # (K, K) counts, rows = true class, columns = predicted

    @property
    def per_class_acc(self) -> list[float | None]:
        """Accuracy of each true class (None for classes absent from the split)."""
        totals = self.confusion.sum(1)
        return [
            (float(self.confusion[i, i]) / float(t)) if t > 0 else None
            for i, t in enumerate(totals.tolist())
        ]


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: Loader,
    loss_fn: nn.Module,
    num_classes: int,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> Evaluation:
    """Run the model over the loader once, in eval mode, accumulating on the device."""
    was_training = model.training
    model.eval()
    device = loader.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    top5_hits = torch.zeros((), dtype=torch.long, device=device)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.long, device=device)
    n = 0
    for x, y in loader:
        with autocast():
            logits = model(x)
        logits = logits.float()
        loss_sum += loss_fn(logits, y).double() * len(y)
        pred = logits.argmax(1)
        confusion += torch.bincount(y * num_classes + pred, minlength=num_classes * num_classes)
        if num_classes >= 5:
            top5_hits += (logits.topk(5, dim=1).indices == y[:, None]).any(1).sum()
        n += len(y)
    model.train(was_training)
    confusion = confusion.view(num_classes, num_classes).cpu()
    n = max(n, 1)
    return Evaluation(
        loss=float(loss_sum) / n,
        acc=float(confusion.diagonal().sum()) / n,
        top5=float(top5_hits) / n if num_classes >= 5 else None,
        confusion=confusion,
    )
