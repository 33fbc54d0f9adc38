"""Confusion-matrix figure, row-normalised, readable from 2 to hundreds of classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import cnnlab.plots  # noqa: F401  (selects the Agg backend)
from cnnlab.io import save_figure


def plot_confusion(confusion: np.ndarray, classes: list[str], path: Path, title: str) -> None:
    """Rows are true classes, columns predictions; cells show the fraction of each true class."""
    import matplotlib.pyplot as plt

    k = len(classes)
    totals = confusion.sum(1, keepdims=True)
    frac = np.divide(confusion, totals, out=np.zeros(confusion.shape, dtype=float), where=totals > 0)
    size = min(16.0, max(5.0, 0.45 * k + 2))
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    if k <= 40:
        ax.set_xticks(range(k))
        ax.set_yticks(range(k))
        ax.set_xticklabels(classes, rotation=90 if max(len(c) for c in classes) > 3 else 0, fontsize=8)
        ax.set_yticklabels(classes, fontsize=8)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if confusion[i, j]:
                    ax.text(j, i, str(int(confusion[i, j])), ha="center", va="center", fontsize=7,
                            color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
