"""What the NumPy-engine benchmarks need around the engine: MNIST as arrays, cnnlab's LeNet
copied into the engine, and minimal training and evaluation loops that time the engine alone
(no loaders, schedules or run directory; `cnnlab train engine=scratch` is the product path).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.read.idx import read_idx
from cnnlab.models import build_model
from cnnlab.scratch import Layer, SoftmaxCrossEntropy
from cnnlab.scratch.optim import Optimizer
from cnnlab.training.numpy_engine import convert

# The usual MNIST pixel statistics (of the training set, in [0, 1] units).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def load_mnist(root: str | os.PathLike, split: str = "train", limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images float32 (N, 1, 28, 28) in [0, 1], labels int64 (N,)) read by cnnlab's IDX reader."""
    images, labels = (read_idx(Path(root) / name) for name in _FILES[split])
    images, labels = images[:limit], labels[:limit]
    return (images.astype(np.float32) / 255.0)[:, None], labels.astype(np.int64)


def standardize(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    """(x - mean) / std in the array's own dtype."""
    return ((x - mean) / std).astype(x.dtype, copy=False)


def lenet(rng: np.random.Generator | None = None, in_channels: int = 1, input_size: int = 28, num_classes: int = 10,
          dropout: float = 0.5, **options) -> Layer:
    """cnnlab's LeNet (its torch builder, seeded from rng) copied into the NumPy engine, as
    `engine: scratch` runs it; `options` are the lenet model's (batch_norm, activation, init)."""
    rng = rng if rng is not None else np.random.default_rng()
    torch.manual_seed(int(rng.integers(2**31)))
    model = build_model({"name": "lenet", "dropout": dropout, **options}, (in_channels, input_size, input_size),
                        num_classes)
    return convert(model, rng)[0]


def minibatches(n: int, batch_size: int, rng: np.random.Generator | None = None) -> Iterator[np.ndarray]:
    """Index arrays covering range(n), shuffled when an rng is given."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def train_step(model: Layer, loss_fn, optimizer: Optimizer, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """One forward/backward/update; returns (loss, logits)."""
    logits = model.forward(x, training=True)
    loss = loss_fn.forward(logits, y)
    model.backward_params_only(loss_fn.backward().astype(logits.dtype, copy=False))
    optimizer.step()
    return loss, logits


def train_epoch(model: Layer, optimizer: Optimizer, x: np.ndarray, y: np.ndarray, batch_size: int,
                rng: np.random.Generator, loss_fn=None, augment=None) -> dict[str, float]:
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
    """Logits in evaluation mode (dropout off, BN running statistics)."""
    return np.concatenate([model.forward(x[s:s + batch_size], training=False) for s in range(0, len(x), batch_size)])


def evaluate(model: Layer, x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> float:
    """Classification accuracy in evaluation mode."""
    return float((predict(model, x, batch_size).argmax(axis=1) == y).mean())
