"""Decoded datasets kept between the runs of one process: a study worker trains many runs on the
same `data:` section, and reading, decoding, shuffling and splitting it again for every run cost
its small runs more than their training (bench/RESULTS.md, "Study overhead").

Only inside `shared()` (the study worker's runs, training/runner.py): build_data then hands a
run the bundle an earlier run of the same data section, seed and device got, while the dataset's
files are unchanged. Every run gets identical arrays because they are the same arrays: nothing
writes into a bundle (the loaders copy each batch to float before any op: data/batches/memory.py),
and each reuse checks that with a checksum of every tensor, rebuilding the bundle when it changed.
Datasets read from their files per batch, and formats of your own (which may read anything, or
differ from read to read), are built again every time.
"""

from __future__ import annotations

import contextlib
import json
import os
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.config import DataConfig
from cnnlab.data.read.listing import available_memory
from cnnlab.data.types import DataBundle, Split
from cnnlab.usercode.imports import is_reference

KEEP = 2  # bundles kept at once: a study varying its data (a limit_train axis) keeps the last two


@dataclass
class Kept:
    bundle: DataBundle
    digest: tuple[Any, ...]  # of every tensor and list the bundle holds, when it was built (_digest)


_kept: OrderedDict[str, Kept] = OrderedDict()
_active = 0  # depth of shared() blocks


@contextlib.contextmanager
def shared() -> Iterator[None]:
    """Inside the block, build_data reuses a bundle an earlier run in this process built."""
    global _active
    _active += 1
    try:
        yield
    finally:
        _active -= 1


def recall(data: DataConfig, seed: int, device: Any, build: Callable[[], DataBundle]) -> DataBundle:
    """The bundle `build()` makes, or (inside shared()) the one it made before for the same data."""
    key = _key(data, seed, device) if _active else None
    if key is None:
        return build()
    kept = _kept.get(key)
    if kept is not None and _digest(kept.bundle) == kept.digest:
        _kept.move_to_end(key)
        return kept.bundle
    _kept.pop(key, None)  # changed since (a bug: nothing may write into a bundle): build it again
    bundle = build()
    if bundle.in_memory and _nbytes(bundle) <= available_memory() // (4 * KEEP):
        _kept[key] = Kept(bundle, _digest(bundle))
        while len(_kept) > KEEP:
            _kept.popitem(last=False)
    return bundle


def forget() -> None:
    """Drop every kept bundle (tests; a long-lived process that is done with its studies)."""
    _kept.clear()
    _read.clear()


# A dataset as read, handed over once: a study reads its dataset before any run to check that the
# metric's split exists (studies/launch.py), and its first run, in the same process, then takes that
# read instead of reading the files again (0.7 s for the MNIST grid's .mat, more for image folders).
_read: dict[str, Any] = {}


def hand_over(data: DataConfig, seed: int, raw: Any) -> None:
    """Keep `raw` (read_raw's dataset for this data section and seed) for the next read of it."""
    key = _key(data, seed, None)
    _read.clear()  # one at a time: it is memory a run has not taken yet
    if key is not None:
        _read[key] = raw


def take_over(data: DataConfig, seed: int) -> Any | None:
    """The dataset hand_over kept for this data section and seed, once; None when there is none (or the
    files changed since). The first read after hand_over takes it or drops it: a study whose first run
    reads another data section (an axis of data.limit_train) does not hold it for nothing."""
    if not _read:
        return None
    key = _key(data, seed, None)
    raw = _read.pop(key, None) if key is not None else None
    _read.clear()
    return raw


def _key(data: DataConfig, seed: int, device: Any) -> str | None:
    """What the bundle depends on: the whole data section, the seed, the device (the in-memory
    decision reads its free memory) and the files as they are now; None: not kept."""
    if is_reference(data.format):
        return None
    files = [_signature(Path(data.path).expanduser())] if data.path else []
    if isinstance(data.exclude, str):  # a file of entries, read at every build
        files.append(_signature(Path(data.exclude).expanduser()))
    return json.dumps([data.model_dump(), seed, str(device), files], sort_keys=True, default=str)


def _signature(path: Path) -> list[Any]:
    """Size and modification time of a file, or of a folder's entries (a dataset of a few files:
    idx, npy), so a dataset rewritten between two runs is read again."""
    try:
        if path.is_dir():
            with os.scandir(path) as entries:
                return sorted([e.name, *_stat(e.stat())] for e in entries)
        return [str(path), *_stat(path.stat())]
    except OSError:
        return [str(path), None]


def _stat(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns]


def _splits(bundle: DataBundle) -> list[Split]:
    return [s for s in (bundle.train, bundle.val, bundle.test) if isinstance(s, Split)]


def _nbytes(bundle: DataBundle) -> int:
    return sum(t.numel() * t.element_size() for s in _splits(bundle) for t in (s.x, s.y) if t is not None)


def _digest(bundle: DataBundle) -> tuple[Any, ...]:
    """CRC-32 of every image and label tensor, the splits' ids and the bundle's plain fields.

    A check against accidents, not against an adversary: a write into a tensor changes its CRC
    (every burst of up to 32 bits is caught), and CRC-32 reads memory about four times as fast
    as BLAKE2, which cost a grid's small runs a twentieth of their time when checked at each reuse."""
    crcs = [zlib.crc32(_raw(t.contiguous().numpy())) if t is not None else None
            for split in _splits(bundle) for t in (split.x, split.y)]
    ids = [list(split.ids) if split.ids is not None else None for split in _splits(bundle)]  # copies, compared by value
    plain = {k: getattr(bundle, k) for k in ("classes", "label_values", "mean", "std", "scale", "notes", "val_source")}
    val_index = None if bundle.val_index is None else zlib.crc32(_raw(np.asarray(bundle.val_index)))
    return crcs, ids, json.dumps(plain, sort_keys=True, default=str), val_index


def _raw(a: np.ndarray) -> memoryview:
    """An array's bytes without copying them (a copy only when it is not contiguous)."""
    return memoryview(np.ascontiguousarray(a)).cast("B")
