"""Save and load parameters + buffers as .npz files (no pickle), written atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .layers.base import Layer


def save_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` to ``path`` via a temporary file in the same folder and os.replace.

    A crash mid-write leaves the previous file intact: readers see the old or the new file,
    never a truncated one (os.replace is atomic within one file system).
    """
    arrays = {key: np.asarray(value) for key, value in arrays.items()}
    for key, value in arrays.items():
        if value.dtype.hasobject:  # would need pickle, which load_npz refuses
            raise TypeError(f"array {key!r} has dtype object; only plain numeric arrays are saved")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
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
