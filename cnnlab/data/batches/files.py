"""Batches decoded from image files, for datasets that do not fit in memory.

A torch DataLoader runs per-image work in worker processes: decode the file (as the
in-memory reader does: same mode, same size), scale to [0, 1] floats, apply the
torchvision v2 twins of the configured ops. Whole batches then go to the device, get
mixup/cutmix (torchvision's MixUp/CutMix) and are normalised with the training statistics.

Reproducibility: at the start of each epoch the loader's generator draws the shuffling
order and one seed per sample; a worker seeds torch before transforming each image with
that sample's seed. A batch therefore depends only on the generator state, not on the
number of workers or which worker ran it, and restoring the generator (and torch's global
generator, which MixUp/CutMix draw from) at an epoch boundary replays the same epoch:
`cnnlab resume` on the CPU matches an uninterrupted run exactly.

In a distributed run each process decodes only its rows of every global batch (the per-image
seeds make them the images one process would have made) and yields the whole batch's labels,
read from the listing (cnnlab/data/batches/memory.py, Loader). MixUp/CutMix then mix within each
process's rows, and the mixed labels are gathered from all processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from cnnlab import distributed
from cnnlab.data.augment import Pipeline, build_pipeline
from cnnlab.data.batches.memory import Normalise, default_workers
from cnnlab.data.batches.options import LoaderOptions
from cnnlab.data.batches.order import epoch_order
from cnnlab.data.read.decode import decode_one
from cnnlab.data.read.source import open_source
from cnnlab.data.types import FileSplit
from cnnlab.errors import DataError, UserError


class ImageFiles(Dataset):
    """Item (index, seed) -> (image after the per-image ops, label); the label is -1 when unlabelled.

    The seed (-1: none needed) seeds torch's generator for this image's random ops.
    """

    def __init__(self, split: FileSplit, pipeline: Pipeline, train: bool, scale: float):
        self.reader = open_source(split.source)  # a folder, a .zip or a Hugging Face dataset's rows
        self.files = split.files
        self.labels = None if split.y is None else split.y.tolist()
        c, h, w = split.shape
        self.mode, self.size = ("L" if c == 1 else "RGB"), (h, w)
        self.train, self.scale = train, scale
        # Plain data only: each worker rebuilds the transform, so nothing unpicklable crosses processes.
        self.recipe = (pipeline.items, pipeline.image_shape, pipeline.num_classes)
        self._transform: Any = None

    def __len__(self) -> int:
        return len(self.files)

    def transform(self) -> Any:
        if self._transform is None:
            pipeline = build_pipeline(*self.recipe)
            self._transform = pipeline.v2_train() if self.train else pipeline.v2_eval()
        return self._transform

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = key
        arr = decode_one(self.reader, self.files[index], self.mode, self.size)  # type: ignore[arg-type]
        if isinstance(arr, str):
            raise DataError(f"{self.reader.describe(self.files[index])}: cannot decode image ({arr}); replace or delete it")
        # The same conversion as the in-memory loader, so both paths see identical values.
        x = torch.tensor(arr, dtype=torch.float32).permute(2, 0, 1) * self.scale
        if seed >= 0:  # -1: no random per-image op
            with torch.random.fork_rng(devices=[]):  # leaves the caller's generator alone (workers=0)
                torch.manual_seed(seed)
                x = self.transform()(x)
        else:
            x = self.transform()(x)
        return x.contiguous(), -1 if self.labels is None else self.labels[index]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_transform": None}


class EpochPlan:
    """The batch sampler: this epoch's batches of (index, seed), set by the loader before each epoch."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, int]]] = []

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class FileLoader:
    """Iterate (x, y) batches of a file-backed split on `device`, like BatchLoader does for tensors."""

    def __init__(
        self,
        split: FileSplit,
        pipeline: Pipeline,
        batch_size: int,
        options: LoaderOptions,
        *,
        train: bool = False,
        generator: torch.Generator | None = None,
    ):
        device, world = options.device, options.world
        workers = default_workers() if options.workers is None else options.workers
        if train and generator is None:
            raise ValueError("a training FileLoader needs the run's generator")
        self.device, self.batch_size, self.train, self.world = device, batch_size, train, world
        self.global_labels: list[torch.Tensor] = []  # distributed runs: each planned batch's labels
        self.input_shape, self._empty_tail = tuple(pipeline.input_shape), False
        self.generator = generator
        self.sampler = options.sampler
        self.labelled = split.y is not None
        self.dataset = ImageFiles(split, pipeline, train, options.scale)
        self.batch_op = pipeline.v2_batch() if train else None
        # Per-sample seeds only when a per-image op is random: without one, the generator
        # advances exactly as the in-memory loader's does (the same shuffles, epoch by epoch).
        self.seeded = train and any(not op.always for op in pipeline.image_ops)
        self.normalise = Normalise(options.mean, options.std, device, options.channels_last)
        self.plan = EpochPlan()
        self.loader = DataLoader(
            self.dataset, batch_sampler=self.plan, num_workers=workers, pin_memory=device.type == "cuda",
            # Workers live across epochs only for training; evaluation loaders start theirs per pass.
            persistent_workers=train and workers > 0, prefetch_factor=4 if workers > 0 else None,
            generator=torch.Generator(),  # worker base seeds must not draw from torch's global generator
        )

    def __len__(self) -> int:
        n = len(self.dataset)
        return distributed.steps(n, self.batch_size, self.world) if self.train else (n + self.batch_size - 1) // self.batch_size

    def _plan_epoch(self) -> None:
        n = len(self.dataset)
        if self.train:
            g = self.generator
            labels = torch.as_tensor(self.dataset.labels) if self.dataset.labels is not None else None
            order = epoch_order(n, labels, g, self.sampler).cpu()
        else:
            order = torch.arange(n)
        if self.seeded:
            seeds = torch.randint(0, 2**62, (n,), generator=g, device=g.device).cpu()  # type: ignore[union-attr]
        else:
            seeds = torch.full((n,), -1, dtype=torch.long)
        pairs = list(zip(order.tolist(), seeds.tolist()))
        batches = [pairs[i * self.batch_size : (i + 1) * self.batch_size] for i in range(len(self))]
        if self.world.distributed:
            labels = self.dataset.labels
            self.global_labels = [torch.tensor([labels[i] for i, _ in b]) if labels is not None else torch.empty(0)
                                  for b in batches]
            batches = [b[slice(*distributed.bounds(len(b), self.world))] for b in batches]
        # Evaluation keeps a last batch smaller than the number of processes: a process whose part
        # is empty yields an empty tensor (batches below), as a DataLoader cannot load nothing.
        self._empty_tail = bool(batches) and not batches[-1]
        self.plan.batches = batches[:-1] if self._empty_tail else batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        return self.batches()

    def batches(self, skip: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        # The epoch's draws (order, per-image seeds) are all made here, so skipping is slicing;
        # MixUp/CutMix draw from torch's global generator, which a checkpoint restores.
        self._plan_epoch()
        self.plan.batches = self.plan.batches[skip:]
        whole = self.global_labels[skip:]
        try:
            for i, (x, y) in enumerate(self.loader):
                x = x.to(self.device, non_blocking=True)
                y = y.to(self.device, non_blocking=True) if self.labelled else None
                if self.batch_op is not None and y is not None:
                    x, y = self.batch_op(x, y)
                    if self.world.distributed:  # labels mixed per process: the whole batch's from all
                        y = distributed.gather_rows(y, len(whole[i]), self.world)
                elif self.world.distributed and y is not None:
                    y = whole[i].to(self.device, non_blocking=True)
                yield self.normalise(x), y
            if self._empty_tail:
                x = torch.zeros((0, *self.input_shape), device=self.device)
                yield self.normalise(x), (whole[-1].to(self.device) if self.labelled else None)
        except UserError as e:
            # A worker's error arrives wrapped in its traceback; keep the one line that names the file.
            raise type(e)(_last_line(str(e))) from None


def _last_line(message: str) -> str:
    line = message.strip().splitlines()[-1]
    prefix = next((p for p in ("DataError: ", "ConfigError: ", "UserError: ") if p in line), None)
    return line.split(prefix, 1)[1] if prefix else line
