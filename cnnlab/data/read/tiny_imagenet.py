"""Tiny ImageNet (tiny-imagenet-200): a folder or the .zip as distributed.

    wnids.txt                       the 200 class ids (WordNet ids, e.g. n01443537)
    words.txt                       wnid <TAB> "goldfish, Carassius auratus" (all of WordNet)
    train/<wnid>/images/*.JPEG      (train/<wnid>/<wnid>_boxes.txt is ignored)
    val/images/*.JPEG               labelled by val/val_annotations.txt: file <TAB> wnid <TAB> box
    test/images/*.JPEG              unlabelled: for `cnnlab predict`
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path, PurePosixPath

from cnnlab.data.read.cache import cached
from cnnlab.data.read.decode import decode_many
from cnnlab.data.read.registry import FORMATS
from cnnlab.data.read.tree import FileTree, is_image
from cnnlab.data.types import RawDataset, Split
from cnnlab.errors import DataError
from cnnlab.lazy import lazy

torch = lazy("torch")


@FORMATS.register("tiny_imagenet", context=("path", "cache_dir"))
def load_tiny_imagenet(
    path: Path,
    cache_dir: Path | None = None,
    image_size: int = 64,
    skip_corrupt: bool = False,
) -> RawDataset:
    """data.path: `tiny-imagenet-200/` or its .zip: train and val images as uint8 RGB at `image_size`, classes named from words.txt; `cnnlab predict` on test/images."""
    if image_size <= 0:
        raise DataError(f"data.image_size: must be positive, got {image_size}")
    tree = FileTree(path)
    root = find_root(tree)
    key = {"format": "tiny_imagenet", "tree": tree.fingerprint(), "root": root, "size": image_size,
           "skip_corrupt": skip_corrupt, "version": 1}
    return cached(cache_dir, key, lambda: _read(tree, root, image_size, skip_corrupt))


def find_root(tree: FileTree) -> str:
    """The folder prefix ('' or 'tiny-imagenet-200/') that holds wnids.txt."""
    hits = sorted((f for f in tree.files if PurePosixPath(f).name == "wnids.txt"), key=lambda f: f.count("/"))
    if not hits:
        raise DataError(f"{tree.path}: no wnids.txt found; expected the Tiny ImageNet layout "
                        "(wnids.txt, words.txt, train/<wnid>/images/, val/)")
    return hits[0][: -len("wnids.txt")]


def _read(tree: FileTree, root: str, size: int, skip_corrupt: bool) -> RawDataset:
    wnids = read_wnids(tree, root + "wnids.txt")
    index = {w: i for i, w in enumerate(wnids)}
    classes, notes = display_names(tree, root + "words.txt", wnids)

    files: dict[str, list[str]] = {}
    labels: dict[str, list[int]] = {}
    files["train"], labels["train"] = _class_folders(tree, root + "train/", index)
    if not files["train"]:
        raise DataError(f"{tree.describe(root + 'train/')}: no training images; expected train/<wnid>/images/*.JPEG")
    if any(f.startswith(root + "val/") for f in tree.files):
        if root + "val/val_annotations.txt" in tree.files:
            files["val"], labels["val"] = _annotated(tree, root + "val/", index)
        elif any(f.startswith(root + "val/images/") for f in tree.files):  # the official layout, its labels lost
            raise DataError(f"{tree.describe(root + 'val/val_annotations.txt')}: missing; it labels val/images/ "
                            "(lines of file <TAB> wnid); restore it from the dataset archive")
        else:  # val/ re-sorted into val/<wnid>/images/ by a common preparation script
            files["val"], labels["val"] = _class_folders(tree, root + "val/", index)
    test = [f for f in tree.files if f.startswith(root + "test/") and is_image(f)]
    if test:
        where = tree.describe(root + "test/images")
        how = (f"`cnnlab predict RUN {where}`" if tree.path.is_dir()
               else f"`cnnlab predict RUN <folder>` after extracting test/images from {tree.path}")
        notes.append(f"test/ holds {len(test)} unlabelled images (no test split): predict on them with {how}")

    splits, skipped = {}, 0
    for name in files:
        x, kept, bad = decode_many(tree, files[name], 3, (size, size), skip_corrupt)
        skipped += len(bad)
        ids = [PurePosixPath(files[name][i]).name for i in kept]
        splits[name] = Split(torch.from_numpy(x), torch.tensor([labels[name][i] for i in kept], dtype=torch.long), ids)
    if skipped:
        notes.append(f"skipped {skipped} corrupt image(s) (data.skip_corrupt)")
    notes.append("class order: wnids sorted; predictions are written as wnids (label_values), names from words.txt")
    return RawDataset(classes=classes, label_values=list(wnids), notes=notes, **splits)


def _lines(tree: FileTree, rel: str) -> list[str]:
    try:
        return tree.read(rel).decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise DataError(f"{tree.describe(rel)}: not a UTF-8 text file") from None


def read_wnids(tree: FileTree, rel: str) -> list[str]:
    """The class ids, sorted (the order ImageFolder and most Tiny ImageNet code use)."""
    wnids = [line.strip() for line in _lines(tree, rel) if line.strip()]
    if len(wnids) < 2:
        raise DataError(f"{tree.describe(rel)}: lists {len(wnids)} class id(s); expected one wnid per line")
    dup = [w for w, k in Counter(wnids).items() if k > 1]
    if dup:
        raise DataError(f"{tree.describe(rel)}: wnid {dup[0]} is listed twice")
    return sorted(wnids)


def display_names(tree: FileTree, rel: str, wnids: list[str]) -> tuple[list[str], list[str]]:
    """The first synonym in words.txt for each wnid ('goldfish'); the wnid itself when absent."""
    if rel not in tree.files:
        return list(wnids), ["words.txt not found: classes are named by their wnid"]
    wanted, words = set(wnids), {}
    for line in _lines(tree, rel):
        wnid, _, text = line.partition("\t")
        if wnid in wanted and text.strip():
            words[wnid] = text.split(",")[0].strip()
    names = [words.get(w, w) for w in wnids]
    notes = []
    missing = [w for w in wnids if w not in words]
    if missing:
        notes.append(f"words.txt has no name for {len(missing)} wnid(s) (e.g. {missing[0]}): named by wnid")
    # Two wnids can share a first synonym; class names must stay unique.
    shared = {n for n, k in Counter(names).items() if k > 1}
    return [f"{n} ({w})" if n in shared else n for n, w in zip(names, wnids)], notes


def _class_folders(tree: FileTree, prefix: str, index: dict[str, int]) -> tuple[list[str], list[int]]:
    """Images under prefix/<wnid>/[images/], labelled by the wnid folder."""
    files, labels = [], []
    for f in tree.files:
        if not f.startswith(prefix) or not is_image(f):
            continue
        parts = PurePosixPath(f[len(prefix):]).parts
        if len(parts) < 2:
            raise DataError(f"{tree.describe(f)}: image outside a <wnid> folder; expected {prefix}<wnid>/images/")
        if parts[0] not in index:
            raise DataError(f"{tree.describe(prefix + parts[0])}: folder '{parts[0]}' is not a wnid listed in wnids.txt")
        files.append(f)
        labels.append(index[parts[0]])
    return files, labels


def _annotated(tree: FileTree, prefix: str, index: dict[str, int]) -> tuple[list[str], list[int]]:
    """val/images/* labelled by val/val_annotations.txt; every listed file must exist and vice versa."""
    rel = prefix + "val_annotations.txt"
    present = {f for f in tree.files if f.startswith(prefix + "images/") and is_image(f)}
    files, labels, listed = [], [], set()
    for n, line in enumerate(_lines(tree, rel), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise DataError(f"{tree.describe(rel)}: line {n}: expected 'file<TAB>wnid<TAB>box', got {line!r}")
        name, wnid = fields[0].strip(), fields[1].strip()
        if wnid not in index:
            raise DataError(f"{tree.describe(rel)}: line {n}: wnid '{wnid}' is not listed in wnids.txt")
        image = prefix + "images/" + name
        if image in listed:
            raise DataError(f"{tree.describe(rel)}: line {n}: {name} is listed a second time")
        if image not in present:
            raise DataError(f"{tree.describe(rel)}: line {n}: {prefix}images/{name} does not exist")
        present.discard(image)
        listed.add(image)
        files.append(image)
        labels.append(index[wnid])
    if present:
        stray = sorted(present)[0]
        raise DataError(f"{tree.describe(stray)}: has no line in {prefix}val_annotations.txt "
                        f"({len(present)} unlabelled validation image(s)); annotate or remove them")
    return files, labels
