"""A cache of decoded datasets, so image files are decoded once, not once per run."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.types import RawDataset, Split
from cnnlab.io import atomic_path


def default_cache_dir() -> Path:
    """$CNNLAB_CACHE_DIR, else $XDG_CACHE_HOME/cnnlab, else ~/.cache/cnnlab."""
    if os.environ.get("CNNLAB_CACHE_DIR"):
        return Path(os.environ["CNNLAB_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cnnlab"


def cached(cache_dir: Path | None, key: dict, build: Callable[[], RawDataset]) -> RawDataset:
    """Load the dataset stored under `key`, or build it and store it (atomically)."""
    if cache_dir is None:
        return build()
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    path = cache_dir / f"{digest}.npz"
    if path.is_file():
        try:
            return _load(path)
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)  # a damaged cache entry is rebuilt, never trusted
    raw = build()
    try:
        _save(path, raw)
    except OSError:
        pass  # an unwritable cache only costs time
    return raw


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
