"""Turning labels as found in files into class indices, and refusing ones out of range."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnlab.errors import DataError
from cnnlab.lazy import lazy

torch = lazy("torch")


def numeric_classes(
    labels: np.ndarray, source: str, num_classes: int | None = None
) -> tuple[list[str], list[int]]:
    """Classes 0..K-1 for integer labels; K is given or one more than the largest label."""
    if labels.size == 0:
        raise DataError(f"{source}: no labels found")
    if not np.issubdtype(labels.dtype, np.integer):
        if np.issubdtype(labels.dtype, np.floating) and np.all(np.mod(labels, 1) == 0):
            labels = labels.astype(np.int64)
        else:
            raise DataError(f"{source}: labels must be integers (got {labels.dtype})")
    low, high = int(labels.min()), int(labels.max())
    if low < 0:
        raise DataError(f"{source}: label {low} is negative; labels must be 0..K-1")
    k = num_classes if num_classes is not None else high + 1
    if high >= k:
        row = int(np.argmax(labels >= k))
        raise DataError(
            f"{source}: label {int(labels[row])} at row {row} is outside the class range 0..{k - 1}"
        )
    return [str(i) for i in range(k)], list(range(k))


def check_range(labels: np.ndarray, k: int, source: str) -> torch.Tensor:
    """Labels as int64 tensor, or a DataError naming the first one outside 0..k-1."""
    labels = np.asarray(labels).astype(np.int64, copy=False)
    bad = (labels < 0) | (labels >= k)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(
            f"{source}: label {int(labels[row])} at row {row} is outside the class range 0..{k - 1}"
        )
    return torch.from_numpy(labels.copy())


def refuse_fractional(values: Sequence[Any], source: str) -> None:
    """Named labels must not be numbers: '2.5' among integer labels is a typo, not a class name."""
    for row, v in enumerate(values):
        try:
            number = float(v)
        except (TypeError, ValueError):
            return  # a real name: the labels are class names
        if not number.is_integer() or not str(v).strip().lstrip("-").isdigit():
            others = [w for w in values if w != v]
            if all(_is_number(w) for w in others):
                raise DataError(f"{source}: label {v!r} at row {row} is not an integer, but the other labels are "
                                "numbers; labels are class indices (integers) or class names, not fractions")
            return


def _is_number(v: Any) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def encode(values: Sequence[Any], classes: list[Any], source: str) -> torch.Tensor:
    """Indices of `values` in `classes`; an unknown value is a DataError naming it."""
    lookup = {c: i for i, c in enumerate(classes)}
    out = np.empty(len(values), dtype=np.int64)
    for row, v in enumerate(values):
        if v not in lookup:
            raise DataError(f"{source}: label {v!r} at row {row} is not one of the training classes")
        out[row] = lookup[v]
    return torch.from_numpy(out)
