"""Kaggle layout: train.npy (N x 784, or N x H x W [x C]) with train.csv (image_id,label)."""

from __future__ import annotations

import csv
import math
import tokenize
from pathlib import Path

import numpy as np

from cnnlab.data.read.labels import check_range, numeric_classes, refuse_fractional
from cnnlab.data.read.registry import FORMATS
from cnnlab.data.types import RawDataset, Split
from cnnlab.errors import DataError
from cnnlab.lazy import lazy

torch = lazy("torch")


def load_npy(path: Path) -> np.ndarray:
    """np.load without pickles, turning every failure into a DataError naming the file."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with open(path, "rb") as f:  # the declared shape, checked against the file before anything is allocated
            version = np.lib.format.read_magic(f)
            header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            shape, _, dtype = header[version](f) if version in header else ((0,), False, np.dtype("u1"))
            declared = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if declared > path.stat().st_size:
                raise DataError(f"{path}: its header declares {shape} {dtype} ({declared:,} bytes) but the file "
                                f"holds {path.stat().st_size:,}; it is truncated or damaged")
        return np.load(path, allow_pickle=False)
    except (SyntaxError, tokenize.TokenError, TypeError, OverflowError) as e:  # a damaged header's text
        raise DataError(f"{path}: not a readable .npy array (damaged header: {type(e).__name__})") from None
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise DataError(f"{path}: holds Python objects, which cnnlab does not unpickle; save a numeric array") from None
        raise DataError(f"{path}: not a readable .npy array ({e}); it may be truncated") from None
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None


def to_images(arr: np.ndarray, path: Path, image_shape: list[int] | None = None) -> torch.Tensor:
    """N x D, N x H x W or N x H x W x C arrays as an N x C x H x W tensor."""
    if arr.ndim < 2 or arr.shape[0] == 0:
        raise DataError(f"{path}: expected an array of images, N x 784 or N x H x W [x C], got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise DataError(f"{path}: expected numbers, found dtype {arr.dtype}")
    n = arr.shape[0]
    if image_shape is not None:
        c, h, w = _chw(image_shape, path)
        if int(np.prod(arr.shape[1:])) != c * h * w:
            raise DataError(f"{path}: rows of {int(np.prod(arr.shape[1:]))} values do not fit data.image_shape {image_shape}")
        # Flat rows are stored channel-last (H, W, C), the order Kaggle and PIL use.
        arr = arr.reshape(n, h, w, c).transpose(0, 3, 1, 2)
    elif arr.ndim == 2:
        side = math.isqrt(arr.shape[1])
        if side * side != arr.shape[1]:
            raise DataError(
                f"{path}: rows of {arr.shape[1]} values are not a square image; "
                "set data.image_shape to [C, H, W]"
            )
        arr = arr.reshape(n, 1, side, side)
    elif arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4 and arr.shape[-1] in (1, 3, 4) and arr.shape[1] not in (1, 3, 4):
        arr = arr.transpose(0, 3, 1, 2)
    elif arr.ndim != 4:
        raise DataError(f"{path}: cannot read images from shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float32)
        if not np.isfinite(arr).all():
            raise DataError(f"{path}: holds NaN or infinite values")
    return torch.from_numpy(np.ascontiguousarray(arr))


def _chw(shape: list[int], path: Path) -> tuple[int, int, int]:
    if len(shape) == 2:
        return 1, shape[0], shape[1]
    if len(shape) == 3:
        return shape[0], shape[1], shape[2]
    raise DataError(f"{path}: data.image_shape must be [H, W] or [C, H, W], got {shape}")


def read_label_csv(path: Path, id_column: str, label_column: str) -> tuple[np.ndarray, list[str]]:
    """(image ids, raw label strings) from a CSV with a header row."""
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected columns {id_column},{label_column})")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            for col in (id_column, label_column):
                if col not in header:
                    raise DataError(f"{path}: no column '{col}' in header {header}; set data.id_column / data.label_column")
            ids, labels = [], []
            for line, row in enumerate(reader, start=2):
                try:
                    ids.append(int(row[id_column]))
                except (TypeError, ValueError):
                    raise DataError(f"{path}: line {line}: image_id {row[id_column]!r} is not a row number") from None
                if row[label_column] in (None, ""):
                    raise DataError(f"{path}: line {line}: empty label")
                labels.append(row[label_column].strip())
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text CSV") from None
    except csv.Error as e:
        raise DataError(f"{path}: malformed CSV ({e})") from None
    return np.asarray(ids, dtype=np.int64), labels


@FORMATS.register("npy_csv", context=("path",))
def load_npy_csv(
    path: Path,
    train_file: str = "train.npy",
    labels_file: str = "train.csv",
    test_file: str = "test.npy",
    id_column: str = "image_id",
    label_column: str = "label",
    image_shape: list[int] | None = None,
    num_classes: int | None = None,
) -> RawDataset:
    """data.path: a Kaggle-style folder with train.npy (N x 784, or N x H x W [x C]) and train.csv (image_id,label); `cnnlab predict` reads test.npy."""
    if not path.is_dir():
        raise DataError(f"{path}: expected a folder holding {train_file} and {labels_file}")
    arr = load_npy(path / train_file)
    x = to_images(arr, path / train_file, image_shape)
    ids, raw_labels = read_label_csv(path / labels_file, id_column, label_column)
    if len(ids) != len(x):
        raise DataError(
            f"{path / labels_file}: {len(ids)} labelled rows but {train_file} holds {len(x)} images; "
            "they must describe the same images"
        )
    if ids.min() < 0 or ids.max() >= len(x):
        bad = int(ids[(ids < 0) | (ids >= len(x))][0])
        raise DataError(f"{path / labels_file}: image_id {bad} is not a row of {train_file} (0..{len(x) - 1})")
    if len(np.unique(ids)) != len(ids):
        dup = int(ids[np.argmax(np.bincount(ids))])
        raise DataError(f"{path / labels_file}: image_id {dup} appears more than once")

    if all(_is_int(v) for v in raw_labels):
        y = np.asarray([int(v) for v in raw_labels], dtype=np.int64)
        classes, values = numeric_classes(y, str(path / labels_file), num_classes)
        labels = check_range(y, len(classes), str(path / labels_file))
    else:  # named labels: classes in sorted order, predictions written by name
        refuse_fractional(raw_labels, str(path / labels_file))
        classes = sorted(set(raw_labels))
        values = list(classes)
        lookup = {c: i for i, c in enumerate(classes)}
        labels = torch.tensor([lookup[v] for v in raw_labels], dtype=torch.long)

    order = torch.from_numpy(np.argsort(ids))  # CSV rows may come in any order
    train = Split(x, labels[order], [str(i) for i in range(len(x))])
    notes = []
    if (path / test_file).is_file():
        notes.append(f"{test_file} is unlabelled: predict on it with `cnnlab predict RUN {path / test_file}`")
    return RawDataset(train=train, classes=classes, label_values=values, notes=notes)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True
