"""CIFAR-10 / CIFAR-100 as distributed: the binary version or the Python (pickle) version.

Accepted paths: the extracted `cifar-10-batches-py`, `cifar-10-batches-bin`,
`cifar-100-python` or `cifar-100-binary` folder, or a folder holding one of them.
Which of the four is present is detected from the file names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cnnlab.data.read.labels import check_range
from cnnlab.data.read.registry import FORMATS
from cnnlab.data.read.safe_pickle import load_pickle
from cnnlab.data.types import RawDataset, Split
from cnnlab.errors import DataError
from cnnlab.lazy import lazy

torch = lazy("torch")

PIXELS = 3 * 32 * 32  # R plane, G plane, B plane, each 32 x 32 row-major


@dataclass(frozen=True)
class Layout:
    """One of the four official layouts: which files hold what."""

    name: str  # the folder name in the official archive
    title: str
    version: Literal["python", "binary"]
    train: tuple[str, ...]
    test: tuple[str, ...]
    names: tuple[str, ...]  # class-name files: CIFAR-10 one, CIFAR-100 fine then coarse
    label_bytes: int = 1  # binary records: CIFAR-100 has coarse then fine


LAYOUTS = (
    Layout("cifar-10-batches-py", "CIFAR-10", "python", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
           ("batches.meta",)),
    Layout("cifar-10-batches-bin", "CIFAR-10", "binary", tuple(f"data_batch_{i}.bin" for i in range(1, 6)), ("test_batch.bin",),
           ("batches.meta.txt",)),
    Layout("cifar-100-python", "CIFAR-100", "python", ("train",), ("test",), ("meta",)),
    Layout("cifar-100-binary", "CIFAR-100", "binary", ("train.bin",), ("test.bin",),
           ("fine_label_names.txt", "coarse_label_names.txt"), label_bytes=2),
)


def detect(path: Path, version: str) -> tuple[Path, Layout]:
    """The folder and layout of the CIFAR files under `path` (itself or one level down)."""
    if not path.is_dir():
        raise DataError(f"{path}: expected a folder such as cifar-10-batches-py (extract the .tar.gz first)")
    candidates = [path] + sorted(p for p in path.iterdir() if p.is_dir())
    found = []
    for folder in candidates:
        for layout in LAYOUTS:
            if version != "auto" and layout.version != version:
                continue
            if (folder / layout.train[0]).is_file():
                found.append((folder, layout))
    if not found:
        want = "data_batch_1, data_batch_1.bin, train or train.bin" if version == "auto" else (
            ", ".join(sorted({lay.train[0] for lay in LAYOUTS if lay.version == version})))
        raise DataError(f"{path}: no CIFAR files found (looked for {want} here and one folder down)")
    # Prefer the folder itself; between versions in one place, the binary one (no pickles).
    found.sort(key=lambda f: (f[0] != path, f[1].version != "binary"))
    folder, layout = found[0]
    # A subset of the training batches is a legitimate choice (noted); a missing test file is not.
    missing = [n for n in layout.test if not (folder / n).is_file()]
    if missing:
        raise DataError(f"{folder}: found {layout.train[0]} but not {missing[0]}; is the download complete?")
    return folder, layout


@FORMATS.register("cifar", context=("path",))
def load_cifar(
    path: Path,
    label_mode: Literal["fine", "coarse"] = "fine",
    version: Literal["auto", "python", "binary"] = "auto",
) -> RawDataset:
    """data.path: `cifar-10-batches-py`, `cifar-10-batches-bin`, `cifar-100-python` or `cifar-100-binary` (or the folder above it): the training batches and the test batch (`label_mode: fine|coarse` for CIFAR-100)."""
    folder, layout = detect(path, version)
    is100 = layout.title == "CIFAR-100"
    if label_mode == "coarse" and not is100:
        raise DataError(f"data.label_mode: 'coarse' labels exist only in CIFAR-100, but {folder} is CIFAR-10")
    read = _read_python if layout.version == "python" else _read_binary
    classes, notes = _class_names(folder, layout, label_mode)
    splits = {}
    for split, files in (("train", layout.train), ("test", layout.test)):
        present = [folder / f for f in files if (folder / f).is_file()]
        parts = [read(f, layout, label_mode) for f in present]
        x = np.concatenate([p[0] for p in parts])
        y = torch.cat([check_range(p[1], len(classes), str(f)) for f, p in zip(present, parts)])
        ids = [i for p in parts for i in p[2]]
        splits[split] = Split(torch.from_numpy(x.reshape(-1, 3, 32, 32)), y, ids)
    present = [f for f in layout.train if (folder / f).is_file()]
    if len(present) < len(layout.train):
        notes.append(f"only {len(present)} of {len(layout.train)} training batches present: {', '.join(present)}")
    notes.insert(0, f"{layout.title} {layout.version} version in {folder}" + (f", {label_mode} labels" if is100 else ""))
    return RawDataset(train=splits["train"], test=splits["test"], classes=classes, label_values=list(range(len(classes))),
                      notes=notes)


def _read_binary(path: Path, layout: Layout, label_mode: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Fixed-size records: label byte(s), then 3072 pixel bytes."""
    record = layout.label_bytes + PIXELS
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if raw.size == 0 or raw.size % record:
        raise DataError(
            f"{path}: {raw.size} bytes is not a whole number of {record}-byte records "
            f"({raw.size // record} complete, {raw.size % record} bytes left over); "
            "the file is truncated or not a CIFAR binary batch, download it again"
        )
    rows = raw.reshape(-1, record)
    # CIFAR-100 records start with the coarse label, then the fine one.
    label_col = 0 if layout.label_bytes == 1 or label_mode == "coarse" else 1
    ids = [f"{path.name}:{i}" for i in range(len(rows))]
    return np.ascontiguousarray(rows[:, layout.label_bytes:]), rows[:, label_col].astype(np.int64), ids


