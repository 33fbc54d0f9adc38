"""The figures a report draws itself (the run's own curves.png, the study's figures and the
analyses' are inlined as they are): the learning rate per epoch, several runs' curves overlaid
(compare), and one small panel per study variant."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.reports.images import figure_png

SPLIT_COLORS = {"train": "tab:blue", "val": "tab:orange", "test": "tab:green"}


def lr_curve(history: list[dict[str, Any]]) -> bytes | None:
    """lr per epoch (log scale when it spans a factor of 20 or more)."""
    import matplotlib.pyplot as plt

    pts = [(h["epoch"], h["lr"]) for h in history if isinstance(h.get("lr"), (int, float))]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(6, 2.8))
    x, y = zip(*pts)
    ax.plot(x, y, "o-", color="tab:purple", markersize=3)
    if min(y) > 0 and max(y) / min(y) >= 20:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.set_title("learning rate at the start of each epoch", fontsize=10)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return figure_png(fig)


def run_curves(history: list[dict[str, Any]], steps: list[float], steps_per_epoch: int, title: str) -> bytes | None:
    """curves.png as training draws it, for a run whose file is missing (drawn into memory)."""
    import tempfile

    from cnnlab.plots.curves import plot_curves

    if not history:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "figure.png"
        plot_curves(history, steps, steps_per_epoch, path, title=title)
        return path.read_bytes()


def overlaid(histories: dict[str, list[dict[str, Any]]]) -> bytes | None:
    """compare: one line per run in each panel: training loss, val accuracy, test accuracy, lr."""
    import matplotlib.pyplot as plt

    panels = [(key, label) for key, label in (("train_loss", "training loss (epoch mean)"), ("val_acc", "val accuracy (%)"),
                                              ("test_acc", "test accuracy (%)"), ("val_loss", "val loss"), ("lr", "learning rate"))
              if any(key in h for hist in histories.values() for h in hist)]
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows + 0.6), squeeze=False, layout="constrained")
    colors = plt.get_cmap("tab10").colors
    for ax, (key, label) in zip(axes.flat, panels):
        k = 100.0 if key.endswith("_acc") else 1.0
        for i, (name, hist) in enumerate(histories.items()):
            pts = [(h["epoch"], h[key] * k) for h in hist if isinstance(h.get(key), (int, float))]
            if pts:
                ax.plot(*zip(*pts), "o-", markersize=3, color=colors[i % len(colors)], label=name)
        if key == "lr" and ax.lines:
            values = [v for line in ax.lines for v in line.get_ydata()]
            if min(values) > 0 and max(values) / min(values) >= 20:
                ax.set_yscale("log")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_axis_off()
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(3, len(labels)), fontsize=8, frameon=False)
    return figure_png(fig)


def variant_panels(series: dict[str, list[list[tuple[int, float]]]], ylabel: str, per_row: int = 4) -> bytes | None:
    """Study: one small panel per variant (same axes for all), a thin line per run and the mean
    over runs in bold; `series` maps a variant to its runs' (epoch, value) points."""
    import matplotlib.pyplot as plt

    shown = {label: runs for label, runs in series.items() if any(runs)}
    if not shown:
        return None
    cols = min(per_row, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.5 * rows + 0.4), squeeze=False, sharex=True,
                             sharey=True, layout="constrained")
    for ax, (label, runs) in zip(axes.flat, shown.items()):
        per_epoch: dict[int, list[float]] = {}
        for pts in runs:
            if pts:
                ax.plot(*zip(*pts), color="tab:blue", alpha=0.35, linewidth=0.9)
            for e, v in pts:
                per_epoch.setdefault(e, []).append(v)
        epochs = sorted(per_epoch)
        ax.plot(epochs, [np.mean(per_epoch[e]) for e in epochs], "o-", color="tab:blue", linewidth=2, markersize=3)
        ax.set_title(_two_lines(label), fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7.5)
        ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in list(axes.flat)[len(shown):]:
        ax.set_axis_off()
    fig.supxlabel("epoch", fontsize=9)
    fig.supylabel(ylabel, fontsize=9)
    return figure_png(fig)


def _two_lines(label: str, width: int = 42) -> str:
    """A panel title: a grid cell's label ("optim.lr=0.1, model.dropout=0.2, ...") wrapped, not cut at 36 characters."""
    lines = textwrap.wrap(label, width) or [""]
    if len(lines) > 2:
        lines = [lines[0], lines[1][: width - 1] + "…"]
    return "\n".join(lines)
