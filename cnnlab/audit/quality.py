"""Single-image problems: undecodable files, flat images, extreme brightness, odd sizes, rare classes."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.audit.duplicates import FLAT_STD
from cnnlab.audit.features import Features
from cnnlab.audit.source import DatasetImages
from cnnlab.data.read.decode import decode_one

DARK, BRIGHT = 8.0, 247.0  # mean brightness (0..255) at or beyond which an image is nearly black / white
ASPECT = 2.0  # width / height beyond this (or below its inverse) is an odd aspect ratio
SIZE_FACTOR = 2.0  # a side this many times smaller or larger than the median side is an odd size
RARE_MIN = 10  # a class with fewer training images than this ...
RARE_FRACTION = 0.1  # ... or than this fraction of the median class is a rare class


def single_image_problems(images: DatasetImages, f: Features) -> dict[str, Any]:
    """Problem kind -> feature indices (or, for files and classes, descriptions)."""
    flat = f.std < FLAT_STD
    out: dict[str, Any] = {
        "constant": np.flatnonzero(f.std == 0).tolist(),
        "near_constant": np.flatnonzero(flat & (f.std > 0)).tolist(),
        "dark": np.flatnonzero(~flat & (f.mean <= DARK)).tolist(),
        "bright": np.flatnonzero(~flat & (f.mean >= BRIGHT)).tolist(),
        "odd_size": _odd_sizes(f) if images.files and len(f) else [],
    }
    out["undecodable"], out["not_read"] = _files_not_read(images)
    out["undecodable"] = [{"split": s, "index": r, "path": _path(images, s, r), "reason": why}
                          for s, r, why in f.undecodable] + out["undecodable"]
    out["rare_classes"] = rare_classes(images)
    return out


def _odd_sizes(f: Features) -> list[int]:
    ratio = f.width / np.maximum(f.height, 1)
    side = np.sqrt(f.width * f.height)
    median = float(np.median(side))
    odd = (ratio > ASPECT) | (ratio < 1 / ASPECT) | (side < median / SIZE_FACTOR) | (side > median * SIZE_FACTOR)
    return np.flatnonzero(odd).tolist()


def _files_not_read(images: DatasetImages) -> tuple[list[dict[str, Any]], list[str]]:
    """Image files in the tree that no split reads: those that do not decode, and the rest
    (images outside the class folders, which the format does not label)."""
    bad, other = [], []
    if images.tree is None:
        return bad, other
    for rel in images.unread:
        result = decode_one(images.tree, rel, "RGB", None)
        if isinstance(result, str):
            bad.append({"split": None, "index": None, "path": images.tree.describe(rel), "reason": result})
        else:
            other.append(images.tree.describe(rel))
    return bad, other


def rare_classes(images: DatasetImages) -> list[dict[str, Any]]:
    """Classes with few training images (fewer than RARE_MIN, or than RARE_FRACTION of the median class)."""
    train = images.splits.get("train")
    if train is None or train.labels is None or not images.classes:
        return []
    counts = np.bincount(train.labels[train.rows], minlength=len(images.classes))
    floor = max(RARE_MIN, RARE_FRACTION * float(np.median(counts)))
    return [{"class": images.classes[k], "label": k, "train_images": int(n)}
            for k, n in enumerate(counts) if n < floor]


def _path(images: DatasetImages, split: str, row: int) -> str | None:
    paths = images.splits[split].paths
    return None if paths is None else paths[row]
