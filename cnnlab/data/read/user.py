"""Datasets from the user's own code, as cnnlab's splits.

A user format (`data: {format: mydata.py:load, ...}`, or `cnnlab.train(..., data=dataset)`) is a
function or class called with its options and whichever of `path`, `split`, `seed` and
`cache_dir` it takes. It returns:
  - a `torch.utils.data.Dataset` (anything with __len__ and __getitem__) of (image, label) pairs:
    the training split (validation then comes from data.val_fraction, as for any format);
  - a dict of them by split name: {"train": ..., "val": ..., "test": ...} ("dev" is val);
  - arrays: (images, labels), or a dict of such pairs;
  - with a `split` parameter, it is called once per split ("train", "val", "test") and may
    return None for a split it does not have.
Images: PIL images, NumPy arrays (H x W, H x W x C, or C x H x W) or tensors (C x H x W), as
uint8 (0..255) or floats (0..1); every image of a dataset the same shape. Labels: integers
0..K-1, or any other values (strings, ints), which become classes in sorted order. A dataset's
`classes` attribute (torchvision's convention) names the classes. Everything is read into
memory once, when the run starts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cnnlab.data.types import RawDataset, Split
from cnnlab.errors import DataError
from cnnlab.lazy import lazy
from cnnlab.usercode.blame import add_code_of, blame

torch = lazy("torch")

SPLITS = ("train", "val", "test")
ALIASES = {"dev": "val", "valid": "val", "validation": "val"}


def read_user_format(call: Callable[..., Any], takes_split: bool, label: str) -> RawDataset:
    """Call the user's format (per split when it takes `split`) and convert what it returns."""
    if takes_split:
        parts = {s: _called(call, label, split=s) for s in SPLITS}
        parts = {s: v for s, v in parts.items() if v is not None}
    else:
        got = _called(call, label)
        parts = _by_split(got, label)
    if "train" not in parts:
        raise DataError(f"data.format: {label} returned no training split (got {sorted(parts) or 'nothing'}); return a "
                        "dataset, (images, labels), or a dict with a 'train' entry")
    return from_python(parts, label)


def _called(call: Callable[..., Any], label: str, **kw: Any) -> Any:
    try:
        return call(**kw)
    except Exception as e:
        err = blame(e, f"data.format: {label} raised" + (f" for split '{kw['split']}'" if kw else ""))
        if err is None:
            raise
        raise err from None


def _by_split(got: Any, label: str) -> dict[str, Any]:
    if isinstance(got, RawDataset):
        return {"raw": got}
    if isinstance(got, dict):
        out = {}
        for key, value in got.items():
            name = ALIASES.get(str(key), str(key))
            if name not in SPLITS:
                raise DataError(f"data.format: {label} returned a dict with key '{key}'; use train, val (or dev) and test")
            if value is not None:
                out[name] = value
        return out
    return {"train": got}


def from_python(parts: dict[str, Any], label: str) -> RawDataset:
    """Splits of Python objects (datasets or (images, labels) arrays) as a RawDataset."""
    if "raw" in parts:
        return parts["raw"]
    read = {name: _read(obj, f"{label} ({name} split)") for name, obj in parts.items()}
    train_x = read["train"][0]
    for name, (x, _, _) in read.items():
        if x.shape[1:] != train_x.shape[1:]:
            raise DataError(f"data.format: {label}: {name} images are {tuple(x.shape[1:])} but train images are "
                            f"{tuple(train_x.shape[1:])} (C, H, W); return images of one size")
    classes = _classes(parts, read, label)
    index = {v: i for i, v in enumerate(classes["values"])}
    splits = {}
    for name, (x, raw_y, _) in read.items():
        y = torch.tensor([index[v] for v in raw_y], dtype=torch.long)
        splits[name] = Split(x, y, [str(i) for i in range(len(x))])
    notes = [f"read from {label} (your own code): {', '.join(f'{k} {len(v)}' for k, v in splits.items())} images"]
    return RawDataset(train=splits["train"], classes=classes["names"], label_values=classes["values"],
                      val=splits.get("val"), test=splits.get("test"), notes=notes)


