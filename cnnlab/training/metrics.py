"""Evaluation of a model on a split: loss, top-1, top-5, the confusion matrix, and how well
calibrated its probabilities are: expected calibration error (ECE), negative log-likelihood and
Brier score (Guo et al. 2017).

ECE uses 15 equal-width bins of the top-class confidence (Guo et al.'s choice, so numbers compare
with the literature): sum over bins of (images in bin / images) * |accuracy in bin - mean
confidence in bin|. NLL is the mean -log p(true class) whatever the training loss was (hinge,
label smoothing); Brier is the mean over images of sum_k (p_k - [k = y])^2. All of them are
computed from the softmax of logits / temperature (1 unless `cnnlab calibrate` fitted one).
"""

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
    nll: float = float("nan")
    brier: float = float("nan")
    ece: float = float("nan")
    bins: dict[str, list] | None = None  # per confidence bin: images, mean confidence, accuracy


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
    temperature: float = 1.0,
) -> Evaluation:
    """Run the model over the loader once, in eval mode, accumulating on the device; logits are
    divided by `temperature` before every measure (the loss included)."""
    was_training = model.training
    model.eval()
    device = loader.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    top5_hits = torch.zeros((), dtype=torch.long, device=device)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.long, device=device)
    calib = Calibration(device)
    n = 0
    for x, y in loader:
        with autocast():
            logits = model(x)
        logits = logits.float()
        if temperature != 1.0:
            logits = logits / temperature
        loss_sum += loss_fn(logits, y).double() * len(y)
        pred = logits.argmax(1)
        confusion += torch.bincount(y * num_classes + pred, minlength=num_classes * num_classes)
        if num_classes >= 5:
            top5_hits += (logits.topk(5, dim=1).indices == y[:, None]).any(1).sum()
        calib.add(logits, y)
        n += len(y)
    model.train(was_training)
    confusion = confusion.view(num_classes, num_classes).cpu()
    n = max(n, 1)
    return Evaluation(
        loss=float(loss_sum) / n,
        acc=float(confusion.diagonal().sum()) / n,
        top5=float(top5_hits) / n if num_classes >= 5 else None,
        confusion=confusion,
        **calib.result(),
    )


def balanced_metrics(confusion: torch.Tensor) -> tuple[float, float]:
    """(balanced accuracy, macro-F1) from a (K, K) confusion matrix (rows: true classes): the mean
    recall over the classes present, and the mean F1 = 2 TP / (2 TP + FP + FN) over the classes
    present or predicted (scikit-learn's balanced_accuracy_score and f1_score(average="macro"))."""
    c = confusion.double()
    tp, true, predicted = c.diagonal(), c.sum(1), c.sum(0)
    present = true > 0
    balanced = float((tp[present] / true[present]).mean()) if present.any() else 0.0
    seen = present | (predicted > 0)
    f1 = 2 * tp[seen] / (true[seen] + predicted[seen])
    return balanced, float(f1.mean()) if seen.any() else 0.0


BINS = 15  # equal-width confidence bins of the ECE


class Calibration:
    """Running sums for ECE, NLL and Brier over batches of logits, kept on the device."""

    def __init__(self, device: torch.device):
        self.count = torch.zeros(BINS, dtype=torch.float64, device=device)
        self.conf = torch.zeros(BINS, dtype=torch.float64, device=device)
        self.hits = torch.zeros(BINS, dtype=torch.float64, device=device)
        self.nll = torch.zeros((), dtype=torch.float64, device=device)
        self.brier = torch.zeros((), dtype=torch.float64, device=device)

    def add(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        logp = torch.log_softmax(logits.double(), 1)
        p = logp.exp()
        conf, pred = p.max(1)
        # Bin b holds confidences in (b/15, (b+1)/15]; a confidence of exactly 1 lands in the last.
        b = (conf * BINS).ceil().long().clamp(1, BINS) - 1
        self.count += torch.bincount(b, minlength=BINS)
        self.conf += torch.bincount(b, weights=conf, minlength=BINS)
        self.hits += torch.bincount(b, weights=(pred == y).double(), minlength=BINS)
        self.nll -= logp.gather(1, y[:, None]).sum()
        p = p.clone()
        p[torch.arange(len(y), device=p.device), y] -= 1.0
        self.brier += (p * p).sum()

    def result(self) -> dict[str, object]:
        count, conf, hits = (t.cpu() for t in (self.count, self.conf, self.hits))
        n = float(count.sum())
        if n == 0:
            return {}
        gap = (hits - conf).abs()  # per bin: images x |accuracy - mean confidence|
        per = [(int(c), float(f) / c if c else None, float(h) / c if c else None)
               for c, f, h in zip(count.tolist(), conf.tolist(), hits.tolist())]
        return {"nll": float(self.nll) / n, "brier": float(self.brier) / n, "ece": float(gap.sum()) / n,
                "bins": {"images": [c for c, _, _ in per], "confidence": [f for _, f, _ in per],
                         "accuracy": [h for _, _, h in per]}}
