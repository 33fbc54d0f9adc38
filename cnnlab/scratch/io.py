"""Save and load parameters + buffers as .npz files (no pickle), written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cnnlab.io import atomic_path

from .layers.base import Layer


def save_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` to ``path`` atomically: a crash mid-write leaves the previous file intact."""
    arrays = {key: np.asarray(value) for key, value in arrays.items()}
    for key, value in arrays.items():
        if value.dtype.hasobject:  # would need pickle, which load_npz refuses
            raise TypeError(f"array {key!r} has dtype object; only plain numeric arrays are saved")
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    return path


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every array of an .npz file into a dict, refusing pickled objects."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def save_model(model: Layer, path: str | os.PathLike) -> Path:
    """Save a model's ``state_dict`` (parameters and buffers)."""
    return save_npz(path, model.state_dict())


def load_model(model: Layer, path: str | os.PathLike, strict: bool = True) -> Layer:
    """Load parameters and buffers saved by ``save_model`` into ``model``; returns it."""
    model.load_state_dict(load_npz(path), strict=strict)
    return model
