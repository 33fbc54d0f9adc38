"""The file-backed side of data building: listing image files, choosing memory or files,
and normalisation statistics from a sample.

A format whose data are image files is registered with a lister beside its reader
(`FORMATS.register(name, lister=...)`), taking the same options: it returns the files, labels and
decoded shape of every split without decoding the images. `data.in_memory: auto` keeps the decoded images in memory when they take less
than a quarter of the available RAM (and of the free GPU memory when CUDA is present);
otherwise the run reads the files per batch (fileloader.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.data.read.cache import cached_value
from cnnlab.data.read.decode import decode_many
from cnnlab.data.read.source import open_source
from cnnlab.data.stats import channel_stats
from cnnlab.data.types import FileSplit, Split
from cnnlab.io import write_json
from cnnlab.lazy import lazy

torch = lazy("torch")

STATS_SAMPLE = 2000  # training images decoded to estimate the file-backed normalisation statistics


@dataclass
class FileListing:
    """What a lister finds: every split's files and labels, and how each image decodes."""

    classes: list[str]
    label_values: list[Any]
    splits: dict[str, FileSplit]  # train, and val / test when the dataset has them
    notes: list[str] = field(default_factory=list)

    def decoded_bytes(self, limit_train: int | None = None) -> int:
        """Bytes the decoded uint8 images of every split would take in memory."""
        total = 0
        for name, split in self.splits.items():
            n = len(split) if name != "train" or limit_train is None else min(limit_train, len(split))
            c, h, w = split.shape
            total += n * c * h * w
        return total


def available_memory() -> int:
    """Bytes of RAM available to new allocations (MemAvailable on Linux)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def memory_budget(device: torch.device | None) -> int:
    """Bytes of decoded images that may stay in memory: a quarter of free RAM (and of free GPU memory)."""
    budget = available_memory() // 4
    if device is not None and device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = min(budget, free // 4)
    return budget


def fits_in_memory(setting: str | bool, nbytes: int, budget: int) -> bool:
    """The in_memory decision: true/false as set, auto by comparing the decoded size with the budget."""
    if setting == "auto":
        return nbytes <= budget
    return bool(setting)


def decode_sample(split: FileSplit, seed: int, n: int = STATS_SAMPLE) -> Split:
    """A seeded sample of `n` images of a file-backed split (all when fewer), decoded; unreadable ones left out."""
    g = torch.Generator().manual_seed(seed)
    pick = sorted(torch.randperm(len(split), generator=g)[:n].tolist())
    c, h, w = split.shape
    tree = open_source(split.source)
    x, kept, _ = decode_many(tree, [split.files[i] for i in pick], c, (h, w), skip_corrupt=True)  # type: ignore[arg-type]
    index = [pick[k] for k in kept]
    y = None if split.y is None else split.y[torch.tensor(index, dtype=torch.long)]
    return Split(torch.from_numpy(x), y, None if split.ids is None else [split.ids[i] for i in index])


def sample_stats(split: FileSplit, seed: int, n: int = STATS_SAMPLE) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] of a seeded sample of `n` images (all when fewer)."""
    return channel_stats(decode_sample(split, seed, n).x, 1.0 / 255.0)


# ----------------------------------------------------------------------------- listing cache


def cached_listing(cache_dir: Path | None, key: dict, build: Callable[[], FileListing]) -> FileListing:
    """The listing stored under `key` (a JSON file), or build and store it: probing every header is slow."""
    return cached_value(cache_dir, key, ".listing.json", build,
                        lambda path: _from_json(json.loads(path.read_text(encoding="utf-8"))),
                        lambda path, listing: write_json(path, _to_json(listing)))


def _to_json(listing: FileListing) -> dict[str, Any]:
    return {
        "classes": listing.classes, "label_values": listing.label_values, "notes": listing.notes,
        "splits": {name: {"source": s.source, "files": s.files, "shape": list(s.shape), "ids": s.ids,
                          "y": None if s.y is None else s.y.tolist()} for name, s in listing.splits.items()},
    }


def _from_json(d: dict[str, Any]) -> FileListing:
    splits = {
        name: FileSplit(s["source"], list(s["files"]), None if s["y"] is None else torch.tensor(s["y"], dtype=torch.long),
                        s["ids"], tuple(s["shape"]))  # type: ignore[arg-type]
        for name, s in d["splits"].items()
    }
    return FileListing(list(d["classes"]), list(d["label_values"]), splits, list(d["notes"]))
