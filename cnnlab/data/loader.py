"""Batches from a split that lives as a uint8 tensor on the training device.

Decoding happens once; each batch is an index, a dtype conversion, the batched
augmentation ops and a normalisation, all tensor ops on the device. This replaces a
DataLoader over per-image PIL transforms, which on a 2-core CPU is slower than the model.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from cnnlab.data.augment import Op
from cnnlab.data.types import Split


class BatchLoader:
    """Iterate (x, y) batches, normalised with the training statistics."""

    def __init__(
        self,
        split: Split,
        batch_size: int,
        device: torch.device,
        scale: float,
        mean: list[float],
        std: list[float],
        *,
        shuffle: bool = False,
        augment: list[Op] | None = None,
        generator: torch.Generator | None = None,
        channels_last: bool = False,
    ):
        self.x = split.x.to(device)
        self.y = None if split.y is None else split.y.to(device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment or []
        self.generator = generator
        self.channels_last = channels_last
        self.scale = scale
        c = self.x.shape[1]
        self.mean = torch.tensor(mean, device=device, dtype=torch.float32).view(1, c, 1, 1)
        self.std = torch.tensor(std, device=device, dtype=torch.float32).view(1, c, 1, 1)

    def __len__(self) -> int:
        return (len(self.x) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        n = len(self.x)
        order = None
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator, device=self.x.device)
        for start in range(0, n, self.batch_size):
            if order is None:
                xb = self.x[start : start + self.batch_size]
                yb = None if self.y is None else self.y[start : start + self.batch_size]
            else:
                idx = order[start : start + self.batch_size]
                xb = self.x[idx]
                yb = None if self.y is None else self.y[idx]
            yield self.prepare(xb), yb

    def prepare(self, xb: torch.Tensor) -> torch.Tensor:
        """Raw batch -> float, augmented, normalised model input."""
        xb = xb.to(torch.float32) * self.scale  # never in place: xb may view stored data
        for op in self.augment:
            xb = op(xb, self.generator)
        xb = (xb - self.mean) / self.std
        if self.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        return xb
