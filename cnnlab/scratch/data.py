"""Read MNIST-style IDX files (optionally gzipped) with the standard library and numpy."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

# IDX type codes (third byte of the magic number) to numpy dtypes; multi-byte data is big-endian.
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse one IDX file: 2 zero bytes, a type code, the rank, big-endian sizes, then data."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path} is not an IDX file")
    rank = raw[3]
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=rank, offset=4))
    data = np.frombuffer(raw, dtype=_IDX_TYPES[raw[2]], offset=4 + 4 * rank)
    return data.reshape(shape)


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{stem}[.gz] not found in {root}")


def load_mnist(root: str | os.PathLike, split: str = "train",
               limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (images float32 (N, 1, 28, 28) scaled to [0, 1], labels int64 (N,))."""
    images_stem, labels_stem = MNIST_FILES[split]
    images = read_idx(_find(Path(root), images_stem))
    labels = read_idx(_find(Path(root), labels_stem))
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = (images.astype(np.float32) / 255.0)[:, None, :, :]
    return x, labels.astype(np.int64)


def standardize(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    """(x - mean) / std in the array's own dtype."""
    return ((x - mean) / std).astype(x.dtype, copy=False)


# The usual MNIST pixel statistics (of the training set, in [0, 1] units).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
