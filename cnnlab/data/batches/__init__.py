"""Batches for the model: a split's loader, in memory (memory.py, BatchLoader: tensors on the device,
augmented as whole batches) or from its files (files.py, FileLoader: a torch DataLoader decoding and
augmenting image by image), both configured by one LoaderOptions value (options.py)."""

from __future__ import annotations

import torch

from cnnlab.data.augment import Pipeline
from cnnlab.data.batches.files import FileLoader
from cnnlab.data.batches.memory import BatchLoader, Loader, default_workers
from cnnlab.data.batches.options import LoaderOptions
from cnnlab.data.types import AnySplit, FileSplit

__all__ = ["BatchLoader", "FileLoader", "Loader", "LoaderOptions", "default_workers", "make_loader"]


def make_loader(split: AnySplit, pipeline: Pipeline, batch_size: int, options: LoaderOptions, *,
                train: bool = False, generator: torch.Generator | None = None) -> Loader:
    """The loader for a split: training (shuffled, every op) or evaluation (in order, the always-ops);
    in a distributed run, this process's rows of each batch (cnnlab/distributed.py)."""
    if isinstance(split, FileSplit):
        return FileLoader(split, pipeline, batch_size, options, train=train, generator=generator)
    return BatchLoader(split, batch_size, options, shuffle=train,
                       augment=pipeline.train_ops if train else pipeline.eval_ops,
                       generator=generator if train else None)
