"""Hugging Face datasets on disk (`data.format: hf`), read offline with the `datasets` library:

    data: {format: hf, path: data/cifar10-hf}              # save_to_disk, Parquet/Arrow files or imagefolder
    data: {format: hf, path: data/pets, image_column: img, label_column: breed}

The image column holds `datasets.Image` values (or encoded image bytes); the label column is a
ClassLabel (its names are the classes), integers 0..K-1 (classes '0'..'K-1') or strings (sorted
names). HF's splits are cnnlab's: train, validation/valid/val/dev as val, test (`splits` names
others); val_fraction / test_fraction carve a missing one. A label of -1 (or none) means unlabelled:
a test split without labels is left for `cnnlab predict RUN DATASET`. Images decode as
image_folder's do (channels, image_size, skip_corrupt), in memory or per batch by row index
(hf_rows.py). Every problem is one line naming the dataset, split, row or column.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cnnlab.data.read.cache import cached, default_cache_dir
from cnnlab.data.read.decode import decode_many
from cnnlab.data.read.hf_rows import HFRows, hf_source, layout_of, open_splits
from cnnlab.data.read.image_folder import SPLIT_NAMES, _decoded_format, _probe, _size
from cnnlab.data.read.listing import FileListing, cached_listing
from cnnlab.data.read.registry import FORMATS
from cnnlab.data.read.tree import FileTree
from cnnlab.data.types import FileSplit, RawDataset, Split
from cnnlab.errors import DataError
from cnnlab.lazy import lazy

torch = lazy("torch")

HF_SPLIT_NAMES = {"train": ("train",), "val": ("validation", *SPLIT_NAMES["val"]), "test": ("test",)}
_SPLIT_OPTION = dict[Literal["train", "val", "test"], str] | None


@dataclass
class _Scan:
    """What the dataset holds before any image is decoded: rows ('HFSPLIT/ROW') and labels per cnnlab split."""

    rows: HFRows
    classes: list[str]
    values: list[Any]
    files: dict[str, list[str]]
    labels: dict[str, list[int]]
    notes: list[str]


def _scan(path: Path, cache_dir: Path | None, image_column: str, label_column: str, named: _SPLIT_OPTION) -> _Scan:
    hf_cache = (cache_dir or default_cache_dir()) / "hf"
    found = open_splits(path, hf_cache)
    chosen, notes = _choose_splits(path, found, named)
    for name in chosen.values():
        _check_image_column(path, name, found[name], image_column)
    kinds = {split: _raw_labels(path, name, found[name], label_column, unlabelled_ok=split == "test")
             for split, name in chosen.items()}
    if "test" in chosen and all(v is None for v in kinds["test"][1]):
        n = len(kinds.pop("test")[1])
        notes.append(f"split '{chosen.pop('test')}' ({n} rows) is unlabelled, so not a test split: predict on it with "
                     f"`cnnlab predict RUN {path}`")
    for split, name in chosen.items():
        missing = next((r for r, v in enumerate(kinds[split][1]) if v is None), None)
        if missing is not None:
            raise DataError(f"{path}: split '{name}' row {missing} has no label; label or remove it (only a test "
                            "split may be unlabelled, and then wholly)")
    classes, values = _classes(path, chosen, kinds)
    lookup = {v: i for i, v in enumerate(values)}
    labels = {split: [lookup[v] for v in kinds[split][1]] for split in chosen}
    if len(set(labels["train"])) < 2:
        raise DataError(f"{path}: split '{chosen['train']}' holds fewer than two classes; a classifier needs two or more")
    rows = HFRows(hf_source(path, image_column, hf_cache))
    files = {s: [f"{name}/{r}" for r in range(len(found[name]))] for s, name in chosen.items()}
    return _Scan(rows, classes, values, files, labels, notes)


def _choose_splits(path: Path, found: dict[str, Any], named: _SPLIT_OPTION) -> tuple[dict[str, str], list[str]]:
    """cnnlab split -> HF split name, and a note naming the HF splits left unread."""
    have = ", ".join(f"'{n}'" for n in found)
    if named:
        if "train" not in named:
            raise DataError(f"data.splits: name the train split too, e.g. data.splits={{train: {next(iter(found))}}} "
                            f"({path} holds {have})")
        for split, name in named.items():
            if name not in found:
                raise DataError(f"data.splits.{split}: {path} has no split '{name}'; its splits are {have}")
        chosen = dict(named)
    else:
        chosen = {}
        for split, names in HF_SPLIT_NAMES.items():
            name = next((n for n in found if n.lower() in names), None)
            if name is not None:
                chosen[split] = name
        if "train" not in chosen:
            raise DataError(f"{path}: no train split (its splits are {have}); name the splits with "
                            f"data.splits={{train: {next(iter(found))}, ...}}")
    unread = [n for n in found if n not in chosen.values()]
    notes = [f"split(s) {', '.join(repr(n) for n in unread)} not read (data.splits names the splits to use)"] if unread else []
    return chosen, notes


def _check_image_column(path: Path, name: str, ds: Any, column: str) -> None:
    from datasets import Image, Value

    if column not in ds.column_names:
        raise DataError(f"{path}: split '{name}' has no column '{column}'; its columns are {ds.column_names}; "
                        "set data.image_column to the image column")
    feature = ds.features[column]
    if not (isinstance(feature, Image) or isinstance(feature, Value) and feature.dtype in ("binary", "large_binary")):
        raise DataError(f"{path}: column '{column}' of split '{name}' holds {_kind(feature)}, not images; "
                        f"set data.image_column to the image column (columns: {ds.column_names})")


def _raw_labels(path: Path, name: str, ds: Any, column: str, unlabelled_ok: bool) -> tuple[str, list, list[str] | None]:
    """(kind, label per row with None where unlabelled, ClassLabel names): kind 'classlabel', 'int' or 'str';
    'none' for a split without the column, when `unlabelled_ok` (a test split)."""
    from datasets import ClassLabel, Value

    if column not in ds.column_names:
        if unlabelled_ok:
            return "none", [None] * len(ds), None
        raise DataError(f"{path}: split '{name}' has no column '{column}'; its columns are {ds.column_names}; "
                        "set data.label_column to the label column")
    feature = ds.features[column]
    raw = ds.data.column(column).to_pylist()
    if isinstance(feature, ClassLabel) or isinstance(feature, Value) and feature.dtype.startswith(("int", "uint")):
        bad = next(((r, v) for r, v in enumerate(raw) if v is not None and v < -1), None)
        if bad is not None:
            raise DataError(f"{path}: split '{name}' row {bad[0]}: label {bad[1]} is negative; labels are 0..K-1 "
                            "(-1: unlabelled)")
        names = list(feature.names) if isinstance(feature, ClassLabel) else None
        bad = next(((r, v) for r, v in enumerate(raw) if names is not None and v is not None and v >= len(names)), None)
        if bad is not None:
            raise DataError(f"{path}: split '{name}' row {bad[0]}: label {bad[1]} is past the ClassLabel's "
                            f"{len(names or [])} names; fix the row or the feature's names")
        return ("classlabel" if names is not None else "int"), [None if v == -1 else v for v in raw], names
    if isinstance(feature, Value) and feature.dtype in ("string", "large_string"):
        return "str", [v if v is not None and v.strip() else None for v in raw], None
    raise DataError(f"{path}: label column '{column}' of split '{name}' holds {_kind(feature)}; expected a ClassLabel, "
                    "integer or string column; set data.label_column to the label column")


def _classes(path: Path, chosen: dict[str, str], kinds: dict[str, tuple[str, list, list[str] | None]]
             ) -> tuple[list[str], list[Any]]:
    """(class names, label values predictions are written as), agreed by every labelled split."""
    kind, _, names = kinds["train"]
    for split, (k, _, n) in kinds.items():
        if (k, n) != (kind, names):
            raise DataError(f"{path}: the label column of split '{chosen[split]}' ({n or k}) differs from the train "
                            f"split's ({names or kind}); give every split the same label feature")
    if kind == "classlabel":
        return list(names or []), list(range(len(names or [])))
    seen = {v for _, raw, _ in kinds.values() for v in raw if v is not None}
    if kind == "str":
        return sorted(seen), sorted(seen)
    k = max(seen, default=-1) + 1  # an empty split: no class, refused by the caller
    return [str(i) for i in range(k)], list(range(k))


def _kind(feature: Any) -> str:
    return getattr(feature, "dtype", None) or type(feature).__name__


def _survey(path: Path, cache_dir: Path | None, image_column: str, label_column: str, splits: _SPLIT_OPTION,
            size: tuple[int, int] | None, channels: Literal["auto", 1, 3], skip_corrupt: bool,
            every_header: bool = True) -> tuple[Any, set, int, tuple[int, int], list[str]]:
    """What the lister and the loader both start from: the scanned rows, the unreadable ones (an error
    unless skip_corrupt), and the decoded format (channels, size, notes). `every_header` False: an
    estimate from the first 16 headers, nothing checked."""
    scan = _scan(path, cache_dir, image_column, label_column, splits)
    every = [f for s in scan.files for f in scan.files[s]]
    headers = _probe(scan.rows, every if every_header else every[:16])  # type: ignore[arg-type]
    bad = {f for f, h in zip(every, headers) if h is None} if every_header else set()
    if bad and not skip_corrupt:
        raise DataError(_unreadable(scan.rows, next(f for f in every if f in bad)))
    c, hw, notes = _decoded_format(scan.rows, every, headers, size, channels)  # type: ignore[arg-type]
    return scan, bad, c, hw, notes


def list_hf(
    path: Path,
    cache_dir: Path | None = None,
    image_column: str = "image",
    label_column: str = "label",
    splits: _SPLIT_OPTION = None,
    image_size: int | list[int] | None = None,
    channels: Literal["auto", 1, 3] = "auto",
    skip_corrupt: bool = False,
    estimate: bool = False,
) -> FileListing:
    """The listing of the file-backed path: rows, labels and decoded shape of every split, nothing decoded."""
    size = _size(image_size)

    def build() -> FileListing:
        scan, bad, c, hw, notes = _survey(path, cache_dir, image_column, label_column, splits, size, channels,
                                          skip_corrupt, every_header=not estimate)
        if bad:
            notes.append(f"skipped {len(bad)} unreadable image(s) (data.skip_corrupt)")
        source = hf_source(path, image_column, scan.rows.cache)
        found = {}
        for s, files in scan.files.items():
            keep = [i for i, f in enumerate(files) if f not in bad]
            found[s] = FileSplit(source, [files[i] for i in keep],
                                 torch.tensor([scan.labels[s][i] for i in keep], dtype=torch.long),
                                 [_row(files[i]) for i in keep], (c, *hw))
        return FileListing(scan.classes, scan.values, found, [*scan.notes, *notes])

    if estimate:
        return build()
    return cached_listing(cache_dir, _cache_key(path, size, channels, skip_corrupt, image_column, label_column, splits),
                          build)


@FORMATS.register("hf", context=("path", "cache_dir"), lister=list_hf)
def load_hf(
    path: Path,
    cache_dir: Path | None = None,
    image_column: str = "image",
    label_column: str = "label",
    splits: _SPLIT_OPTION = None,
    image_size: int | list[int] | None = None,
    channels: Literal["auto", 1, 3] = "auto",
    skip_corrupt: bool = False,
) -> RawDataset:
    """data.path: a Hugging Face dataset (a save_to_disk folder, a folder of Parquet/Arrow files or an imagefolder directory), read offline; `image_column`, `label_column` (ClassLabel, integers or strings); HF splits train/validation/test (others named by `splits`); decoded once, cached."""
    size = _size(image_size)

    def read() -> RawDataset:
        scan, _, c, hw, notes = _survey(path, cache_dir, image_column, label_column, splits, size, channels,
                                        skip_corrupt)
        out, skipped = {}, 0
        for s, files in scan.files.items():
            x, kept, bad = decode_many(scan.rows, files, c, hw, skip_corrupt)  # type: ignore[arg-type]
            skipped += len(bad)
            out[s] = Split(torch.from_numpy(x), torch.tensor([scan.labels[s][i] for i in kept], dtype=torch.long),
                           [_row(files[i]) for i in kept])
        if skipped:
            notes.append(f"skipped {skipped} unreadable image(s) (data.skip_corrupt)")
        return RawDataset(classes=scan.classes, label_values=scan.values, notes=[*scan.notes, *notes], **out)

    return cached(cache_dir, _cache_key(path, size, channels, skip_corrupt, image_column, label_column, splits), read)


def predict_inputs(path: Path, info: dict[str, Any], data: dict[str, Any]) -> tuple[list[str], Any]:
    """(row numbers, images shaped like the run's training images) of the dataset's test split (or its
    only split) for `cnnlab predict`; `data` is the run's data section (image_column, splits)."""
    c, h, w = info.get("image_shape", info["input_shape"])
    cache = Path(data["cache_dir"]) if data.get("cache_dir") else default_cache_dir()
    column = data.get("image_column", "image")
    found = open_splits(path, cache / "hf")
    name = (data.get("splits") or {}).get("test", "test")
    if name not in found:
        if len(found) != 1:
            raise DataError(f"{path}: no split '{name}' to predict on (its splits are {', '.join(found)}); "
                            "set data.splits.test in the run's config, or give a dataset of one split")
        name = next(iter(found))
    _check_image_column(path, name, found[name], column)
    rows = HFRows(hf_source(path, column, cache / "hf"))
    files = [f"{name}/{r}" for r in range(len(found[name]))]
    x, _, _ = decode_many(rows, files, c, (h, w), skip_corrupt=False)  # type: ignore[arg-type]
    return [_row(f) for f in files], torch.from_numpy(x)


def _row(rel: str) -> str:
    """A row's id: its number in its split (data.exclude's SPLIT:N)."""
    return rel.rpartition("/")[2]


def _unreadable(rows: HFRows, rel: str) -> str:
    return f"{rows.describe(rel)}: cannot decode its image; replace or remove the row, or set data.skip_corrupt: true"


def _cache_key(path: Path, size: tuple[int, int] | None, channels: str | int, skip_corrupt: bool, image_column: str,
               label_column: str, splits: _SPLIT_OPTION) -> dict:
    """What the cached listing and decoded images depend on: every file of the dataset folder, the options."""
    layout_of(path)  # one line for a path that is no dataset, before anything is cached
    return {"format": "hf", "tree": FileTree(path).fingerprint(), "size": size, "channels": channels,
            "skip_corrupt": skip_corrupt, "columns": [image_column, label_column], "splits": splits, "version": 1}
