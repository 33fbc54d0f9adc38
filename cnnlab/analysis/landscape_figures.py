"""The landscape analysis's figures: lines.png (the 1-D slices with +/- 1 SE bands), contour.png
and surface.png (the 2-D loss and accuracy around the trained weights). landscape.py computes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cnnlab.lazy import lazy

if TYPE_CHECKING:
    from cnnlab.analysis.outputs import Outputs

plt = lazy("matplotlib.pyplot")


def _band(ax: Any, x: np.ndarray, m: np.ndarray, se: np.ndarray, color: str, label: str) -> None:
    ax.plot(x, m, "o-", color=color, markersize=2.5, linewidth=1.4, label=label)
    ax.fill_between(x, m - se, m + se, color=color, alpha=0.25, linewidth=0, label="+/- 1 standard error")


def plot_curves(out: Outputs, title: str, alphas_line: np.ndarray | None, line: np.ndarray | None,
                 alphas: np.ndarray, curve: np.ndarray, group: int, batches: int) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), squeeze=False)
    rows = [("init -> final weights (straight line)", alphas_line, line, "tab:purple",
             "alpha  (0 = init.pt, 1 = trained)"),
            ("random direction, filter-normalised", alphas, curve, "tab:blue", "alpha  (0 = trained weights)")]
    for r, (name, xs, values, color, xlabel) in enumerate(rows):
        ax_l, ax_a = axes[r]
        if values is None:
            for ax in (ax_l, ax_a):
                ax.text(0.5, 0.5, "no init.pt in this run:\nline not evaluated", ha="center", va="center",
                        transform=ax.transAxes)
                ax.set_title(name, fontsize=10)
                ax.set_xticks([])
                ax.set_yticks([])
            continue
        _band(ax_l, xs, values[:, 0], values[:, 1], color, "loss")
        _band(ax_a, xs, values[:, 2] * 100, values[:, 3] * 100, color, "accuracy")
        for ax, what in ((ax_l, "loss"), (ax_a, "accuracy (%)")):
            ax.set_title(f"{name}: {what.split(' ')[0]}", fontsize=10)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(what)
            ax.grid(alpha=0.3)
            for mark in ((0.0, 1.0) if r == 0 else (0.0,)):
                ax.axvline(mark, color="grey", linewidth=0.8, linestyle=":")
            ax.legend(fontsize=8)
    fig.suptitle(f"{title}\nbands: +/- 1 SE over {batches} batches of {group} (same images at every point)",
                 fontsize=9)
    fig.tight_layout()
    out.figure(fig, "lines.png", dpi=120)


def plot_grid(out: Outputs, title: str, axis: np.ndarray, surf: np.ndarray) -> None:
    from matplotlib import colors, ticker

    loss, acc = surf[..., 0], surf[..., 2] * 100
    A, B = np.meshgrid(axis, axis)  # rows: beta, columns: alpha, as surf
    lo, hi = float(loss.min()), float(loss.max())
    if hi <= lo:
        hi = lo + 1e-9
    logscale = lo > 0 and hi / lo > 20  # a wide range: log levels, or the basin is one colour
    if logscale:
        norm = colors.LogNorm(vmin=lo, vmax=hi)
        levels = np.geomspace(lo, hi, 25)
    else:
        norm = colors.Normalize(vmin=lo, vmax=hi)
        levels = ticker.MaxNLocator(nbins=20).tick_values(lo, hi)
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(12, 5))
    cf = ax_l.contourf(A, B, loss, levels=levels, norm=norm, cmap="viridis", extend="neither")
    ax_l.contour(A, B, loss, levels=levels[::2], norm=norm, colors="white", linewidths=0.5, alpha=0.6)
    cb = fig.colorbar(cf, ax=ax_l, label="loss" + (" (log scale)" if logscale else ""))
    if logscale:
        cb.ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
        cb.ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%.3g"))
    cf = ax_a.contourf(A, B, acc, levels=ticker.MaxNLocator(nbins=20).tick_values(acc.min(), max(acc.max(), acc.min() + 1e-6)),
                       cmap="magma")
    fig.colorbar(cf, ax=ax_a, label="accuracy (%)")
    for ax, what in ((ax_l, "loss"), (ax_a, "accuracy")):
        ax.plot([0], [0], marker="*", color="red", markersize=11, linestyle="none", label="trained weights")
        ax.set_xlabel("alpha (direction 1, filter-normalised)")
        ax.set_ylabel("beta (direction 2, filter-normalised, orthogonal)")
        ax.set_title(f"{what} around the trained weights ({len(axis)} x {len(axis)} points)", fontsize=10)
        ax.set_aspect("equal")
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out.figure(fig, "contour.png", dpi=120)

    fig = plt.figure(figsize=(8.5, 6.5))
    ax = fig.add_subplot(projection="3d")
    shown = np.log10(loss) if logscale else loss
    snorm = colors.Normalize(vmin=float(shown.min()), vmax=float(shown.max()))
    s = ax.plot_surface(A, B, shown, cmap="viridis", norm=snorm, linewidth=0.2, edgecolor="k", alpha=0.95,
                        antialiased=True, rcount=len(axis), ccount=len(axis))
    what = "log10 loss" if logscale else "loss"
    fig.colorbar(s, ax=ax, shrink=0.6, pad=0.12, label=what)
    ax.set_xlabel("alpha (direction 1)")
    ax.set_ylabel("beta (direction 2)")
    ax.set_zlabel(what)
    ax.view_init(elev=32, azim=-55)
    ax.set_title(f"{what} around the trained weights (0, 0)", fontsize=10)
    fig.suptitle(title, fontsize=8)
    out.figure(fig, "surface.png", dpi=120)