def _read_python(path: Path, layout: Layout, label_mode: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A pickled dict with b'data' (N x 3072 uint8) and b'labels' or b'fine_labels'/b'coarse_labels'."""
    d = _bytes_keys(load_pickle(path), path)
    key = b"labels" if layout.title == "CIFAR-10" else (b"fine_labels" if label_mode == "fine" else b"coarse_labels")
    for k in (b"data", key):
        if k not in d:
            have = ", ".join(repr(x) for x in list(d)[:8])
            raise DataError(f"{path}: no {k!r} entry (found {have}); not a CIFAR {layout.version} batch")
    data = np.asarray(d[b"data"])
    if data.ndim != 2 or data.shape[1] != PIXELS or data.dtype != np.uint8:
        raise DataError(f"{path}: b'data' is {data.dtype} {data.shape}; expected uint8 N x {PIXELS}")
    labels = np.asarray(d[key])
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: {key!r} holds {labels.shape} {labels.dtype} for {len(data)} images")
    names = d.get(b"filenames")
    if isinstance(names, list) and len(names) == len(data):
        ids = [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]
    else:
        ids = [f"{path.name}:{i}" for i in range(len(data))]
    return np.ascontiguousarray(data), labels.astype(np.int64), ids


def _class_names(folder: Path, layout: Layout, label_mode: str) -> tuple[list[str], list[str]]:
    """Class names from the meta file, or numbers (with a note) when it is missing."""
    is100 = layout.title == "CIFAR-100"
    count = (100 if label_mode == "fine" else 20) if is100 else 10
    if layout.version == "binary":
        f = folder / layout.names[0 if label_mode == "fine" or not is100 else 1]
        names = _text_names(f) if f.is_file() else None
    else:
        f = folder / layout.names[0]
        names = _pickle_names(f, b"label_names" if not is100 else b"%s_label_names" % label_mode.encode()) if f.is_file() else None
    if names is None:
        return [str(i) for i in range(count)], [f"{f.name} not found: classes are numbered 0..{count - 1}"]
    if len(names) != count:
        raise DataError(f"{f}: lists {len(names)} class names; CIFAR-{'100' if is100 else '10'} {label_mode} labels need {count}")
    return names, []


def _bytes_keys(obj: Any, path: Path) -> dict:
    """The originals are Python 2 pickles with byte-string keys; re-pickled copies may have str keys."""
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, found {type(obj).__name__}; not a CIFAR file")
    return {k.encode() if isinstance(k, str) else k: v for k, v in obj.items()}


def _text_names(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read class names ({e})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _pickle_names(path: Path, key: bytes) -> list[str]:
    meta = _bytes_keys(load_pickle(path), path)
    if key not in meta or not isinstance(meta[key], list):
        raise DataError(f"{path}: no {key!r} list of class names; is this the CIFAR meta file?")
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in meta[key]]
