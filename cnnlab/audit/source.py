"""The dataset as the audit sees it: every split cnnlab reads, image by image, named by split,
row (in the split as the format reads it: the rows data.exclude names) and file path where the
format has files.

In-memory formats are read with read_raw, exactly as training reads them (an unreadable dataset
fails the same way: one line, exit 2). Formats of image files are listed with their lister and each
file decoded at its own size, so sizes and aspect ratios can be checked and undecodable files named
(the listing is made with skip_corrupt, so one bad file does not hide the rest).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.config import Config, DataConfig
from cnnlab.data.build import read_raw
from cnnlab.data.exclude import exclude_entries, kept_rows, parse, unknown_splits
from cnnlab.data.read.cache import default_cache_dir
from cnnlab.data.read.catalog import FORMATS
from cnnlab.data.read.decode import decode_one
from cnnlab.data.read.source import open_source
from cnnlab.data.read.tree import FileTree, is_image
from cnnlab.data.types import FileSplit, Split
from cnnlab.errors import DataError


@dataclass
class SplitImages:
    """One split: its rows to audit (data.exclude left out), labels, ids and file paths."""

    name: str
    rows: list[int]
    labels: np.ndarray | None  # by row of the split as read (-1: unlabelled)
    ids: list[str] | None
    paths: list[str] | None  # a path a person can find ('archive.zip:member' or the file), by row
    split: Split | FileSplit
    tree: FileTree | None = None  # the folder or .zip of a FileSplit, opened once (a zip's directory is read once)

    def pixels(self, row: int) -> np.ndarray | str:
        """(H, W, C) uint8 of one image at its decoded size, or why it cannot be decoded."""
        s = self.split
        if isinstance(s, FileSplit):
            if self.tree is None:
                self.tree = open_source(s.source)
            mode = "L" if s.shape[0] == 1 else "RGB"
            return decode_one(self.tree, s.files[row], mode, None)
        return _as_uint8(s.x[row].numpy())

    def raw_bytes(self, row: int) -> bytes | None:
        """The stored pixel values (for exact duplicates of float data); None for files (decode them)."""
        s = self.split
        return None if isinstance(s, FileSplit) else s.x[row].numpy().tobytes()


@dataclass
class DatasetImages:
    format: str
    path: str
    classes: list[str]
    splits: dict[str, SplitImages]
    files: bool  # True: images are files decoded at their own size
    notes: list[str] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)  # image files in the tree no split reads (relative paths)
    tree: FileTree | None = None  # the folder or .zip of a format of files

    def images(self) -> Iterator[tuple[str, int, np.ndarray | str]]:
        """(split, row, pixels or the decoding error) of every audited image."""
        for name, s in self.splits.items():
            for row in s.rows:
                yield name, row, s.pixels(row)


def read_images(cfg: Config) -> DatasetImages:
    """Every split of the config's dataset, ready to be audited image by image."""
    data = cfg.data
    lister = FORMATS.get(data.format).attrs.get("lister")
    if lister is not None:
        return _files(data, lister)
    data = _skipping_corrupt(data)
    raw = read_raw(data, cfg.seed)
    splits = {n: s for n, s in (("train", raw.train), ("val", raw.val), ("test", raw.test)) if s is not None}
    return _assemble(data, splits, raw.classes, list(raw.notes), files=False, unread=[])


def _files(data: DataConfig, lister: Any) -> DatasetImages:
    path = Path(data.path).expanduser()
    if not path.exists():
        raise DataError(f"data.path: {path} does not exist; point it at your dataset")
    options = {k: v for k, v in data.model_dump().items() if k not in DataConfig.model_fields}
    if "skip_corrupt" in inspect.signature(lister).parameters:
        options["skip_corrupt"] = True  # the audit names bad files instead of stopping at the first
    cache = None if not data.cache else Path(data.cache_dir) if data.cache_dir else default_cache_dir()
    listing = lister(path, cache_dir=cache, **options)
    # The files' root: data.path for an image folder, the images' folder for a CSV of paths (csv_images).
    tree = open_source(next(iter(listing.splits.values())).source)
    listed = {f for s in listing.splits.values() for f in s.files}
    unread = [f for f in tree.files if is_image(f) and f not in listed]
    return _assemble(data, dict(listing.splits), listing.classes, list(listing.notes), files=True,
                     unread=unread, tree=tree)


def _assemble(data: DataConfig, splits: dict[str, Split | FileSplit], classes: list[str], notes: list[str],
              files: bool, unread: list[str], tree: FileTree | None = None) -> DatasetImages:
    unknown_splits(data, list(splits))
    parsed = parse(exclude_entries(data))
    out = {}
    for name, s in splits.items():
        keep = kept_rows(data, name, len(s), s.ids, parsed)
        rows = list(range(len(s))) if keep is None else keep
        if keep is not None:
            notes.append(f"data.exclude: {len(s) - len(keep)} {name} image(s) not audited")
        labels = None if s.y is None else s.y.numpy().astype(np.int64)
        paths = [tree.describe(f) for f in s.files] if isinstance(s, FileSplit) and tree is not None else None
        out[name] = SplitImages(name, rows, labels, s.ids, paths, s)
    where = str(Path(data.path).expanduser().resolve()) if data.path else data.format
    return DatasetImages(data.format, where, classes, out, files, notes, unread, tree)


def _skipping_corrupt(data: DataConfig) -> DataConfig:
    """data with skip_corrupt on when the format has that option (undecodable files are reported, not fatal)."""
    if not any(p.name == "skip_corrupt" for p in FORMATS.get(data.format).parameters()):
        return data
    return DataConfig.model_validate({**data.model_dump(), "skip_corrupt": True})


def _as_uint8(chw: np.ndarray) -> np.ndarray:
    """(C, H, W) stored values as (H, W, C) uint8: float data scaled from 0..1 (or 0..255) and clipped."""
    hwc = np.moveaxis(chw, 0, -1)
    if hwc.dtype == np.uint8:
        return np.ascontiguousarray(hwc)
    scale = 255.0 if float(np.nanmax(hwc, initial=0.0)) <= 1.5 else 1.0
    return np.clip(np.nan_to_num(hwc.astype(np.float32)) * scale, 0, 255).round().astype(np.uint8)
