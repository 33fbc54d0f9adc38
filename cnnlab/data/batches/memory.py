"""Batches for the trainer from uint8 tensors on the device, and what every loader shares.

In memory (BatchLoader), decoding happened once; each batch is an index, a dtype
conversion, the batched augmentation ops and a normalisation, all tensor ops on the
device. This replaces a DataLoader over per-image PIL transforms, which on a 2-core CPU
is slower than the model. Datasets too large for memory use the FileLoader
(fileloader.py) instead; both follow the Loader protocol, so the trainer takes either, and
loading.make_loader picks one for a split.

In a distributed run (cnnlab/distributed.py) every process draws the same order and the same
augmentations for the whole global batch, then keeps its own rows: a batch's images are the
same whatever the number of processes. Random ops therefore run on the whole batch in every
process (a few elementwise tensor ops; the model's work is what is shared out).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Protocol

import numpy as np
import torch

from cnnlab import distributed
from cnnlab.data.augment import Augmentation, Batch, Rng
from cnnlab.data.batches.options import LoaderOptions
from cnnlab.data.batches.order import epoch_order
from cnnlab.data.types import Split


class Loader(Protocol):
    """What the trainer and evaluation need from a loader.

    Iterating yields (x, y): normalised float images on `device` and labels, class indices
    (B,) or, after mixup/cutmix, class probabilities (B, K); y is None for unlabelled data.
    All randomness comes from the generator the loader was given, so saving and restoring
    that generator's state (the trainer does, in last.pt) replays the same batches.

    In a distributed run x holds this process's rows of the batch and y the whole batch's
    labels: the data-parallel engine (train/data_parallel.py) trains on its rows and returns the
    whole batch's logits, so the loop counts every batch in full in every process.
    """

    device: torch.device

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]: ...

    def batches(self, skip: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """This epoch's batches after the first `skip` (a run resumed mid-epoch): drawing the
        same randomness for the skipped ones, so the rest are the batches an uninterrupted
        epoch would have produced."""
        ...


def epoch_rng(generator: torch.Generator | None) -> Rng:
    """This epoch's Rng: the device generator, plus a NumPy generator seeded from it (one draw per epoch)."""
    if generator is None:
        return Rng(None, np.random.default_rng(0))
    seed = torch.randint(0, 2**62, (1,), generator=generator, device=generator.device)
    return Rng(generator, np.random.default_rng(int(seed)))


class Normalise:
    """(x - mean) / std per channel with the training statistics, in the memory format the model runs in."""

    def __init__(self, mean: list[float], std: list[float], device: torch.device, channels_last: bool):
        c = len(mean)
        self.mean = torch.tensor(mean, device=device, dtype=torch.float32).view(1, c, 1, 1)
        self.std = torch.tensor(std, device=device, dtype=torch.float32).view(1, c, 1, 1)
        self.channels_last = channels_last

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return normalise(x, self.mean, self.std, self.channels_last)


class BatchLoader:
    """Iterate (x, y) batches of an in-memory split, augmented and normalised with the training statistics."""

    def __init__(
        self,
        split: Split,
        batch_size: int,
        options: LoaderOptions,
        *,
        shuffle: bool = False,
        augment: list[Augmentation] | None = None,
        generator: torch.Generator | None = None,
    ):
        device = options.device
        self.device = device
        self.world = options.world
        self.x = split.x.to(device)
        self.y = None if split.y is None else split.y.to(device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment or []
        self.generator = generator
        self.sampler = options.sampler
        self.scale = options.scale
        self.normalise = Normalise(options.mean, options.std, device, options.channels_last)

    def __len__(self) -> int:
        return distributed.steps(len(self.x), self.batch_size, self.world) if self.shuffle else \
            (len(self.x) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        return self.batches()

    def batches(self, skip: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        n = len(self.x)
        order = None
        if self.shuffle:
            order = epoch_order(n, self.y, self.generator, self.sampler).to(self.x.device)
        # Deterministic ops (resize, center_crop) draw nothing, so they leave the generator as it was.
        random = any(not op.always for op in self.augment)
        rng = epoch_rng(self.generator) if random else epoch_rng(None)
        shared, kept = self.world.distributed, len(self)
        # A dropped last batch (distributed.steps) still draws, so the generator ends every epoch as
        # it does in one process: a run resumes identically with any number of processes.
        for i in range((n + self.batch_size - 1) // self.batch_size):
            if (i < skip or i >= kept) and not random:
                continue
            start, stop = i * self.batch_size, min((i + 1) * self.batch_size, n)
            sel = slice(start, stop) if order is None else order[start:stop]
            yb = None if self.y is None else self.y[sel]
            if shared and not random:  # nothing drawn: prepare this process's rows only
                a, b = distributed.bounds(stop - start, self.world)
                x, _ = self.prepare(self.x[slice(start + a, start + b) if order is None else sel[a:b]])
                if i >= skip:
                    yield x, yb
                continue
            x, y = self.prepare(self.x[sel], yb, rng)  # a skipped batch still draws its augmentations' randomness
            if skip <= i < kept:
                yield (distributed.rows(x, self.world), y) if shared else (x, y)

    def prepare(self, xb: torch.Tensor, yb: torch.Tensor | None = None,
                rng: Rng | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Raw batch -> float, augmented, normalised model input (and labels, mixed if an op mixes them)."""
        batch = Batch(xb.to(torch.float32) * self.scale, yb)  # never in place: xb may view stored data
        if self.augment:
            rng = rng or epoch_rng(self.generator)  # a single batch, outside an epoch
            for op in self.augment:
                batch = op(batch, rng)
        return self.normalise(batch.x), batch.y


def normalise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """(x - mean) / std per channel, in the memory format the model runs in.

    Always set explicitly: images stored as (H, W, C) and permuted (a .npy of RGB rows) carry
    channels_last strides, and elementwise ops keep them, so batches would reach an NCHW model
    in NHWC (see cnnlab/device.py for why the layout is chosen with care)."""
    x = (x - mean) / std
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def default_workers() -> int:
    """One loader process per CPU core this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
