"""`cnnlab data inspect`: what cnnlab sees in a dataset, and the problems worth knowing about."""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from cnnlab.config import Config
from cnnlab.data.build import build_data
from cnnlab.data.files import decode_sample
from cnnlab.data.types import DataBundle, FileSplit, Split


def inspect_data(cfg: Config) -> dict[str, Any]:
    """A plain-data report: format, splits, classes and counts, shape, range, problems."""
    bundle = build_data(cfg.data, cfg.seed)
    splits = bundle.splits()
    counts = {name: torch.bincount(s.y, minlength=bundle.num_classes).tolist()
              for name, s in splits.items() if s.y is not None}
    notes = list(bundle.notes)
    if isinstance(bundle.train, FileSplit):  # too large to decode whole: look at a sample
        train = decode_sample(bundle.train, cfg.seed)
        notes.append(f"pixel checks and value range from {len(train)} sampled training images; "
                     "duplicates across splits not checked (file-backed data)")
    else:
        train = bundle.train
    x = train.x
    report = {
        "format": bundle.format,
        "path": bundle.path,
        "sizes": {name: len(s) for name, s in splits.items()},
        "val_source": {"folder": "from the dataset", "split": f"{cfg.data.val_fraction:.0%} of train, stratified, seed {cfg.seed}",
                       "fold": f"fold {cfg.data.fold} of {cfg.data.folds} stratified folds of train, seed {cfg.seed}",
                       "none": "none"}[bundle.val_source],
        "classes": bundle.classes,
        "label_values": bundle.label_values,
        "counts": counts,
        "image_shape": list(bundle.image_shape),
        "dtype": str(x.dtype).replace("torch.", ""),
        "value_range": [float(x.min()), float(x.max())],
        "mean": bundle.mean,
        "std": bundle.std,
        "problems": problems(bundle, counts, train),
        "notes": notes,
    }
    return report


def problems(bundle: DataBundle, counts: dict[str, list[int]], pixels: Split | None = None) -> list[str]:
    """Things that can quietly spoil an experiment (pixel checks on `pixels`, by default the training split)."""
    found = []
    train = counts.get("train", [])
    names = bundle.classes
    empty = [names[i] for i, n in enumerate(train) if n == 0]
    if empty:
        found.append(f"{len(empty)} class(es) have no training images: {', '.join(empty[:10])}")
    nonzero = [n for n in train if n > 0]
    if nonzero and max(nonzero) > 3 * min(nonzero):
        hi, lo = train.index(max(nonzero)), train.index(min(nonzero))
        found.append(f"classes are imbalanced: '{names[hi]}' has {train[hi]} training images, '{names[lo]}' {train[lo]}")
    for split in ("val", "test"):
        if split in counts:
            missing = [names[i] for i, n in enumerate(counts[split]) if n == 0]
            if missing:
                found.append(f"{split} has no images of {len(missing)} class(es): {', '.join(missing[:10])}")
    x = (pixels or bundle.train).x  # type: ignore[union-attr]
    flat = x.reshape(len(x), -1)
    constant = int((flat.amax(1) == flat.amin(1)).sum())
    if constant:
        found.append(f"{constant} training image(s) are a single flat colour")
    if x.dtype == torch.uint8 and int(x.max()) <= 1:
        found.append("uint8 pixel values are all 0 or 1: was the data binarised or scaled before saving?")
    if not bundle.in_memory:
        return found
    train_hashes = _hashes(bundle.train)  # type: ignore[arg-type]
    for name in ("val", "test"):
        split = getattr(bundle, name)
        if split is not None:
            dup = sum(h in train_hashes for h in _hashes(split))
            if dup:
                found.append(f"{dup} {name} image(s) are exact copies of training images")
    return found


def _hashes(split: Split) -> set[bytes]:
    arr = split.x.reshape(len(split), -1).numpy()
    return {hashlib.blake2b(row.tobytes(), digest_size=12).digest() for row in arr}
