"""The loader of a split: in memory (loader.BatchLoader) or from its files (fileloader.FileLoader)."""

from __future__ import annotations

import torch

from cnnlab.data.augment import Pipeline
from cnnlab.data.fileloader import FileLoader
from cnnlab.data.loader import BatchLoader, Loader, default_workers
from cnnlab.data.types import AnySplit, FileSplit
from cnnlab.distributed import SINGLE, World


def make_loader(
    split: AnySplit,
    pipeline: Pipeline,
    batch_size: int,
    device: torch.device,
    scale: float,
    mean: list[float],
    std: list[float],
    *,
    train: bool = False,
    generator: torch.Generator | None = None,
    channels_last: bool = False,
    workers: int | None = None,
    world: World = SINGLE,
) -> Loader:
    """The loader for a split: training (shuffled, every op) or evaluation (in order, the always-ops);
    in a distributed run, this process's rows of each batch (cnnlab/distributed.py)."""
    if isinstance(split, FileSplit):
        return FileLoader(split, pipeline, batch_size, device, scale, mean, std, train=train, generator=generator,
                          channels_last=channels_last, workers=default_workers() if workers is None else workers,
                          world=world)
    return BatchLoader(split, batch_size, device, scale, mean, std, shuffle=train,
                       augment=pipeline.train_ops if train else pipeline.eval_ops,
                       generator=generator if train else None, channels_last=channels_last, world=world)
