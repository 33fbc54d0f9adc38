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
    """Draw and atomically save the two-panel training figure (inside drawn_at_end(): when it ends)."""
    if _held is not None:
        _held[Path(path)] = (list(history), list(step_losses), steps_per_epoch, title)
        return
    import matplotlib.pyplot as plt

    fig = curves_figure(history, step_losses, steps_per_epoch, title)
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def curves_figure(history: list[dict[str, Any]], step_losses: list[float], steps_per_epoch: int,
                  title: str = "") -> Any:
    """The training figure as a matplotlib Figure (curves.png's, or a notebook's cnnlab.Run.plot())."""
    import matplotlib.pyplot as plt

    top5 = any(m.get(f"{split}_top5") is not None for m in history for split in ("val", "test"))
    fig, axes = plt.subplots(1, 3 if top5 else 2, figsize=(16 if top5 else 11, 4))
    ax_loss, ax_acc = axes[0], axes[1]
    if step_losses:
        losses = np.asarray(step_losses, dtype=float)
        x = np.arange(1, len(losses) + 1) / max(steps_per_epoch, 1)
        ax_loss.plot(x, losses, color="tab:blue", alpha=0.25, linewidth=0.8, label="per step")
        weight = min(0.98, max(0.6, 1 - 10 / max(len(losses), 1)))
        ax_loss.plot(x, smooth(losses, weight), color="tab:blue", linewidth=1.8, label="smoothed")
        for split, color in (("val", "tab:orange"), ("test", "tab:green")):
            pts = [(m["epoch"], m[f"{split}_loss"]) for m in history if f"{split}_loss" in m]
            if pts:
                ax_loss.plot(*zip(*pts), "o-", color=color, linewidth=1.2, markersize=3, label=f"{split} (epoch)")
        low, high = np.percentile(losses, 1), np.percentile(losses, 99)
        if high > low:
            ax_loss.set_ylim(max(0.0, low - 0.05 * (high - low)), high + 0.1 * (high - low))
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("training loss")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend(fontsize=8)

    _per_epoch(ax_acc, history, "acc", ("train", "val", "test"), "accuracy")
    if _imbalanced(history):  # on balanced data the two lines would lie on each other
        _per_epoch(ax_acc, history, "balanced_acc", ("train", "val", "test"), "accuracy", dashed=True)
    if top5:  # logged for 5 classes or more: the workloads with many classes report it
        _per_epoch(axes[2], history, "top5", ("val", "test"), "top-5 accuracy")
    if title:
        fig.suptitle(title)
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
    ax.set_title(f"{what} per epoch")
    ax.grid(alpha=0.3)
    if history:
        ax.legend(fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
