"""Small batches of real images for model tests: MNIST, Fashion-MNIST and CIFAR-10, as float tensors."""

from __future__ import annotations

import functools
import io
import zipfile

import numpy as np
import torch
import torch.nn.functional as F
from conftest import CIFAR_ZIP, FASHION, MNIST, read_idx
from torch import nn


def _standardise(x: np.ndarray) -> torch.Tensor:
    """Standardised float images in NCHW memory, as cnnlab's loaders make them (a transposed
    HWC array would otherwise carry channels_last strides into the model: cnnlab/device.py)."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) / 255
    return ((t - t.mean()) / t.std()).contiguous()


@functools.cache
def _idx(root: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    from pathlib import Path

    x = read_idx(Path(root) / "t10k-images-idx3-ubyte.gz")[:n]
    y = read_idx(Path(root) / "t10k-labels-idx1-ubyte.gz")[:n]
    return _standardise(x[:, None]), torch.from_numpy(y.astype(np.int64))


def mnist(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n MNIST test digits (n, 1, 28, 28), standardised, and their labels."""
    return _idx(str(MNIST), n)


def fashion(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n Fashion-MNIST test images (n, 1, 28, 28), standardised, and their labels."""
    return _idx(str(FASHION), n)


@functools.cache
def _cifar(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image

    with zipfile.ZipFile(CIFAR_ZIP) as z:
        names = sorted(i.filename for i in z.infolist() if i.filename.startswith("cifar10/test/") and i.filename.endswith(".jpg"))
        classes = sorted({p.split("/")[2] for p in names})
        # Round-robin over the classes so even a small batch holds several of them.
        by_class = [[p for p in names if p.split("/")[2] == c] for c in classes]
        picked = [by_class[i % len(classes)][i // len(classes)] for i in range(n)]
        x = np.stack([np.asarray(Image.open(io.BytesIO(z.read(p))).convert("RGB")) for p in picked])
    y = torch.tensor([classes.index(p.split("/")[2]) for p in picked])
    return _standardise(x.transpose(0, 3, 1, 2)), y


def cifar(n: int = 8, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """n real CIFAR-10 test images (n, 3, size, size), upsampled bilinearly beyond 32 px."""
    x, y = _cifar(n)
    if size != 32:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x, y


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> float:
    """One forward/backward in train mode; checks the logits' shape and that every parameter got a finite gradient."""
    model.train()
    model.zero_grad()
    logits = model(x)
    assert logits.shape == (len(x), num_classes)
    loss = F.cross_entropy(logits, y % num_classes)
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
    return float(loss.detach())


def on_meta(fn, *args, **kwargs):
    """Build a model on the meta device: parameter shapes without memory or init time (for big nets)."""
    with torch.device("meta"):
        return fn(*args, **kwargs)
