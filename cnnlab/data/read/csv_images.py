"""A CSV of image paths and labels, as Kaggle and most labelling tools ship data:

    path,label[,split]
    train/0001.jpg,cat
    train/0002.jpg,dog

The paths are relative to `images` (a folder or a .zip; default: the CSV's own folder). Labels
are class names or integers (0..K-1); an optional split column (train, val/dev/valid, test)
says which split each row belongs to, else the usual val_fraction / test_fraction carve them.
The unlabelled test images of a Kaggle layout (test.csv of paths, test/) are for `cnnlab
predict RUN test.csv`. Every problem (a missing column, a missing or unreadable file, a label
that looks like a number but is not) is one line naming the CSV's line.
"""

from __future__ import annotations

import csv
from pathlib import Path, PurePosixPath
from typing import Literal

from cnnlab.data.read.cache import cached
from cnnlab.data.read.decode import decode_many
from cnnlab.data.read.image_folder import SPLIT_NAMES, _decoded_format, _probe, _size
from cnnlab.data.read.labels import refuse_fractional
from cnnlab.data.read.listing import FileListing, cached_listing
from cnnlab.data.read.registry import FORMATS
from cnnlab.data.read.tree import FileTree
from cnnlab.data.types import FileSplit, RawDataset, Split
from cnnlab.errors import DataError
from cnnlab.lazy import lazy

torch = lazy("torch")

SPLIT_OF = {name: split for split, names in SPLIT_NAMES.items() for name in names}


def images_root(csv_path: Path, images: str | None) -> Path:
    """Where the CSV's paths start: `images` (relative to the CSV's folder unless absolute), else the CSV's folder."""
    if images is None:
        return csv_path.parent
    root = Path(images).expanduser()
    return root if root.is_absolute() else csv_path.parent / root


def read_rows(csv_path: Path, columns: list[str]) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of every data row; one line for a missing file or column, or a broken CSV."""
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: file not found (data.path is the CSV of image paths and labels)")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            for col in columns:
                if col not in header:
                    raise DataError(f"{csv_path}: no column '{col}' in its header {header}; "
                                    "set data.path_column / data.label_column / data.split_column to the CSV's names")
            rows = [(line, {k.strip(): (v or "").strip() for k, v in row.items() if k is not None})
                    for line, row in enumerate(reader, start=2)]
    except UnicodeDecodeError:
        raise DataError(f"{csv_path}: not a UTF-8 text CSV") from None
    except csv.Error as e:
        raise DataError(f"{csv_path}: malformed CSV ({e})") from None
    if not rows:
        raise DataError(f"{csv_path}: no rows under the header")
    return rows


def relative_paths(csv_path: Path, tree: FileTree, rows: list[tuple[int, dict[str, str]]], column: str) -> list[str]:
    """Each row's image as a path inside the tree, or one line naming the first row whose file is missing."""
    present = set(tree.files)
    root = PurePosixPath(Path(tree.path).resolve().as_posix())
    out = []
    for line, row in rows:
        raw = row[column].replace("\\", "/")
        if not raw:
            raise DataError(f"{csv_path}: line {line}: empty {column}")
        p = PurePosixPath(raw)
        if p.is_absolute():
            try:
                p = p.relative_to(root)
            except ValueError:
                raise DataError(f"{csv_path}: line {line}: {raw} is outside {Path(tree.path).resolve()}; make the paths relative "
                                "to data.images (default: the CSV's folder)") from None
        rel = str(PurePosixPath(*[part for part in p.parts if part != "."]))
        if rel not in present:
            raise DataError(f"{csv_path}: line {line}: {raw} not found in {Path(tree.path).resolve()} (paths are "
                            "relative to data.images, default: the CSV's folder)")
        out.append(rel)
    return out


def class_labels(csv_path: Path, rows: list[tuple[int, dict[str, str]]], column: str) -> tuple[list[str], list, list[int]]:
    """(class names, label values as written in predictions, label index per row)."""
    raw = [row[column] for _, row in rows]
    for (line, _), v in zip(rows, raw):
        if v == "":
            raise DataError(f"{csv_path}: line {line}: empty {column}")
    ints = [_int(v) for v in raw]
    numeric = sum(i is not None for i in ints)
    if numeric == len(raw):
        k = max(ints) + 1  # type: ignore[type-var]
        if min(ints) < 0:  # type: ignore[type-var]
            line = rows[ints.index(min(ints))][0]  # type: ignore[type-var]
            raise DataError(f"{csv_path}: line {line}: label {min(ints)} is negative; integer labels are 0..K-1")
        return [str(i) for i in range(k)], list(range(k)), [int(i) for i in ints]  # type: ignore[arg-type]
    if numeric * 2 >= len(raw):  # mostly numbers: the others are typos, not class names
        line, v = next((line, v) for (line, _), v, i in zip(rows, raw, ints) if i is None)
        raise DataError(f"{csv_path}: line {line}: label {v!r} is not an integer, while most labels are; "
                        "fix the row (or use class names throughout)")
    refuse_fractional(raw, str(csv_path))
    classes = sorted(set(raw))
    lookup = {c: i for i, c in enumerate(classes)}
    return classes, list(classes), [lookup[v] for v in raw]


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _scan(csv_path: Path, tree: FileTree, path_column: str, label_column: str, split_column: str | None
          ) -> tuple[list[str], list, dict[str, list[str]], dict[str, list[int]], dict[str, int]]:
    """(classes, label values, files per split, labels per split, CSV line of each file), from the CSV alone."""
    rows = read_rows(csv_path, [path_column, label_column] + ([split_column] if split_column else []))
    files = relative_paths(csv_path, tree, rows, path_column)
    classes, values, labels = class_labels(csv_path, rows, label_column)
    splits = ["train"] * len(rows)
    if split_column:
        for i, (line, row) in enumerate(rows):
            split = SPLIT_OF.get(row[split_column].lower())
            if split is None:
                raise DataError(f"{csv_path}: line {line}: {split_column} {row[split_column]!r} is not a split; "
                                "use train, val (or dev, valid) or test")
            splits[i] = split
    if "train" not in splits:
        raise DataError(f"{csv_path}: no row is in the train split ({split_column} column)")
    per_files = {s: [f for f, t in zip(files, splits) if t == s] for s in ("train", "val", "test") if s in splits}
    per_labels = {s: [y for y, t in zip(labels, splits) if t == s] for s in per_files}
    if len(set(per_labels["train"])) < 2:
        raise DataError(f"{csv_path}: the training rows hold fewer than two classes; a classifier needs two or more")
    lines = {f: line for f, (line, _) in zip(files, rows)}
    return classes, values, per_files, per_labels, lines


