"""ImageFolder trees, `root/<class>/*.png|jpg|...`, from a folder or a .zip archive.

When the root holds `train/` plus `val/` (or `dev/`) and/or `test/`, those are the splits;
`data.splits` names split folders called anything else ({train: train_sample, val: dev_sample}).
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Literal

from cnnlab.data.read.cache import cached
from cnnlab.data.read.decode import decode_many, probe_mode
from cnnlab.data.read.listing import FileListing, cached_listing
from cnnlab.data.read.registry import FORMATS
from cnnlab.data.read.tree import FileTree, is_image
from cnnlab.data.types import FileSplit, RawDataset, Split
from cnnlab.errors import DataError
from cnnlab.lazy import lazy

torch = lazy("torch")

SPLIT_NAMES = {"train": ("train",), "val": ("val", "dev", "valid", "validation"), "test": ("test",)}
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def image_files(tree: FileTree, prefix: str) -> list[str]:
    """Image files under `prefix` (a '/'-terminated folder path, or '' for the root)."""
    return [f for f in tree.files if f.startswith(prefix) and is_image(f)]


def find_root(tree: FileTree) -> str:
    """The folder that holds the classes or the splits: descend through lone wrapper folders."""
    prefix = ""
    while True:
        entries = {PurePosixPath(f[len(prefix):]).parts[0] for f in tree.files if f.startswith(prefix)}
        loose = [f for f in tree.files if f.startswith(prefix) and "/" not in f[len(prefix):]]
        if len(entries) == 1 and not loose:
            prefix += entries.pop() + "/"
        else:
            return prefix


def split_folders(tree: FileTree, root: str, named: dict[str, str] | None = None) -> dict[str, str]:
    """Map split name -> folder prefix; {'train': root} when the tree has no split folders.
    `named` (data.splits) names the folders; without it train/ val|dev/ test/ are found, and
    top folders that look like split folders under other names are refused (not read as classes)."""
    tops = sorted({PurePosixPath(f[len(root):]).parts[0] for f in tree.files if f.startswith(root) and "/" in f[len(root):]})
    if named:
        if "train" not in named:
            raise DataError("data.splits: name the train folder too, e.g. data.splits={train: train_sample, ...}")
        found = {}
        for split, folder in named.items():
            prefix = root + folder.strip("/") + "/"
            if not image_files(tree, prefix):
                raise DataError(f"data.splits.{split}: {tree.describe(prefix)} has no images; "
                                f"the folders there are: {', '.join(tops) or 'none'}")
            found[split] = prefix
        return found
    found = {}
    for split, names in SPLIT_NAMES.items():
        for n in names:
            if n in tops:
                found[split] = root + n + "/"
                break
    if "train" in found:
        return found
    _refuse_split_like(tree, root, tops)
    return {"train": root}


def _refuse_split_like(tree: FileTree, root: str, tops: list[str]) -> None:
    """Folders such as train_sample/ dev_sample/ test_sample/ holding class folders are splits:
    read as classes they would make a three-class problem of any dataset."""
    words = {"train": ("train",), "val": ("val", "dev"), "test": ("test",)}

    def holds_classes(top: str) -> bool:
        inner = {PurePosixPath(f[len(root) + len(top) + 1:]).parts[0] for f in image_files(tree, root + top + "/")
                 if "/" in f[len(root) + len(top) + 1:]}
        return len(inner) >= 2

    guess: dict[str, str] = {}
    for top in tops:
        low = top.lower()
        split = next((s for s, ws in words.items() if any(w in low for w in ws)), None)
        if split is not None and split not in guess and holds_classes(top):
            guess[split] = top
    if guess:
        shown = ", ".join(f"{s}: {guess[s]}" for s in ("train", "val", "test") if s in guess)
        raise DataError(f"{tree.describe(root)}: the folders {', '.join(repr(guess[s]) for s in guess)} look like "
                        f"split folders (each holds class folders), not classes; name them: "
                        f"data.splits={{{shown}}}")


def class_files(tree: FileTree, prefix: str) -> dict[str, list[str]]:
    """Class name -> image files, for a `prefix/<class>/...` folder."""
    out: dict[str, list[str]] = {}
    for f in image_files(tree, prefix):
        parts = PurePosixPath(f[len(prefix):]).parts
        if len(parts) < 2:
            continue  # loose images beside the class folders are not labelled
        out.setdefault(parts[0], []).append(f)
    return out


def _size(image_size: int | list[int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, int):
        return image_size, image_size
    if len(image_size) != 2 or min(image_size) <= 0:
        raise DataError(f"data.image_size: expected a size or [height, width], got {image_size}")
    return int(image_size[0]), int(image_size[1])


def _read(tree: FileTree, size: tuple[int, int] | None, channels: str | int, skip_corrupt: bool,
          named: dict[str, str] | None = None) -> RawDataset:
    folders, classes, files, labels = _scan(tree, named)
    every = [f for s in files for f in files[s]]
    channels, size, notes = _decoded_format(tree, every, _probe(tree, every), size, channels)
    splits, skipped = {}, 0
    for s in files:
        x, kept, bad = decode_many(tree, files[s], channels, size, skip_corrupt)  # type: ignore[arg-type]
        skipped += len(bad)
        y = torch.tensor([labels[s][i] for i in kept], dtype=torch.long)
        ids = [files[s][i][len(folders[s]):] for i in kept]
        splits[s] = Split(torch.from_numpy(x), y, ids)
    if skipped:
        notes.append(f"skipped {skipped} corrupt image(s) (data.skip_corrupt)")
    return RawDataset(classes=classes, label_values=list(classes), notes=notes, **splits)


def _scan(tree: FileTree, named: dict[str, str] | None = None
          ) -> tuple[dict[str, str], list[str], dict[str, list[str]], dict[str, list[int]]]:
    """(split folders, classes, files per split, labels per split), from the file names alone."""
    root = find_root(tree)
    folders = split_folders(tree, root, named)
    per_split = {s: class_files(tree, p) for s, p in folders.items()}
    classes = sorted(per_split["train"])
    if len(classes) < 2:
        lone = root.rstrip("/").rsplit("/", 1)[-1] if root and image_files(tree, root) else None  # the folder itself
        found = (f"only one class folder ('{classes[0] if classes else lone}')" if classes or lone
                 else "no class folder with images")
        raise DataError(f"{tree.describe(folders['train'])}: {found}; a classifier needs root/<class>/<image> "
                        "with at least two class folders")
    for split, groups in per_split.items():
        unknown = sorted(set(groups) - set(classes))
        if unknown:
            raise DataError(f"{tree.describe(folders[split])}: class folder '{unknown[0]}' has no counterpart in train/")

    files = {s: [f for c in classes for f in groups.get(c, [])] for s, groups in per_split.items()}
    labels = {s: [i for i, c in enumerate(classes) for _ in groups.get(c, [])] for s, groups in per_split.items()}
    return folders, classes, files, labels


def _decoded_format(
    tree: FileTree, every: list[str], headers: list, size: tuple[int, int] | None, channels: str | int
) -> tuple[int, tuple[int, int], list[str]]:
    """(channels, (H, W), notes): what every image is decoded to, from the headers of `every` file."""
    notes: list[str] = []
    if channels == "auto":
        modes = Counter(h[0] for h in headers if h is not None)
        channels = 1 if all(m in _GRAY_MODES for m in modes) else 3
        if len(modes) > 1:
            notes.append(f"image modes {dict(modes)} converted to {'grayscale' if channels == 1 else 'RGB'}")
    if size is None:
        sizes = Counter(h[1] for h in headers if h is not None)
        if len(sizes) > 1:
            (a, _), (b, _) = sizes.most_common(2)
            fa = every[next(i for i, h in enumerate(headers) if h and h[1] == a)]
            fb = every[next(i for i, h in enumerate(headers) if h and h[1] == b)]
            raise DataError(
                f"{tree.path}: images have different sizes ({a[0]}x{a[1]} in {fa}, {b[0]}x{b[1]} in {fb}); "
                "set data.image_size to resize them all"
            )
        if not sizes:
            raise DataError(f"{tree.describe(every[0])}: cannot decode any image")
        size = next(iter(sizes))
    elif any(h is not None and h[1] != size for h in headers):
        notes.append(f"images resized to {size[0]}x{size[1]}")
    return int(channels), size, notes


def list_image_folder(
    path: Path,
    cache_dir: Path | None = None,
    image_size: int | list[int] | None = None,
    channels: Literal["auto", 1, 3] = "auto",
    skip_corrupt: bool = False,
    splits: dict[Literal["train", "val", "test"], str] | None = None,
    estimate: bool = False,
) -> FileListing:
    """Files, labels and decoded shape of every split, in the order the reader decodes them, without decoding.

    estimate=True reads a few headers (enough to size the decoded data); otherwise every
    header is read (once: the listing is cached) and unreadable files are skipped or named.
    """
    tree = FileTree(path)
    size = _size(image_size)

    def build() -> FileListing:
        folders, classes, files, labels = _scan(tree, splits)
        every = [f for s in files for f in files[s]]
        headers = _probe(tree, every[:16] if estimate else every)
        c, hw, notes = _decoded_format(tree, every, headers, size, channels)
        bad = set() if estimate else {f for f, h in zip(every, headers) if h is None}
        if bad and not skip_corrupt:
            first = next(f for f in every if f in bad)
            raise DataError(f"{tree.describe(first)}: cannot decode image; replace or delete it, or set data.skip_corrupt: true")
        if bad:
            notes.append(f"skipped {len(bad)} unreadable image(s) (data.skip_corrupt)")
        found = {}
        for s in files:
            keep = [i for i, f in enumerate(files[s]) if f not in bad]
            found[s] = FileSplit(str(path), [files[s][i] for i in keep],
                                  torch.tensor([labels[s][i] for i in keep], dtype=torch.long),
                                  [files[s][i][len(folders[s]):] for i in keep], (c, *hw))
        return FileListing(classes, list(classes), found, notes)

    if estimate:
        return build()
    key = {"format": "image_folder", "tree": tree.fingerprint(), "size": size, "channels": channels,
           "skip_corrupt": skip_corrupt, "version": 1, **({"splits": splits} if splits else {})}
    return cached_listing(cache_dir, key, build)


@FORMATS.register("image_folder", context=("path", "cache_dir"), lister=list_image_folder)
def load_image_folder(
    path: Path,
    cache_dir: Path | None = None,
    image_size: int | list[int] | None = None,
    channels: Literal["auto", 1, 3] = "auto",
    skip_corrupt: bool = False,
    splits: dict[Literal["train", "val", "test"], str] | None = None,
) -> RawDataset:
    """data.path: `root/<class>/*.png|jpg...` or a .zip of it, optionally with `train/ val/ (or dev/) test/` split folders (others named by `splits`); decoded once, cached."""
    tree = FileTree(path)
    size = _size(image_size)
    key = {"format": "image_folder", "tree": tree.fingerprint(), "size": size, "channels": channels,
           "skip_corrupt": skip_corrupt, "version": 2, **({"splits": splits} if splits else {})}
    return cached(cache_dir, key, lambda: _read(tree, size, channels, skip_corrupt, splits))


def _probe(tree: FileTree, files: list[str]) -> list:
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda f: probe_mode(tree, f), files, chunksize=256))
