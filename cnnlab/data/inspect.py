"""`cnnlab data inspect`: what cnnlab sees in a dataset, and the problems worth knowing about.

Also what `cnnlab train` prints about the data before epoch 1: per-class counts of every
split (count_lines) and the one warning about classes the training split lacks or nearly
lacks (train_warning).
"""

from __future__ import annotations

import hashlib
import statistics
import sys
import textwrap
from typing import Any

import torch

from cnnlab.config import Config
from cnnlab.data.build import build_data
from cnnlab.data.read.listing import decode_sample
from cnnlab.data.types import DataBundle, FileSplit, Split


def inspect_data(cfg: Config) -> dict[str, Any]:
    """A plain-data report: format, splits, classes and counts, shape, range, problems."""
    bundle = build_data(cfg.data, cfg.seed)
    splits = bundle.splits()
    counts = class_counts(bundle)
    warn(train_warning(counts, bundle.classes))
    lines = count_lines(counts, bundle.classes)
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
        "count_lines": lines,
        "image_shape": list(bundle.image_shape),
        "dtype": str(x.dtype).replace("torch.", ""),
        "value_range": [float(x.min()), float(x.max())],
        "mean": bundle.mean,
        "std": bundle.std,
        "problems": problems(bundle, counts, train),
        "notes": notes,
    }
    return report


def class_counts(bundle: DataBundle) -> dict[str, list[int]]:
    """Images of each class in every labelled split, by split name."""
    return {name: torch.bincount(s.y.cpu(), minlength=bundle.num_classes).tolist()
            for name, s in bundle.splits().items() if s.y is not None}


MANY = 20  # above this many classes, counts are summed up (min, median, max, the fewest) instead of listed


def count_lines(counts: dict[str, list[int]], classes: list[str], width: int = 100) -> list[str]:
    """Per-class counts of every split, compactly: "180 each" when a split is balanced, every
    class for up to MANY classes, else min / median / max and the few smallest; `width` wide."""
    items = []
    for split, c in counts.items():
        if not c:
            continue
        if len(set(c)) == 1:
            items.append(f"{split} {c[0]} each")
        elif len(c) <= MANY:
            items.append(f"{split} " + ", ".join(f"{classes[i]}={n}" for i, n in enumerate(c)))
        else:
            median = statistics.median(c)
            below = sorted((i for i, n in enumerate(c) if n < median), key=lambda i: (c[i], i))
            empty = sum(n == 0 for n in c)
            fewest = ", ".join(f"{classes[i]}={c[i]}" for i in below[:4]) + (f" and {len(below) - 4} more" if len(below) > 4 else "")
            items.append(f"{split} min {min(c)} median {median:g} max {max(c)}"
                         + (f" (fewest: {fewest})" if below else "")
                         + (f", {empty} empty" if empty else ""))
    lines: list[str] = []
    for item in items:  # balanced splits share a line; a long one wraps
        if lines and len(lines[-1]) + 2 + len(item) <= width:
            lines[-1] += "; " + item
        else:
            lines += textwrap.wrap(item, width, subsequent_indent="  ", break_on_hyphens=False)
    return lines


RARE = 0.01  # a class with at most this fraction of the largest class's training images is warned about
NAMED = 3  # classes named in the warning before "and N more"


def train_warning(counts: dict[str, list[int]], classes: list[str]) -> str | None:
    """One "warning:" line when the training split has no images of a class, or at most 1% of
    the largest class's (1 image against 100); None when every class is there in fair number (or there is no training count)."""
    train = counts.get("train") or []
    if len(train) < 2 or max(train) == 0:
        return None
    top = max(train)
    missing = [i for i, n in enumerate(train) if n == 0]
    rare = [i for i, n in enumerate(train) if 0 < n <= RARE * top]
    if not missing and not rare:
        return None
    parts = []
    if missing:
        parts.append(f"no images of {_named(missing, classes)}")
    if rare:
        parts.append(f"at most 1% of the largest class's {top} images of {_named(rare, classes, train)}")
    largest = classes[train.index(top)]
    return (f"warning: the training split has {' and '.join(parts)} (largest: '{largest}'); the model can hardly "
            "learn such classes: data.limit_train is stratified by default, so check data.limit_mode / data.splits "
            "and the dataset's folders")


def _named(index: list[int], classes: list[str], counts: list[int] | None = None) -> str:
    shown = [f"'{classes[i]}'" + (f" ({counts[i]})" if counts else "") for i in index[:NAMED]]
    more = len(index) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")


def warn(line: str | None) -> None:
    """Print a warning line on stderr (once: callers print it where the run or inspection starts)."""
    if line:
        print(line, file=sys.stderr, flush=True)


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
