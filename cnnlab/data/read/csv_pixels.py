"""Pixel CSVs: one row per image, a label column and one column per pixel.

The Kaggle digit-recognizer layout: `train.csv` with `label,pixel0,...,pixel783` and an
unlabelled `test.csv` with the pixel columns only (`cnnlab predict RUN test.csv`).
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np

from cnnlab.data.read.labels import check_range, encode, numeric_classes, refuse_fractional
from cnnlab.data.read.npy_csv import to_images
from cnnlab.data.read.registry import FORMATS
from cnnlab.data.types import RawDataset, Split
from cnnlab.errors import DataError
from cnnlab.lazy import lazy

torch = lazy("torch")


def read_header(path: Path) -> list[str]:
    """The column names of a CSV file's first line."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), [])
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text CSV") from None
    except csv.Error as e:
        raise DataError(f"{path}: line 1: malformed CSV header ({e})") from None
    header = [h.strip() for h in header]
    if not header:
        raise DataError(f"{path}: empty file; expected a header line such as label,pixel0,pixel1,...")
    return header


def read_pixel_csv(
    path: Path, label_column: str | None, ignore: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """(N x D pixels as uint8 or float32, raw label strings or None, pixel column names).

    `label_column` None means the file is unlabelled; a column of that name is dropped if present.
    """
    header = read_header(path)
    skip = set(ignore or [])
    unknown = sorted(skip - set(header))
    if unknown:
        raise DataError(f"{path}: data.ignore_columns names '{unknown[0]}', which is not in the header")
    label_at = header.index(label_column) if label_column is not None and label_column in header else None
    pixel_cols = [i for i, h in enumerate(header) if i != label_at and h not in skip]
    if not pixel_cols:
        raise DataError(f"{path}: no pixel columns besides '{label_column}'")
    _check_widths(path, len(header))
    try:
        # The C parser reads integers ~10x faster than floats, and pixel CSVs are nearly always integers.
        pixels = _loadtxt(path, pixel_cols, np.int32)
    except ValueError:
        try:
            pixels = _loadtxt(path, pixel_cols, np.float32)
        except ValueError:
            raise _first_bad_line(path, len(header), pixel_cols) from None
    if pixels.shape[0] == 0:
        raise DataError(f"{path}: no data rows after the header")
    if np.issubdtype(pixels.dtype, np.integer) and pixels.min() >= 0 and pixels.max() <= 255:
        pixels = pixels.astype(np.uint8)
    else:
        pixels = pixels.astype(np.float32)
        if not np.isfinite(pixels).all():
            raise DataError(f"{path}: holds NaN or infinite pixel values")
    labels = None
    if label_at is not None:
        labels = np.char.strip(_loadtxt(path, [label_at], str))
        empty = np.flatnonzero(labels == "")
        if empty.size:
            raise DataError(f"{path}: line {_line_of(path, int(empty[0]))}: empty '{header[label_at]}' value")
    return pixels, labels, [header[i] for i in pixel_cols]


def _check_widths(path: Path, width: int) -> None:
    """Every non-empty line has the header's number of columns (loadtxt with usecols would not notice)."""
    try:
        buf = np.frombuffer(path.read_bytes(), np.uint8)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    breaks = np.flatnonzero(buf == ord("\n"))
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [len(buf)]])
    length = ends - starts
    length -= (length > 0) & (buf[np.maximum(ends - 1, 0)] == ord("\r"))  # CRLF line ends
    lines = np.flatnonzero(length > 0)  # empty lines are skipped, as loadtxt does
    if lines.size == 0:
        return
    for first in range(0, lines.size, 4096):  # blocks of lines keep the running counts small
        block = lines[first:first + 4096]
        lo = starts[block[0]]
        commas = np.concatenate([[0], np.cumsum(buf[lo:ends[block[-1]]] == ord(","), dtype=np.int32)])
        count = commas[ends[block] - lo] - commas[starts[block] - lo]
        bad = np.flatnonzero(count != width - 1)
        if bad.size:
            k = int(block[bad[0]])
            raise DataError(f"{path}: line {k + 1}: {int(count[bad[0]]) + 1} columns, but the header has {width}")


def _loadtxt(path: Path, cols: list[int], dtype: type) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*contained no data")  # empty lines are fine
            arr = np.loadtxt(path, delimiter=",", skiprows=1, usecols=cols, dtype=dtype, encoding="utf-8-sig", ndmin=2)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text CSV") from None
    return arr[:, 0] if dtype is str else arr


def _line_of(path: Path, row: int) -> int:
    """The 1-based file line of data row `row`, counting the header and skipping empty lines as loadtxt does."""
    with open(path, encoding="utf-8-sig") as f:
        next(f)
        seen = -1
        for n, line in enumerate(f, start=2):
            if line.rstrip("\r\n"):
                seen += 1
                if seen == row:
                    return n
    return row + 2