def list_csv_images(
    path: Path,
    cache_dir: Path | None = None,
    images: str | None = None,
    path_column: str = "path",
    label_column: str = "label",
    split_column: str | None = None,
    image_size: int | list[int] | None = None,
    channels: Literal["auto", 1, 3] = "auto",
    skip_corrupt: bool = False,
    estimate: bool = False,
) -> FileListing:
    """The listing of the file-backed path (images decoded per batch): files, labels and decoded shape."""
    tree = FileTree(images_root(path, images))
    size = _size(image_size)

    def build() -> FileListing:
        classes, values, files, labels, lines = _scan(path, tree, path_column, label_column, split_column)
        every = [f for s in files for f in files[s]]
        headers = _probe(tree, every[:16] if estimate else every)
        bad = set() if estimate else {f for f, h in zip(every, headers) if h is None}
        if bad and not skip_corrupt:
            raise DataError(_unreadable(path, lines, next(f for f in every if f in bad)))
        c, hw, notes = _decoded_format(tree, every, headers, size, channels)
        if bad:
            notes.append(f"skipped {len(bad)} unreadable image(s) (data.skip_corrupt)")
        found = {}
        for s in files:
            keep = [i for i, f in enumerate(files[s]) if f not in bad]
            found[s] = FileSplit(str(tree.path), [files[s][i] for i in keep],
                                  torch.tensor([labels[s][i] for i in keep], dtype=torch.long),
                                  [files[s][i] for i in keep], (c, *hw))
        return FileListing(classes, values, found, notes)

    if estimate:
        return build()
    key = _cache_key(path, tree, size, channels, skip_corrupt, [path_column, label_column, split_column])
    return cached_listing(cache_dir, key, build)


@FORMATS.register("csv_images", context=("path", "cache_dir"), lister=list_csv_images)
def load_csv_images(
    path: Path,
    cache_dir: Path | None = None,
    images: str | None = None,
    path_column: str = "path",
    label_column: str = "label",
    split_column: str | None = None,
    image_size: int | list[int] | None = None,
    channels: Literal["auto", 1, 3] = "auto",
    skip_corrupt: bool = False,
) -> RawDataset:
    """data.path: a CSV of image paths and labels (columns `path`, `label`, optional split column); paths relative to `images` (a folder or .zip; default: the CSV's folder); decoded once, cached."""
    tree = FileTree(images_root(path, images))
    size = _size(image_size)
    key = _cache_key(path, tree, size, channels, skip_corrupt, [path_column, label_column, split_column])

    def read() -> RawDataset:
        classes, values, files, labels, lines = _scan(path, tree, path_column, label_column, split_column)
        every = [f for s in files for f in files[s]]
        headers = _probe(tree, every)
        broken = [f for f, h in zip(every, headers) if h is None]
        if broken and not skip_corrupt:
            raise DataError(_unreadable(path, lines, broken[0]))
        c, hw, notes = _decoded_format(tree, every, headers, size, channels)
        splits, skipped = {}, 0
        for s in files:
            x, kept, bad = decode_many(tree, files[s], c, hw, skip_corrupt)  # type: ignore[arg-type]
            skipped += len(bad)
            splits[s] = Split(torch.from_numpy(x), torch.tensor([labels[s][i] for i in kept], dtype=torch.long),
                              [files[s][i] for i in kept])
        if skipped:
            notes.append(f"skipped {skipped} unreadable image(s) (data.skip_corrupt)")
        return RawDataset(classes=classes, label_values=values, notes=notes, **splits)

    return cached(cache_dir, key, read)


def _unreadable(csv_path: Path, lines: dict[str, int], file: str) -> str:
    return (f"{csv_path}: line {lines.get(file, '?')}: {file} cannot be decoded as an image; replace it or delete "
            "the row, or set data.skip_corrupt: true")


def _cache_key(path: Path, tree: FileTree, size: tuple[int, int] | None, channels: str | int, skip_corrupt: bool,
               columns: list[str | None]) -> dict:
    """What the cached listing and the cached decoded images depend on: the CSV, the image files, the options."""
    return {"format": "csv_images", "csv": _fingerprint(path), "tree": tree.fingerprint(), "size": size,
            "channels": channels, "skip_corrupt": skip_corrupt, "columns": columns, "version": 1}


def _fingerprint(path: Path) -> list:
    """The CSV as the cache key sees it: a changed CSV is read again."""
    st = path.stat() if path.is_file() else None
    return [str(path.resolve()), st.st_size if st else None, st.st_mtime_ns if st else None]
