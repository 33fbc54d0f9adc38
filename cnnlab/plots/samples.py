"""samples.png: a few training images of each class as the model sees them, written when a run starts.

The images go through the run's own training path: the in-memory loader's batched ops
(BatchLoader.prepare) or the file-backed loader's per-image torchvision twins (ImageFiles),
then its normalisation, and are un-normalised with the stored mean/std for display. Which
images and which augmentation draws are seeded from the run's seed but come from their own
generators (a NumPy generator for the picks, a fresh torch CPU generator for the ops, and
ImageFiles' fork_rng for file-backed data), so drawing the figure leaves every training
random stream as it was: a run with the figure has the metrics of one without.

Label-mixing ops (mixup, cutmix) act on whole batches and mix labels; the figure shows the
per-image ops and says so in its title.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import cnnlab.plots  # noqa: F401  (selects the Agg backend)
from cnnlab.data.augment import LABEL_MIXING, Pipeline, Rng
from cnnlab.data.batches import BatchLoader, LoaderOptions
from cnnlab.data.batches.files import ImageFiles
from cnnlab.data.batches.memory import Normalise
from cnnlab.data.types import DataBundle, FileSplit
from cnnlab.io import save_figure

PER_CLASS = 8  # images per row
MAX_CLASSES = 10  # rows: every class of a 10-class dataset; evenly spaced classes beyond that
SEED_OFFSET = 7919  # the figure's generators never share a seed with the run's own streams


@dataclass
class Samples:
    """Images (rows, cols, H, W, C) in [0, 1] (NaN where a class has fewer images), and what they show."""

    images: np.ndarray
    rows: list[int]  # the class index of each row
    index: list[list[int]]  # the training-split index of each image, row by row
    counts: list[int]  # training images of each row's class
    classes: list[str]  # every class name of the dataset
    ops: list[str]  # names of the augment ops applied
    mixing: str | None  # the label-mixing op left out, if any


def shown_classes(num_classes: int, max_classes: int = MAX_CLASSES) -> list[int]:
    """Every class, or `max_classes` spread evenly over the class indices (first and last included)."""
    if num_classes <= max_classes:
        return list(range(num_classes))
    return sorted({int(round(v)) for v in np.linspace(0, num_classes - 1, max_classes)})


def draw_samples(bundle: DataBundle, pipeline: Pipeline, seed: int, per_class: int = PER_CLASS,
                 max_classes: int = MAX_CLASSES) -> Samples:
    """Up to `per_class` training images of each shown class, augmented, normalised and un-normalised."""
    split = bundle.train
    rows = shown_classes(bundle.num_classes, max_classes)
    labels = split.y.cpu().numpy() if split.y is not None else np.zeros(len(split), dtype=np.int64)
    picks = np.random.default_rng(seed + SEED_OFFSET)
    chosen: list[list[int]] = []
    for k in rows:
        where = np.flatnonzero(labels == k)
        take = picks.choice(where, size=min(per_class, len(where)), replace=False) if len(where) else where
        chosen.append(sorted(take.tolist()))
    flat = [i for row in chosen for i in row]
    c, h, w = pipeline.input_shape
    cols = max(1, max(len(row) for row in chosen))  # no column that every row leaves empty
    out = np.full((len(rows), cols, h, w, c), np.nan, dtype=np.float32)
    if flat:
        x = _model_input(bundle, pipeline, flat, seed + SEED_OFFSET)
        mean = torch.tensor(bundle.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(bundle.std, dtype=torch.float32).view(1, -1, 1, 1)
        pixels = (x * std + mean).clamp(0, 1).permute(0, 2, 3, 1).numpy()  # back to [0, 1], (N, H, W, C)
        n = 0
        for r, row in enumerate(chosen):
            out[r, : len(row)] = pixels[n : n + len(row)]
            n += len(row)
    counts = np.bincount(labels, minlength=bundle.num_classes) if split.y is not None else np.zeros(bundle.num_classes)
    names = [op["name"] for op in pipeline.items]
    mixing = [n for n in names if n in LABEL_MIXING]
    return Samples(out, rows, chosen, [int(counts[k]) for k in rows], list(bundle.classes),
                   [n for n in names if n not in LABEL_MIXING], " / ".join(mixing) or None)


def _model_input(bundle: DataBundle, pipeline: Pipeline, index: list[int], seed: int) -> torch.Tensor:
    """Training images `index` as the model receives them (normalised, on the CPU), drawn from generators of their own."""
    g = torch.Generator().manual_seed(seed)
    cpu = torch.device("cpu")
    split = bundle.train
    if isinstance(split, FileSplit):  # the file-backed loader's per-image path; ImageFiles forks torch's generator
        files = ImageFiles(split.subset(index), pipeline, train=True, scale=bundle.scale)
        seeds = torch.randint(0, 2**62, (len(index),), generator=g).tolist()
        x = torch.stack([files[(i, s)][0] for i, s in enumerate(seeds)])
        return Normalise(bundle.mean, bundle.std, cpu, channels_last=False)(x)
    loader = BatchLoader(split.subset(index), len(index), LoaderOptions(cpu, bundle.scale, bundle.mean, bundle.std),
                         augment=pipeline.image_ops, generator=g)
    host = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=g)))
    x, _ = loader.prepare(loader.x, None, Rng(g, host))
    return x.float()


def plot_samples(s: Samples, path: Path, title: str = "") -> None:
    """Draw the grid (one row per class, labelled) as one mosaic image and save it atomically."""
    import matplotlib.pyplot as plt

    rows, cols, h, w, c = s.images.shape
    gap = max(1, round(max(h, w) / 16))
    mosaic = np.ones((rows * (h + gap) - gap, cols * (w + gap) - gap, 3), dtype=np.float32)
    for r in range(rows):
        for k in range(cols):
            img = s.images[r, k]
            cell = np.full((h, w, 3), 0.93, dtype=np.float32) if np.isnan(img).any() else np.broadcast_to(img, (h, w, 3))
            mosaic[r * (h + gap) : r * (h + gap) + h, k * (w + gap) : k * (w + gap) + w] = cell
    ops = ", ".join(s.ops) if s.ops else "no augmentation"
    lines = [_escape(title)] if title else []
    lines.append(f"training images as the model sees them ({ops}; un-normalised)")
    if s.mixing:
        lines.append(f"{s.mixing} mixes whole batches and is not shown")
    lines.append(f"{len(s.rows)} of {len(s.classes)} classes (evenly spaced by index)" if len(s.rows) < len(s.classes)
                 else f"all {len(s.classes)} classes")
    labels = [_row_label(s.classes[k], n, cols) for k, n in zip(s.rows, s.counts)]
    # Laid out by hand (bbox_inches="tight" would draw the figure twice): inches per cell,
    # room for the longest row label (about 0.07 in per character at 9 pt) and the title lines.
    inch = (0.8 if max(h, w) <= 64 else 1.1) / (max(h, w) + gap)  # inches per mosaic pixel
    grid_w, grid_h = mosaic.shape[1] * inch, mosaic.shape[0] * inch
    label_w = 0.2 + 0.068 * max(len(t) for t in labels)
    top = 0.15 + 0.19 * len(lines)
    width = max(label_w + grid_w + 0.15, 0.07 * max(len(t) for t in lines) + 0.3)
    height = top + grid_h + 0.15
    left = label_w + (width - label_w - grid_w - 0.15) / 2  # centred under a title wider than the grid
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((left / width, 0.15 / height, grid_w / width, grid_h / height))
    ax.imshow(mosaic, interpolation="nearest" if max(h, w) <= 64 else "antialiased", aspect="auto")
    ax.set_xticks([])
    ax.set_yticks([r * (h + gap) + h / 2 for r in range(rows)])
    ax.set_yticklabels(labels, fontsize=9)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    fig.text(0.5, 1 - 0.1 / height, "\n".join(lines), ha="center", va="top", fontsize=9)
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def _row_label(name: str, count: int, cols: int) -> str:
    name = _escape(name if len(name) <= 24 else name[:23] + "…")
    return f"{name} ({count} in train)" if count < cols else name


def _escape(text: str) -> str:
    return text.replace("$", r"\$")  # a class named "$5" must not start matplotlib's mathtext


def write_samples(bundle: DataBundle, pipeline: Pipeline, seed: int, path: Path, title: str = "") -> None:
    """samples.png of a run about to train."""
    plot_samples(draw_samples(bundle, pipeline, seed), path, title)
