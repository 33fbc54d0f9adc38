"""MNIST / Fashion-MNIST IDX files (gzip or not): a folder with the four standard files."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from cnnlab.data.read.cache import cached
from cnnlab.data.read.labels import check_range, numeric_classes
from cnnlab.data.read.registry import FORMATS
from cnnlab.data.types import RawDataset, Split
from cnnlab.errors import DataError
from cnnlab.lazy import lazy

torch = lazy("torch")

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

# Both the official names and the common 'train-images.idx3-ubyte' spelling.
_NAMES = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def read_idx(path: Path) -> np.ndarray:
    """Decode one IDX file (optionally gzip-compressed), checking header against length."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot decompress ({e}); the file is corrupt or truncated, download it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    dtype = np.dtype(_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims)) * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "longer than its header says"
        raise DataError(
            f"{path}: file is {what} (header says {'x'.join(map(str, dims))}, "
            f"expected {expected} bytes, found {len(raw)}); download it again"
        )
    return np.frombuffer(bytearray(raw), dtype=dtype, offset=header).reshape(dims)  # writable copy


def find_file(folder: Path, key: str) -> Path | None:
    """The IDX file for `key` in `folder`, under any of its usual names, gzip or not."""
    for stem in _NAMES[key]:
        for name in (stem + ".gz", stem):
            if (folder / name).is_file():
                return folder / name
    return None


def _images(arr: np.ndarray, path: Path) -> torch.Tensor:
    if arr.ndim != 3:
        raise DataError(f"{path}: expected images N x H x W, found shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr)).unsqueeze(1)


@FORMATS.register("idx", context=("path", "cache_dir"))
def load_idx(path: Path, num_classes: int | None = None, cache_dir: Path | None = None) -> RawDataset:
    """data.path: a folder with train-images-idx3-ubyte[.gz] and its labels (MNIST, Fashion-MNIST), and t10k-* as the test split.

    Decompressed once and cached (data.cache): gunzipping Fashion-MNIST costs every run and
    every study worker half a second.
    """
    if not path.is_dir():
        raise DataError(f"{path}: expected a folder holding train-images-idx3-ubyte[.gz] and friends")
    files = {k: find_file(path, k) for k in _NAMES}
    for key in ("train_images", "train_labels"):
        if files[key] is None:
            raise DataError(f"{path}: missing {_NAMES[key][0]}[.gz]; is this an MNIST-style folder?")
    if (files["test_images"] is None) != (files["test_labels"] is None):
        have = "images" if files["test_images"] else "labels"
        raise DataError(f"{path}: found t10k test {have} but not the matching file; add it or remove both")
    found = {k: f for k, f in files.items() if f is not None}
    key = {"format": "idx", "num_classes": num_classes,
           "files": {k: [str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for k, f in found.items()}}
    return cached(cache_dir, key, lambda: _read(files, num_classes))


def _read(files: dict[str, Path | None], num_classes: int | None) -> RawDataset:
    splits = {}
    for split in ("train", "test"):
        ipath, lpath = files[f"{split}_images"], files[f"{split}_labels"]
        if ipath is None or lpath is None:
            continue
        x, y = _images(read_idx(ipath), ipath), read_idx(lpath)
        if y.ndim != 1:
            raise DataError(f"{lpath}: expected a label vector, found shape {y.shape}")
        if len(y) != len(x):
            raise DataError(f"{lpath}: {len(y)} labels but {ipath.name} holds {len(x)} images")
        splits[split] = (x, y, lpath)

    x, y, lpath = splits["train"]
    classes, values = numeric_classes(y, str(lpath), num_classes)
    out = {name: Split(sx, check_range(sy, len(classes), str(lp))) for name, (sx, sy, lp) in splits.items()}
    return RawDataset(train=out["train"], test=out.get("test"), classes=classes, label_values=values)
