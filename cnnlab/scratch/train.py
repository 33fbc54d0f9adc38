"""Minimal training and evaluation loops for the NumPy engine."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .layers import Layer
from .losses import SoftmaxCrossEntropy
from .optim import Optimizer


def minibatches(n: int, batch_size: int, rng: np.random.Generator | None = None
                ) -> Iterator[np.ndarray]:
    """Yield index arrays covering range(n), shuffled when an rng is given."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def train_step(model: Layer, loss_fn, optimizer: Optimizer, x: np.ndarray,
               y: np.ndarray) -> tuple[float, np.ndarray]:
    """One forward/backward/update; returns (loss, logits)."""
    logits = model.forward(x, training=True)
    loss = loss_fn.forward(logits, y)
    grad = loss_fn.backward().astype(logits.dtype, copy=False)
    # The data needs no gradient, which lets the first convolution skip its col2im.
    model.backward_params_only(grad)
    optimizer.step()
    return loss, logits


def train_epoch(model: Layer, optimizer: Optimizer, x: np.ndarray, y: np.ndarray,
                batch_size: int, rng: np.random.Generator, loss_fn=None,
                augment=None) -> dict[str, float]:
    """One pass over shuffled data; ``augment(batch, rng)`` may transform each batch."""
    loss_fn = loss_fn if loss_fn is not None else SoftmaxCrossEntropy()
    total_loss, correct = 0.0, 0
    for index in minibatches(len(x), batch_size, rng):
        xb = x[index] if augment is None else augment(x[index], rng)
        loss, logits = train_step(model, loss_fn, optimizer, xb, y[index])
        total_loss += loss * len(index)
        correct += int((logits.argmax(axis=1) == y[index]).sum())
    return {"loss": total_loss / len(x), "accuracy": correct / len(x)}


def predict(model: Layer, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Logits for ``x`` in evaluation mode (dropout off, BN running statistics)."""
    parts = [model.forward(x[start:start + batch_size], training=False)
             for start in range(0, len(x), batch_size)]
    return np.concatenate(parts)


def evaluate(model: Layer, x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> float:
    """Classification accuracy in evaluation mode."""
    return float((predict(model, x, batch_size).argmax(axis=1) == y).mean())
