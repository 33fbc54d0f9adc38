"""A study's landscape-probe outputs, drawn when its runs wrote probe.csv (train.probe): the
figures of Santurkar et al. 2018, figure 4, with the median over seeds and a bootstrap 95%
band, and the table of probe_stats.py.

    probe-loss.png         (a) the loss band along the gradient, min..max over the probe's step
                           sizes and over the settings (lrs), per group (BN vs no BN); beside it
                           the band's width
    probe-grad-change.png  (b) gradient predictiveness: the gradient change, one panel per setting
    probe-beta.png         (c) effective beta-smoothness, one panel per setting
    probe_table.md, probe_table.csv   the three medians per variant, CIs, ratios and paired p
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

import cnnlab.plots  # noqa: F401  (selects the Agg backend)
from cnnlab.io import save_figure, write_text
from cnnlab.studies import probe_stats as ps
from cnnlab.studies.plan import Plan

LOSS_PNG, GRAD_PNG, BETA_PNG = "probe-loss.png", "probe-grad-change.png", "probe-beta.png"
TABLE_MD, TABLE_CSV = "probe_table.md", "probe_table.csv"
BAND_NOTE = "lines: median over seeds; bands: bootstrap 95% CI of the median (with 2 seeds, their range)"


def draw_probe(plan: Plan, rows: list[dict[str, Any]], folder: Path) -> list[Path]:
    """Every probe output of a study whose completed runs have probe.csv; [] when none has."""
    import matplotlib.pyplot as plt

    runs = ps.load_runs(plan, rows, folder)
    if not runs:
        return []
    table = ps.build(plan, runs)
    title = f"Study {plan.study.name}: landscape probe ({len(runs)} runs)"
    write_text(folder / TABLE_MD, ps.to_markdown(table, title))
    write_text(folder / TABLE_CSV, ps.to_csv(table))
    try:
        return [folder / TABLE_MD, folder / TABLE_CSV, loss_figure(plan, runs, table, folder),
                per_setting(plan, runs, table, "grad_change", folder / GRAD_PNG,
                            "gradient predictiveness: max over step sizes of ||grad(w - eta g) - g||"),
                per_setting(plan, runs, table, "beta", folder / BETA_PNG,
                            "effective beta-smoothness: max over step sizes of ||grad(w - eta g) - g|| / (eta ||g||)")]
    finally:
        plt.close("all")


def _colors() -> list[Any]:
    import matplotlib.pyplot as plt

    return list(plt.get_cmap("tab10").colors)


def _band(ax: Any, steps: np.ndarray, values: np.ndarray, color: Any, label: str, seed: int) -> None:
    """Median over rows with its bootstrap band."""
    med, low, high = ps.median_band(values, seed)
    ax.plot(steps, med, color=color, label=label, linewidth=1.5)
    if low is not None:
        ax.fill_between(steps, low, high, color=color, alpha=0.2, linewidth=0)


def _by_seed(runs: list[ps.ProbeRun]) -> dict[tuple[int, int], list[ps.ProbeRun]]:
    out: dict[tuple[int, int], list[ps.ProbeRun]] = {}
    for r in runs:
        out.setdefault(r.pair_key[1:], []).append(r)
    return out


def loss_figure(plan: Plan, runs: list[ps.ProbeRun], table: ps.ProbeTable, folder: Path) -> Path:
    """(a) Per group: at each probed step, the lowest and highest loss over the step sizes and the
    settings (each seed's own envelope), median over seeds; right: the envelope's width."""
    import matplotlib.pyplot as plt

    steps = ps.common_steps(runs)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained")
    colors = _colors()
    for i, g in enumerate(table.groups):
        mine = [r for r in runs if r.group == g]
        lows, highs = [], []
        for seed_runs in _by_seed(mine).values():
            lows.append(np.min([ps.on_steps(r, r.loss_low, steps) for r in seed_runs], axis=0))
            highs.append(np.max([ps.on_steps(r, r.loss_high, steps) for r in seed_runs], axis=0))
        low, high = np.median(lows, axis=0), np.median(highs, axis=0)
        c = colors[i % len(colors)]
        left.fill_between(steps, low, high, color=c, alpha=0.35, linewidth=0, label=f"{g} (n={len(lows)} seeds)")
        left.plot(steps, low, color=c, linewidth=0.8)
        left.plot(steps, high, color=c, linewidth=0.8)
        _band(right, steps, np.asarray(highs) - np.asarray(lows), c, g, i)
    settings = [s for s in table.settings if s]
    over = f"and over {', '.join(settings)}" if settings else ""
    left.set_title("\n".join(textwrap.wrap(f"loss along the gradient: min..max over the step sizes {over} "
                                           "(each seed's envelope; median over seeds)", 70)), fontsize=9)
    right.set_title("\n".join(textwrap.wrap("width of that band (max - min); " + BAND_NOTE, 70)), fontsize=9)
    for ax in (left, right):
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    left.set_ylabel("training loss (the step's batch)")
    right.set_ylabel("loss band width")
    fig.suptitle(f"{plan.study.name}: loss landscape along the gradient (Santurkar et al. 2018, fig. 4a)", fontsize=11)
    path = folder / LOSS_PNG
    save_figure(fig, path, dpi=110)
    return path


def per_setting(plan: Plan, runs: list[ps.ProbeRun], table: ps.ProbeTable, quantity: str, path: Path,
                what: str) -> Path:
    """One panel per setting: each group's series, median over seeds with its bootstrap band (log scale)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    settings = table.settings
    cols = min(len(settings), 4)
    nrows = math.ceil(len(settings) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols + 0.6, 3.6 * nrows + 0.6), squeeze=False,
                             layout="constrained", sharey=True)
    colors = _colors()
    for ax, s in zip(axes.flat, settings):
        for i, g in enumerate(table.groups):
            mine = [r for r in runs if r.group == g and r.setting == s]
            if not mine:
                continue
            steps = ps.common_steps(mine)
            values = np.asarray([ps.on_steps(r, r.series[quantity], steps) for r in mine])
            _band(ax, steps, values, colors[i % len(colors)], f"{g} (n={len(mine)})", i)
        later, contrast = next(((g, c[quantity]) for (cs, g), c in table.contrasts.items() if cs == s), (None, None))
        note = "" if contrast is None or contrast.ratio is None else (
            f"\n{table.groups[0]} / {later}: x{contrast.ratio:.2g}"
            + ("" if contrast.p is None else f" (paired p={contrast.p:.2g})"))
        ax.set_title((s or plan.study.name) + note, fontsize=9)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    for ax in axes.flat[len(settings):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(ps.QUANTITIES[quantity])
    fig.suptitle(f"{plan.study.name}: {what}\n{BAND_NOTE}", fontsize=10)
    save_figure(fig, path, dpi=110)
    return path
