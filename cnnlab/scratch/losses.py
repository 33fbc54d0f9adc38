"""Classification losses on (N, K) logits and integer labels, averaged over the batch."""

from __future__ import annotations

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax via the log-sum-exp trick (subtract the row max before exp)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _check(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Validate shapes and return the labels as an integer index array."""
    if logits.ndim != 2 or y.shape != (logits.shape[0],):
        raise ValueError(f"expected logits (N, K) and labels (N,), got {logits.shape}, {y.shape}")
    return np.asarray(y, dtype=np.intp)


class SoftmaxCrossEntropy:
    """Mean cross-entropy of softmax(logits), optionally against label-smoothed targets.

    With smoothing eps the target is (1 - eps) * one_hot + eps / K, the same definition as
    torch.nn.functional.cross_entropy(label_smoothing=eps).
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
        self.label_smoothing = label_smoothing
        self._cache: tuple[np.ndarray, np.ndarray] | None = None

    def _targets(self, y: np.ndarray, shape: tuple[int, int], dtype) -> np.ndarray:
        """Target distribution per row."""
        n, k = shape
        target = np.full(shape, self.label_smoothing / k, dtype=dtype)
        target[np.arange(n), y] += 1.0 - self.label_smoothing
        return target

    def forward(self, logits: np.ndarray, y: np.ndarray) -> float:
        y = _check(logits, y)
        log_p = log_softmax(logits)
        target = self._targets(y, logits.shape, logits.dtype)
        self._cache = (log_p, target)
        return float(-(target * log_p).sum() / logits.shape[0])

    __call__ = forward

    def backward(self) -> np.ndarray:
        """d(mean loss)/d(logits) = (softmax - target) / N."""
        if self._cache is None:
            raise RuntimeError("backward called before forward")
        log_p, target = self._cache
        return (np.exp(log_p) - target) / log_p.shape[0]


class MultiClassHinge:
    """Multi-class hinge loss as torch.nn.MultiMarginLoss(p=1, margin).

    loss_n = sum over i != y_n of max(0, margin - x[y_n] + x[i]) / K, then the batch mean.
    """

    def __init__(self, margin: float = 1.0) -> None:
        self.margin = margin
        self._cache: tuple[np.ndarray, np.ndarray, np.dtype] | None = None

    def forward(self, logits: np.ndarray, y: np.ndarray) -> float:
        y = _check(logits, y)
        n, k = logits.shape
        rows = np.arange(n)
        margins = self.margin - logits[rows, y][:, None] + logits
        margins[rows, y] = 0.0  # the true class is not compared with itself
        active = margins > 0
        self._cache = (active, y, logits.dtype)
        return float(np.where(active, margins, 0.0).sum() / (n * k))

    __call__ = forward

    def backward(self) -> np.ndarray:
        """+1 for every violating class, minus their count for the true class, over N*K."""
        if self._cache is None:
            raise RuntimeError("backward called before forward")
        active, y, dtype = self._cache
        n, k = active.shape
        grad = active.astype(dtype)
        grad[np.arange(n), y] = -active.sum(axis=1)
        return grad / (n * k)
