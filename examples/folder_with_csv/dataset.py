"""A dataset of one's own: a folder of images and a CSV that labels them.

    my_images/
      labels.csv          # filename,label        (the label: a class name or a number)
      0001.png
      0002.jpg
      ...

cnnlab calls `images_with_labels` with the `data:` section's options (checked against the type
hints below) and `path` (data.path); it returns a torch Dataset of (image, label) pairs, which
cnnlab reads into memory once. A `split` parameter would make cnnlab call it once per split
("train", "val", "test"); without one, the rows whose `split` column says so (when the CSV has
that column) become the test split here, and the validation split comes from data.val_fraction.
"""

from __future__ import annotations

import csv
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset


class LabelledImages(Dataset):
    """(PIL image, label) pairs from files and their labels; `classes` names the labels."""

    def __init__(self, files: list[Path], labels: list[str], size: int):
        self.files, self.labels, self.size = files, labels, size
        self.classes = sorted(set(labels))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        image = Image.open(self.files[i]).convert("RGB").resize((self.size, self.size))
        return image, self.labels[i]


def images_with_labels(path: str, csv_file: str = "labels.csv", image_column: str = "filename",
                       label_column: str = "label", size: int = 32) -> dict[str, Dataset]:
    """Images listed in a CSV (file name, label), resized to size x size; a `split` column (train/test) is honoured."""
    folder = Path(path)
    rows = list(csv.DictReader((folder / csv_file).open(newline="", encoding="utf-8")))
    if not rows:
        raise ValueError(f"{folder / csv_file} lists no images")
    splits: dict[str, tuple[list[Path], list[str]]] = {}
    for row in rows:
        split = row.get("split") or "train"
        files, labels = splits.setdefault(split, ([], []))
        files.append(folder / row[image_column])
        labels.append(row[label_column])
    return {name: LabelledImages(files, labels, size) for name, (files, labels) in splits.items()}
