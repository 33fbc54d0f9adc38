"""How a loader hands batches to the model: one value for what the in-memory and file-backed
loaders share (where the batches go, how raw values become normalised inputs, the memory format,
the decoding processes, this process's part of a distributed batch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cnnlab.distributed import SINGLE, World


@dataclass(frozen=True)
class LoaderOptions:
    device: Any  # torch.device the batches are moved to
    scale: float  # raw values times this reach [0, 1] (1/255 for uint8 images)
    mean: list[float]  # per channel, in the [0, 1] space: the training split's (data.json keeps them)
    std: list[float]
    channels_last: bool = False  # NHWC batches, for a model that runs in that memory format
    workers: int | None = None  # file-backed data: decoding processes (None: one per CPU core)
    world: World = SINGLE  # a distributed run: this process takes its rows of every batch
    sampler: str = "shuffle"  # training batches: shuffle, or balanced (every class equally often; order.py)

    def unnormalised(self) -> LoaderOptions:
        """The same, scaled to [0, 1] but not normalised (what an exported model takes)."""
        c = len(self.mean)
        return LoaderOptions(self.device, self.scale, [0.0] * c, [1.0] * c, self.channels_last, self.workers,
                             self.world, self.sampler)