def _first_bad_line(path: Path, width: int, pixel_cols: list[int]) -> DataError:
    """Scan (slowly, only after a failure) for the first value loadtxt choked on."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        next(reader)
        for row in reader:
            line = reader.line_num
            if len(row) != width:
                continue  # blank lines; _check_widths has already refused short or long ones
            for i in pixel_cols:
                try:
                    float(row[i])
                except ValueError:
                    return DataError(f"{path}: line {line}, column {i + 1}: {row[i]!r} is not a number")
    return DataError(f"{path}: cannot parse as a numeric CSV")


@FORMATS.register("csv_pixels", context=("path",))
def load_csv_pixels(
    path: Path,
    train_file: str = "train.csv",
    test_file: str | None = None,
    label_column: str = "label",
    ignore_columns: list[str] | None = None,
    image_shape: list[int] | None = None,
    num_classes: int | None = None,
) -> RawDataset:
    """data.path: a CSV of label,pixel0,pixel1,... rows (the file itself, or `train_file` in the folder), optionally a labelled `test_file`."""
    folder, train_path = (path.parent, path) if path.is_file() else (path, path / train_file)
    if label_column not in read_header(train_path):
        raise DataError(f"{train_path}: no '{label_column}' column in the header; set data.label_column")
    x, raw_labels, _ = read_pixel_csv(train_path, label_column, ignore_columns)
    assert raw_labels is not None  # the label column exists
    y = _as_ints(raw_labels)
    if y is not None:
        if num_classes is not None:
            _check_labels(y, num_classes, train_path)
        classes, values = numeric_classes(y, str(train_path), num_classes)
        labels = _check_labels(y, len(classes), train_path)
    else:  # named labels: sorted classes, predictions written by name
        refuse_fractional(raw_labels.tolist(), str(train_path))
        classes = sorted(set(raw_labels.tolist()))
        values = list(classes)
        labels = encode(raw_labels.tolist(), classes, str(train_path))
    train = Split(to_images(x, train_path, image_shape), labels, [str(i) for i in range(len(x))])

    test, notes = None, []
    if test_file is not None:
        tpath = folder / test_file
        if label_column not in read_header(tpath):
            raise DataError(f"{tpath}: no '{label_column}' column, so it cannot be the test split; "
                            f"predict on it with `cnnlab predict RUN {tpath}` instead")
        tx, tlabels, _ = read_pixel_csv(tpath, label_column, ignore_columns)
        assert tlabels is not None
        if y is not None:
            ty_int = _as_ints(tlabels)
            if ty_int is None:
                bad = next(i for i, v in enumerate(tlabels.tolist()) if _as_ints(np.asarray([v])) is None)
                raise DataError(f"{tpath}: line {_line_of(tpath, bad)}: label {tlabels[bad]!r} is not a class number")
            ty = _check_labels(ty_int, len(classes), tpath)
        else:
            ty = encode(tlabels.tolist(), classes, str(tpath))
        test = Split(to_images(tx, tpath, image_shape), ty, [str(i) for i in range(len(tx))])
    elif (folder / "test.csv").is_file() and folder / "test.csv" != train_path:
        if label_column in read_header(folder / "test.csv"):
            notes.append(f"{folder / 'test.csv'} has labels: set data.test_file: test.csv to use it as the test split")
        else:
            notes.append(f"{folder / 'test.csv'} is unlabelled: predict on it with `cnnlab predict RUN {folder / 'test.csv'}`")
    return RawDataset(train=train, test=test, classes=classes, label_values=values, notes=notes)


def _check_labels(y: np.ndarray, k: int, path: Path) -> torch.Tensor:
    """Labels as a tensor, or a DataError naming the file line of the first one outside 0..k-1."""
    bad = np.flatnonzero((y < 0) | (y >= k))
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{path}: line {_line_of(path, i)}: label {int(y[i])} is outside the class range 0..{k - 1}")
    return check_range(y, k, str(path))


def _as_ints(labels: np.ndarray) -> np.ndarray | None:
    """Integer labels, or None when any label is not a whole number written as one."""
    try:
        return labels.astype(np.int64)
    except ValueError:
        return None


def predict_inputs(path: Path, shape: tuple[int, int, int]) -> tuple[list[str], torch.Tensor]:
    """(row numbers, images) from an unlabelled pixel CSV; a 'label' column, if any, is ignored."""
    c, h, w = shape
    x, _, cols = read_pixel_csv(path, "label")
    if x.shape[1] != c * h * w:
        raise DataError(f"{path}: rows of {x.shape[1]} pixel columns, but the model takes {c}x{h}x{w} = {c * h * w}")
    return [str(i) for i in range(len(x))], to_images(x, path, [c, h, w])
