"""A cache of decoded datasets (and of file listings), so image files are decoded once, not once per run."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from cnnlab.data.types import RawDataset, Split
from cnnlab.io import atomic_path
from cnnlab.lazy import lazy

torch = lazy("torch")
T = TypeVar("T")


def default_cache_dir() -> Path:
    """$CNNLAB_CACHE_DIR, else $XDG_CACHE_HOME/cnnlab, else ~/.cache/cnnlab."""
    if os.environ.get("CNNLAB_CACHE_DIR"):
        return Path(os.environ["CNNLAB_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cnnlab"


def cached_value(cache_dir: Path | None, key: dict, suffix: str, build: Callable[[], T],
                 load: Callable[[Path], T], save: Callable[[Path, T], None]) -> T:
    """The value stored under `key` (any JSON-able dict), or build it and store it (atomically).

    A damaged entry is rebuilt, never trusted; an unwritable cache only costs time.
    """
    if cache_dir is None:
        return build()
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    path = cache_dir / f"{digest}{suffix}"
    if path.is_file():
        try:
            return load(path)
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)
    value = build()
    try:
        save(path, value)
    except OSError:
        pass
    return value


def cached(cache_dir: Path | None, key: dict, build: Callable[[], RawDataset]) -> RawDataset:
    """The decoded dataset stored under `key`, or build it and store it."""
    return cached_value(cache_dir, key, ".npz", build, _load, _save)


def _save(path: Path, raw: RawDataset) -> None:
    arrays: dict[str, np.ndarray] = {
        "classes": np.asarray(raw.classes, dtype=str),
        "label_values": np.asarray([str(v) for v in raw.label_values], dtype=str),
        "numeric": np.asarray(all(isinstance(v, int) for v in raw.label_values)),
        "notes": np.asarray(raw.notes, dtype=str),
    }
    for name in ("train", "val", "test"):
        split: Split | None = getattr(raw, name)
        if split is None:
            continue
        arrays[f"{name}_x"] = split.x.numpy()
        if split.y is not None:
            arrays[f"{name}_y"] = split.y.numpy()
        if split.ids is not None:
            arrays[f"{name}_ids"] = np.asarray(split.ids, dtype=str)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def _load(path: Path) -> RawDataset:
    with np.load(path, allow_pickle=False) as z:
        splits = {}
        for name in ("train", "val", "test"):
            if f"{name}_x" not in z:
                continue
            y = torch.from_numpy(z[f"{name}_y"]) if f"{name}_y" in z else None
            ids = z[f"{name}_ids"].tolist() if f"{name}_ids" in z else None
            splits[name] = Split(torch.from_numpy(z[f"{name}_x"]), y, ids)
        values = z["label_values"].tolist()
        if bool(z["numeric"]):
            values = [int(v) for v in values]
        return RawDataset(
            classes=z["classes"].tolist(), label_values=values, notes=z["notes"].tolist(), **splits
        )