def _read(obj: Any, label: str) -> tuple[torch.Tensor, list[Any], Any]:
    """(N x C x H x W tensor, labels, the object) of a dataset or an (images, labels) pair."""
    if isinstance(obj, tuple) and len(obj) == 2 and hasattr(obj[0], "shape"):  # (images, labels) arrays
        images, labels = obj
        x = _images(images, label)
        ys = _labels(labels, label)
        if len(ys) != len(x):
            raise DataError(f"data.format: {label}: {len(x)} images but {len(ys)} labels")
        return x, ys, None
    if isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], list) and isinstance(obj[1], list):
        if len(obj[0]) != len(obj[1]):
            raise DataError(f"data.format: {label}: {len(obj[0])} images but {len(obj[1])} labels")
        obj = list(zip(*obj))  # (list of images, list of labels): read as pairs
    is_dataset = hasattr(obj, "__getitem__") and hasattr(obj, "__len__")
    if not is_dataset or isinstance(obj, (str, bytes, np.ndarray, torch.Tensor)):
        raise DataError(f"data.format: {label} returned {_a(obj)}; return a Dataset of (image, label) "
                        "pairs, (images, labels) arrays, or a dict of them by split")
    add_code_of(obj)
    n = len(obj)
    if n == 0:
        raise DataError(f"data.format: {label} is empty")
    first_shape: tuple[int, ...] | None = None
    images, labels = [], []
    for i in range(n):
        try:
            item = obj[i]
        except Exception as e:
            err = blame(e, f"data.format: {label} item {i} raised")
            if err is None:
                raise
            raise err from None
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise DataError(f"data.format: {label} item {i} is {_a(item)}; a dataset must return (image, label) pairs")
        img = _image(item[0], f"{label} item {i}")
        if first_shape is None:
            first_shape = tuple(img.shape)
        elif tuple(img.shape) != first_shape:
            raise DataError(f"data.format: {label} item {i} is an image of {tuple(img.shape)} (C, H, W) but item 0 is "
                            f"{first_shape}; return images of one size (resize them in the dataset)")
        images.append(img)
        labels.append(_label(item[1], f"{label} item {i}"))
    x = np.stack(images)
    return torch.from_numpy(x), labels, obj


def _image(img: Any, where: str) -> np.ndarray:
    """One image as a C x H x W uint8 (0..255) or float32 (0..1) array."""
    if hasattr(img, "convert") and hasattr(img, "size"):  # a PIL image
        arr = np.asarray(img)
    elif isinstance(img, torch.Tensor):
        arr = img.detach().cpu().numpy()
        if arr.ndim == 3:
            arr = arr.transpose(1, 2, 0)  # tensors are C x H x W: to H x W x C like the rest
    elif isinstance(img, np.ndarray):
        arr = img
        if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
            arr = arr.transpose(1, 2, 0)
    else:
        raise DataError(f"data.format: {where}: the image is {_a(img)}; return a PIL image, a NumPy array or a tensor")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise DataError(f"data.format: {where}: an image of shape {arr.shape}; expected H x W, H x W x C or C x H x W")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr.transpose(2, 0, 1))
    if np.issubdtype(arr.dtype, np.bool_) or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"data.format: {where}: image values of type {arr.dtype}; return uint8 (0..255) or floats (0..1)")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise DataError(f"data.format: {where}: the image holds NaN or infinite values")
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def _a(obj: Any) -> str:
    """'an int', 'a str': the type of what came back, in words."""
    name = type(obj).__name__
    known = {"ndarray": "a NumPy array", "Tensor": "a tensor", "NoneType": "None"}
    return known.get(name) or f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _images(images: Any, label: str) -> torch.Tensor:
    arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4:
        raise DataError(f"data.format: {label}: images of shape {arr.shape}; expected N x H x W, N x C x H x W or "
                        "N x H x W x C")
    if arr.shape[1] not in (1, 3, 4) and arr.shape[-1] in (1, 3, 4):
        arr = arr.transpose(0, 3, 1, 2)
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_):
            raise DataError(f"data.format: {label}: images of type {arr.dtype}; use uint8 (0..255) or floats (0..1)")
        arr = arr.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr))


def _label(value: Any, where: str) -> Any:
    if isinstance(value, (torch.Tensor, np.ndarray)):
        if (value.size if isinstance(value, np.ndarray) else value.numel()) != 1:
            raise DataError(f"data.format: {where}: the label is an array of shape {tuple(value.shape)}; return one class "
                            "index (or name) per image")
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer, str)):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise DataError(f"data.format: {where}: the label is {value!r} ({type(value).__name__}); return an integer class "
                        "index or a class name")
    return int(value) if isinstance(value, (int, np.integer)) else value


def _labels(labels: Any, label: str) -> list[Any]:
    arr = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if arr.ndim != 1:
        raise DataError(f"data.format: {label}: labels of shape {arr.shape}; expected one per image")
    return [_label(v, f"{label} label {i}") for i, v in enumerate(arr.tolist())]


def _classes(parts: dict[str, Any], read: dict[str, tuple[Any, list[Any], Any]], label: str) -> dict[str, list[Any]]:
    """Class values in order, and their names (a dataset's `classes` attribute when it has one)."""
    values = sorted({v for _, ys, _ in read.values() for v in ys}, key=lambda v: (isinstance(v, str), v))
    if any(isinstance(v, str) for v in values) and any(not isinstance(v, str) for v in values):
        raise DataError(f"data.format: {label}: labels mix numbers and names; use one kind")
    named = next((getattr(obj, "classes", None) for _, _, obj in read.values() if obj is not None
                  and isinstance(getattr(obj, "classes", None), (list, tuple))), None)
    if all(isinstance(v, int) for v in values):
        if values and values[0] < 0:
            raise DataError(f"data.format: {label}: negative label {values[0]}; class indices start at 0")
        k = max(len(named) if named else 0, values[-1] + 1 if values else 0)
        if named is not None and values and values[-1] >= len(named):
            raise DataError(f"data.format: {label}: label {values[-1]} but its `classes` lists {len(named)} names")
        values = list(range(k))
        names = [str(n) for n in named] if named else [str(v) for v in values]
        return {"values": values, "names": names}
    return {"values": values, "names": [str(v) for v in values]}
