"""curves.png: training loss per step (raw and smoothed), accuracy per epoch for each split
(with balanced accuracy dashed where it differs from accuracy: imbalanced classes), and top-5
accuracy when it is logged."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

import cnnlab.plots  # noqa: F401  (selects the Agg backend)
from cnnlab.io import save_figure


def envelope(x: np.ndarray, y: np.ndarray, buckets: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """The line through each bucket's lowest and highest point, in step order: at most 2 x `buckets`
    points that draw as the full series does (a panel is about 550 pixels wide). Ten thousand steps
    drawn one by one were the costliest part of curves.png, which a study draws for every run."""
    n = len(y)
    if n <= 2 * buckets:
        return x, y
    k = -(-n // buckets)
    pad = (-n) % k  # the last bucket filled with its own last value
    rows = np.concatenate([y, np.full(pad, y[-1])]).reshape(-1, k)
    start = np.arange(rows.shape[0]) * k
    lo, hi = start + rows.argmin(axis=1), start + rows.argmax(axis=1)
    idx = np.minimum(np.stack([np.minimum(lo, hi), np.maximum(lo, hi)], axis=1).ravel(), n - 1)
    return x[idx], y[idx]


def smooth(values: np.ndarray, weight: float = 0.9) -> np.ndarray:
    """Exponential moving average with bias correction (as TensorBoard's smoothing)."""
    out = np.empty_like(values, dtype=float)
    avg, norm = 0.0, 0.0
    for i, v in enumerate(values):
        avg = weight * avg + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out[i] = avg / norm
    return out


# Inside drawn_at_end(): the latest figure asked for, per file, drawn when the block ends.
_held: dict[Path, tuple[list[dict[str, Any]], list[float], int, str]] | None = None


@contextlib.contextmanager
def drawn_at_end() -> Iterator[None]:
    """Inside the block plot_curves only remembers the latest figure asked for per file; each is
    drawn once when the block ends, however it ends. A study's runs train inside it: nobody watches
    one of them mid-run, and redrawing curves.png after every epoch cost the small runs of a grid
    more than their training did (bench/RESULTS.md, "Study overhead")."""
    global _held
    if _held is not None:  # nested: the outer block draws
        yield
        return
    _held = {}
    try:
        yield
    except BaseException:
        _draw_held(quiet=True)  # the block's own error is the one to report
        raise
    _draw_held(quiet=False)


def _draw_held(quiet: bool) -> None:
    global _held
    held, _held = _held or {}, None
    for path, args in held.items():
        try:
            plot_curves(*args[:3], path, title=args[3])
        except Exception:
            if not quiet:
                raise


def plot_curves(history: list[dict[str, Any]], step_losses: list[float], steps_per_epoch: int,
                path: Path, title: str = "") -> None:
    """Draw and atomically save the training figure (inside drawn_at_end(): when it ends), in this
    process's kept figure of its layout: a study worker draws one for each of its many runs, and
    building the axes and their ticks anew was a third of the figure's cost."""
    if _held is not None:
        _held[Path(path)] = (list(history), list(step_losses), steps_per_epoch, title)
        return
    fig = curves_figure(history, step_losses, steps_per_epoch, title, into=_kept_figure(_has_top5(history)))
    save_figure(fig, path, dpi=110)


_kept: dict[bool, Any] = {}  # the figure of each layout (with a top-5 panel or not), drawn into again


def _kept_figure(top5: bool) -> Any:
    """This process's figure for curves.png of this layout, emptied of the last run's lines and legends."""
    if top5 not in _kept:
        from matplotlib.figure import (
            Figure,  # outside pyplot: plt.close("all") elsewhere leaves it alone
        )

        fig = Figure(figsize=(16 if top5 else 11, 4))
        fig.subplots(1, 3 if top5 else 2)
        _kept[top5] = fig
    fig = _kept[top5]
    for ax in fig.axes:
        for line in list(ax.lines):
            line.remove()
        if ax.get_legend() is not None:
            ax.get_legend().remove()
        ax.relim()  # no data left: the next lines alone set the limits
        ax.set_xlim(0, 1)  # a new axes' range, kept by a panel left empty
        ax.set_ylim(0, 1)
        ax.set_autoscale_on(True)  # set_*lim turned it off, as the last run's loss range did
    return fig


def _has_top5(history: list[dict[str, Any]]) -> bool:
    return any(m.get(f"{split}_top5") is not None for m in history for split in ("val", "test"))


def curves_figure(history: list[dict[str, Any]], step_losses: list[float], steps_per_epoch: int,
                  title: str = "", into: Any = None) -> Any:
    """The training figure as a matplotlib Figure (curves.png's, or a notebook's cnnlab.Run.plot());
    `into`: an emptied figure of the same layout to draw in (plot_curves' kept one)."""
    top5 = _has_top5(history)
    if into is None:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 3 if top5 else 2, figsize=(16 if top5 else 11, 4))
    else:
        fig, axes = into, into.axes
    for ax in axes:
        # No panel titles (the y labels say what each shows) and at most 6 y ticks: matplotlib lays out and
        # renders text glyph by glyph, and text was two thirds of curves.png's cost, drawn for every study run.
        ax.yaxis.get_major_locator().set_params(nbins=5)
        ax.xaxis.get_major_locator().set_params(nbins=5)
    ax_loss, ax_acc = axes[0], axes[1]
    if step_losses:
        losses = np.asarray(step_losses, dtype=float)
        x = np.arange(1, len(losses) + 1) / max(steps_per_epoch, 1)
        ax_loss.plot(*envelope(x, losses), color="tab:blue", alpha=0.25, linewidth=0.8, label="per step")
        weight = min(0.98, max(0.6, 1 - 10 / max(len(losses), 1)))
        every = -(-len(losses) // 2000)  # a smooth line loses nothing drawn through every k-th point
        keep = np.unique(np.r_[np.arange(0, len(losses), every), len(losses) - 1])
        ax_loss.plot(x[keep], smooth(losses, weight)[keep], color="tab:blue", linewidth=1.8, label="smoothed")
        for split, color in (("val", "tab:orange"), ("test", "tab:green")):
            pts = [(m["epoch"], m[f"{split}_loss"]) for m in history if f"{split}_loss" in m]
            if pts:
                ax_loss.plot(*zip(*pts), "o-", color=color, linewidth=1.2, markersize=3, label=f"{split} (epoch)")
        low, high = np.percentile(losses, 1), np.percentile(losses, 99)
        if high > low:
            ax_loss.set_ylim(max(0.0, low - 0.05 * (high - low)), high + 0.1 * (high - low))
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.grid(alpha=0.3)
    if ax_loss.lines:
        ax_loss.legend(fontsize=8)

    _per_epoch(ax_acc, history, "acc", ("train", "val", "test"), "accuracy")
    if _imbalanced(history):  # on balanced data the two lines would lie on each other
        _per_epoch(ax_acc, history, "balanced_acc", ("train", "val", "test"), "accuracy", dashed=True)
    if top5:  # logged for 5 classes or more: the workloads with many classes report it
        _per_epoch(axes[2], history, "top5", ("val", "test"), "top-5 accuracy")
    fig.suptitle(title)  # "" on a kept figure: no title left from the last run
    # Fixed margins rather than tight_layout, which measured every tick label again and was a third
    # of the figure's cost: curves.png is drawn for every run of a study (bench/RESULTS.md, "Study overhead").
    fig.subplots_adjust(left=0.06 if top5 else 0.07, right=0.99, bottom=0.13, top=0.85 if title else 0.9,
                        wspace=0.2)
    return fig


COLORS = {"train": "tab:blue", "val": "tab:orange", "test": "tab:green"}


def _imbalanced(history: list[dict[str, Any]]) -> bool:
    """Whether balanced accuracy differs from accuracy by more than 2 points anywhere."""
    return any(abs(m[f"{s}_balanced_acc"] - m[f"{s}_acc"]) > 0.02 for m in history for s in ("train", "val", "test")
               if m.get(f"{s}_balanced_acc") is not None and m.get(f"{s}_acc") is not None)


def _per_epoch(ax, history: list[dict[str, Any]], kind: str, splits: tuple[str, ...], what: str,
               dashed: bool = False) -> None:
    """One panel of a per-epoch metric (in %) for each split that logged it (dashed: a second metric)."""
    for split in splits:
        pts = [(m["epoch"], 100 * m[f"{split}_{kind}"]) for m in history if m.get(f"{split}_{kind}") is not None]
        if pts:
            ax.plot(*zip(*pts), "s--" if dashed else "o-", color=COLORS[split], markersize=3,
                    label=f"{split} (balanced)" if dashed else split, alpha=0.8 if dashed else 1.0)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{what} (%)")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
