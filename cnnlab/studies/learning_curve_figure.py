"""learning_curve.png: error (or loss) against training-set size on log-log axes, per curve: every
run as a faint dot, the mean with its 95% CI, the fitted power law with its 95% band (dashed where
it extrapolates), and the target with the size the fit predicts for it."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np

import cnnlab.plots  # noqa: F401  (selects the Agg backend)
from cnnlab.io import save_figure
from cnnlab.studies.learning_curve import LearningCurve
from cnnlab.studies.table import metric_label, scale

FIGURE = "learning_curve.png"
EXTEND = 20.0  # the fit is drawn out to the target's size when that is at most this many times the largest size


def draw_curve(lc: LearningCurve, folder: Path, title: str | None = None) -> Path | None:
    """Draw the figure; None when no curve has a completed run."""
    import matplotlib.pyplot as plt

    if not any(p.values for c in lc.curves for p in c.points):
        return None
    k = scale(lc.metric)[0]
    fig, ax = plt.subplots(figsize=(7.5, 5.2), layout="constrained")
    colors = plt.get_cmap("tab10").colors
    low_x, high_x = min(lc.sizes) / 1.3, max(lc.sizes) * 1.3
    positive: list[float] = []
    for i, c in enumerate(lc.curves):
        color = colors[i % len(colors)]
        name = c.label if len(lc.curves) > 1 else "mean ± 95% CI"
        for p in c.points:
            ys = [v * k for v in p.values.values() if v > 0]
            ax.scatter([p.size] * len(ys), ys, s=10, color=color, alpha=0.3, linewidths=0)
            positive += ys
        shown = [p for p in c.points if p.summary.mean is not None and p.summary.mean > 0]
        x = np.array([p.size for p in shown], dtype=float)
        mean = np.array([p.summary.mean * k for p in shown])
        lo = np.array([(p.summary.ci_low if p.summary.ci_low is not None else p.summary.mean) * k for p in shown])
        hi = np.array([(p.summary.ci_high if p.summary.ci_high is not None else p.summary.mean) * k for p in shown])
        lo = np.where(lo > 0, lo, mean * 0.5)  # a CI reaching below 0 cannot be drawn on a log axis
        ax.errorbar(x, mean, yerr=[mean - lo, hi - mean], fmt="o", color=color, capsize=4, label=name, zorder=3)
        if c.fit is None:
            continue
        end = high_x
        if c.answer is not None and math.isfinite(c.answer[0]) and c.answer[0] <= EXTEND * max(lc.sizes):
            end = max(end, c.answer[0] * 1.2)
        grid = np.geomspace(low_x, end, 200)
        fit = c.fit.predict(grid) * k
        band_lo, band_hi = (v * k for v in c.fit.band(grid))
        inside = grid <= max(lc.sizes)
        ax.plot(grid[inside], fit[inside], color=color, linewidth=1.5,
                label=f"fit {c.fit.formula()}" + (f" ({c.label})" if len(lc.curves) > 1 else ""))
        ax.plot(grid[~inside], fit[~inside], color=color, linewidth=1.5, linestyle="--")
        ax.fill_between(grid, np.where(band_lo > 0, band_lo, np.nan), band_hi, color=color, alpha=0.15, linewidth=0)
        if c.answer is not None and math.isfinite(c.answer[0]) and c.answer[0] <= end:
            ax.plot([c.answer[0]], [lc.target * k], marker="*", markersize=12, color=color, zorder=4)
            ax.annotate(f"{lc.size_text(c.answer[0])}", (c.answer[0], lc.target * k), textcoords="offset points",
                        xytext=(6, -12), fontsize=8, color=color)
    if lc.target is not None and lc.target > 0:
        ax.axhline(lc.target * k, color="gray", linestyle=":", linewidth=1,
                   label=f"target: {lc.target_text()}" + ("" if lc.target_given else " (default)"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    # Plain numbers on both log axes (matplotlib's default writes 7 x 10^1 for 70%), minor ticks labelled
    # on the error axis, which often spans less than a decade.
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.set_xlabel("training images per class" if lc.per_class else "fraction of the training split")
    ax.set_ylabel(metric_label(lc.metric))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    note = "dashed: extrapolated beyond the largest size measured; band: the fit's 95% confidence"
    ax.set_title("\n".join([*textwrap.wrap(title or "learning curve", 90), note]), fontsize=9)
    path = folder / FIGURE
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path
