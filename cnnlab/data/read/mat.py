"""MATLAB .mat files (v4, v5, v7) holding an image matrix and a label vector.

The defaults fit `mnist-original.mat` (the old mldata.org file): `data` is 784 x 70000
uint8 with one image per column, `label` is 1 x 70000 float64, and the last 10000
columns are the test set (`test_from: 60000`). Course files often hold separate
`X_train`/`y_train`/`X_test`/`y_test` variables instead: name them in the options.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np

from cnnlab.data.read.labels import check_range, numeric_classes
from cnnlab.data.read.mat_child import read_variables
from cnnlab.data.read.npy_csv import to_images
from cnnlab.data.read.registry import FORMATS
from cnnlab.data.types import RawDataset, Split
from cnnlab.errors import DataError
from cnnlab.lazy import lazy

torch = lazy("torch")

Orientation = Literal["auto", "columns", "rows"]


@FORMATS.register("mat", context=("path",))
def load_mat(
    path: Path,
    data_var: str = "data",
    label_var: str = "label",
    orientation: Orientation = "auto",
    image_shape: list[int] | None = None,
    pixel_order: Literal["row", "column"] = "row",
    test_from: int | None = None,
    test_data_var: str | None = None,
    test_label_var: str | None = None,
    num_classes: int | None = None,
) -> RawDataset:
    """data.path: a MATLAB v4-v7 .mat file: images and labels from named variables; the test set from `test_from` (60000 for mnist-original.mat) or its own variables."""
    if not path.is_file():
        raise DataError(f"{path}: expected a .mat file")
    if (test_data_var is None) != (test_label_var is None):
        raise DataError("data.test_data_var and data.test_label_var: set both (the test images and their labels) or neither")
    if test_from is not None and test_data_var is not None:
        raise DataError("data.test_from and data.test_data_var: choose one way to find the test set")
    wanted = [v for v in (data_var, label_var, test_data_var, test_label_var) if v is not None]
    arrays = read_variables(path, wanted)

    x, y = _samples(arrays[data_var], arrays[label_var], data_var, label_var, orientation, path)
    tests = None
    if test_from is not None:
        if not 0 < test_from < len(y):
            raise DataError(f"data.test_from: {test_from} must be between 1 and {len(y) - 1} (there are {len(y)} samples)")
        x, tests = x[:test_from], (x[test_from:], y[test_from:], test_from)
        y = y[:test_from]
    elif test_data_var is not None and test_label_var is not None:
        tx, ty = _samples(arrays[test_data_var], arrays[test_label_var], test_data_var, test_label_var, orientation, path)
        tests = (tx, ty, 0)

    source = f"{path}:{label_var}"
    classes, values = numeric_classes(y, source, num_classes)
    train = Split(_images(x, path, image_shape, pixel_order, data_var), check_range(y, len(classes), source),
                  [str(i) for i in range(len(y))])
    test = None
    if tests is not None:
        tx, ty, first = tests
        tsource = f"{path}:{test_label_var or label_var}"
        test = Split(_images(tx, path, image_shape, pixel_order, test_data_var or data_var),
                     check_range(_integral(ty, tsource), len(classes), tsource),
                     [str(first + i) for i in range(len(ty))])
    per = "column" if _columns(arrays[data_var], arrays[label_var], orientation) else "row"
    shape = "x".join(map(str, arrays[data_var].shape))
    notes = [f"'{data_var}' ({shape}) read as one image per {per}, pixels in {pixel_order} order"]
    if test is None:
        notes.append("no test split: set data.test_from (e.g. 60000 for mnist-original.mat) or data.test_data_var/test_label_var")
    return RawDataset(train=train, test=test, classes=classes, label_values=values, notes=notes)


def _columns(data: np.ndarray, labels: np.ndarray, orientation: Orientation) -> bool:
    """True when samples run along the last axis (MATLAB's habit: one image per column)."""
    if orientation != "auto":
        return orientation == "columns"
    n = labels.size
    return data.shape[-1] == n and data.shape[0] != n


def _samples(data: np.ndarray, labels: np.ndarray, dvar: str, lvar: str, orientation: Orientation,
             path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(samples first, label vector), checking the two agree on the count."""
    if labels.ndim > 2 or (labels.ndim == 2 and min(labels.shape) != 1):
        raise DataError(f"{path}: '{lvar}' is {'x'.join(map(str, labels.shape))}; expected a label vector (1 x N or N x 1)")
    y = labels.ravel()
    n = y.size
    shape = "x".join(map(str, data.shape))
    if data.ndim < 2:
        raise DataError(f"{path}: '{dvar}' is {shape}; expected a matrix of images")
    if orientation == "auto":
        if data.shape[-1] == n and data.shape[0] == n:
            raise DataError(f"{path}: '{dvar}' is {shape} and there are {n} labels: set data.orientation "
                            "to columns (one image per column) or rows")
        if n not in (data.shape[0], data.shape[-1]):
            raise DataError(f"{path}: '{dvar}' is {shape} but '{lvar}' holds {n} labels; "
                            "neither its first nor its last dimension matches")
    columns = _columns(data, labels, orientation)
    count = data.shape[-1] if columns else data.shape[0]
    if count != n:
        raise DataError(f"{path}: '{dvar}' ({shape}) has {count} {'columns' if columns else 'rows'} "
                        f"but '{lvar}' holds {n} labels (data.orientation: {orientation})")
    x = np.moveaxis(data, -1, 0) if columns else data
    return x, _integral(y, f"{path}:{lvar}")


def _integral(y: np.ndarray, source: str) -> np.ndarray:
    """MATLAB stores labels as doubles: accept whole numbers, refuse anything else."""
    if np.issubdtype(y.dtype, np.integer):
        return y.astype(np.int64)
    if not np.all(np.isfinite(y)) or np.any(np.mod(y, 1) != 0):
        bad = int(np.argmax(~np.isfinite(y) | (np.mod(np.nan_to_num(y), 1) != 0)))
        raise DataError(f"{source}: label {float(y[bad]):g} at position {bad} is not a whole number")
    return y.astype(np.int64)


def _images(x: np.ndarray, path: Path, image_shape: list[int] | None, pixel_order: str, var: str) -> torch.Tensor:
    """N x D vectors (or N x H x W [x C] arrays) as an N x C x H x W tensor."""
    if x.ndim > 2:  # already shaped: N x H x W or N x H x W x C
        if image_shape is not None:
            raise DataError(f"data.image_shape: applies to flat image vectors, but '{var}' in {path} is already "
                            f"{'x'.join(map(str, x.shape[1:]))} per image; remove the option")
        return to_images(np.ascontiguousarray(x), Path(f"{path}:{var}"))
    n, d = x.shape
    if image_shape is None:
        side = math.isqrt(d)
        if side * side != d:
            raise DataError(f"{path}: '{var}' vectors of {d} values are not square images; set data.image_shape to [C, H, W]")
        c, h, w = 1, side, side
    elif len(image_shape) in (2, 3) and min(image_shape) > 0:
        c, h, w = ([1] + list(image_shape))[-3:]
    else:
        raise DataError(f"data.image_shape: expected [H, W] or [C, H, W], got {image_shape}")
    if c * h * w != d:
        raise DataError(f"{path}: '{var}' vectors of {d} values do not fit data.image_shape {image_shape} ({c * h * w} values)")
    # Channels are whole planes; inside a plane pixels run along rows (C order, as in
    # mnist-original) or down columns (MATLAB's own order, as reshape(x, H, W) reads them).
    x = x.reshape(n, c, h, w) if pixel_order == "row" else x.reshape(n, c, w, h).transpose(0, 1, 3, 2)
    if x.dtype != np.uint8:
        x = x.astype(np.float32)
        if not np.isfinite(x).all():
            raise DataError(f"{path}: '{var}' holds NaN or infinite values")
    return torch.from_numpy(np.ascontiguousarray(x))
