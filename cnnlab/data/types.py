"""The data containers passed from format readers to the trainer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cnnlab.lazy import lazy

torch = lazy("torch")



@dataclass
class Split:
    """Images (N, C, H, W) as uint8 (or float32 for float sources) with int64 labels."""

    x: torch.Tensor
    y: torch.Tensor | None
    ids: list[str] | None = None  # file names or row numbers, for reports and predictions

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image."""
        c, h, w = self.x.shape[1:]
        return int(c), int(h), int(w)

    @property
    def dtype(self) -> torch.dtype:
        return self.x.dtype

    def subset(self, index: torch.Tensor | list[int]) -> Split:
        """The samples at `index`, in that order."""
        index = torch.as_tensor(index, dtype=torch.long)
        ids = [self.ids[i] for i in index.tolist()] if self.ids is not None else None
        return Split(self.x[index], None if self.y is None else self.y[index], ids)


@dataclass
class FileSplit:
    """Images left in their files (the file-backed path), decoded one by one while training."""

    source: str  # the folder or .zip archive the files are in
    files: list[str]  # member paths inside `source`
    y: torch.Tensor | None
    ids: list[str] | None
    shape: tuple[int, int, int]  # (C, H, W) each image is decoded to (mode and size)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def dtype(self) -> torch.dtype:
        return torch.uint8

    def subset(self, index: torch.Tensor | list[int]) -> FileSplit:
        """The samples at `index`, in that order."""
        index = torch.as_tensor(index, dtype=torch.long).tolist()
        ids = [self.ids[i] for i in index] if self.ids is not None else None
        y = None if self.y is None else self.y[torch.as_tensor(index, dtype=torch.long)]
        return FileSplit(self.source, [self.files[i] for i in index], y, ids, self.shape)


AnySplit = Split | FileSplit


@dataclass
class RawDataset:
    """What a format reader returns: splits as found on disk, and how labels are named."""

    train: Split
    classes: list[str]  # display name of class i
    label_values: list[Any]  # what a prediction of class i is written as (int or str)
    val: Split | None = None
    test: Split | None = None
    notes: list[str] = field(default_factory=list)  # things worth telling the user


@dataclass
class DataBundle:
    """Splits ready for training, plus everything predict needs to treat new data the same way."""

    train: AnySplit
    val: AnySplit | None
    test: AnySplit | None
    classes: list[str]
    label_values: list[Any]
    mean: list[float]  # per channel, in the scaled [0, 1] space
    std: list[float]
    scale: float  # multiply raw values by this to reach [0, 1] (1/255 for uint8)
    format: str
    path: str
    val_source: str  # "folder", "split" (stratified from train), "fold" (K-fold CV) or "none"
    notes: list[str] = field(default_factory=list)
    # Where each val image sits in the training split as read before the validation split was
    # carved from it (a fold's or val_fraction's; None for a dataset's own val split): held-out
    # probabilities map back to training images through it (heldout.npz, data audit --labels).
    val_index: Any = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the stored images; the model's input is this after augment's resize/center_crop."""
        return self.train.shape

    @property
    def in_memory(self) -> bool:
        """True when the images are decoded tensors, False when they are read from their files per batch."""
        return isinstance(self.train, Split)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def splits(self) -> dict[str, AnySplit]:
        """Every split that exists, by name."""
        out: dict[str, AnySplit] = {"train": self.train}
        if self.val is not None:
            out["val"] = self.val
        if self.test is not None:
            out["test"] = self.test
        return out

    def info(self) -> dict[str, Any]:
        """Plain-data description stored in the run directory (data.json)."""
        return {
            "format": self.format,
            "path": self.path,
            "image_shape": list(self.image_shape),
            "input_shape": list(self.image_shape),  # the runner replaces it by the shape after augment's always-ops
            "dtype": str(self.train.dtype).replace("torch.", ""),
            "in_memory": self.in_memory,
            "classes": self.classes,
            "label_values": self.label_values,
            "mean": self.mean,
            "std": self.std,
            "scale": self.scale,
            "sizes": {k: len(v) for k, v in self.splits().items()},
            "val_source": self.val_source,
            "notes": self.notes,
        }
