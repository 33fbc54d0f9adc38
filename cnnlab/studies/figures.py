"""Study figures: the compact table as an image, a bar chart per axis, per-epoch curves of the
variants (one panel per logged split), a heatmap for two axes, a 3-D scatter of the winners
for three, and Optuna's history and importances for search. Accuracies are drawn as errors
when the study's table.metric_style is error.
"""

from __future__ import annotations

import math
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np

import cnnlab.plots  # noqa: F401  (selects the Agg backend)
from cnnlab.io import save_figure
from cnnlab.studies.plan import Plan
from cnnlab.studies.spec import Axis, epoch_metric
from cnnlab.studies.stats import summarize
from cnnlab.studies.table import (
    OK,
    Table,
    body_cells,
    header_cells,
    lower_is_better,
    metric_label,
    scale,
    shown_metric,
    value_of,
)

MAX_CURVES = 10
TABLE_PNG = "table.png"
SPLITS = ("train", "val", "test")  # the panels of curves.png, in this order


def draw_all(plan: Plan, rows: list[dict[str, Any]], table: Table, folder: Path, study: Any = None,
             title: str | None = None, processes: int = 1) -> list[Path]:
    """Every figure that suits this study; returns the files written. `processes=2`: table.png (the
    costliest, text cell by cell) is drawn by a forked process meanwhile (studies/forked.py), where
    the study's end has a core to spare: its final figures took seconds on one core while the other idled."""
    from cnnlab.studies import forked

    title = title or f"Study {plan.study.name}"
    if processes > 1 and forked.can_fork():
        beside = forked.fork(lambda: table_figure(table, title, folder), "cnnlab-table-png")
        out = _draw_rest(plan, rows, table, folder, study)
        drawn = folder / TABLE_PNG if beside.wait() == 0 else table_figure(table, title, folder)  # failed there: here
        return [drawn, *out]
    return [table_figure(table, title, folder), *_draw_rest(plan, rows, table, folder, study)]


def _draw_rest(plan: Plan, rows: list[dict[str, Any]], table: Table, folder: Path, study: Any) -> list[Path]:
    """Every figure but table.png."""
    import matplotlib.pyplot as plt

    out: list[Path | None] = []
    try:
        mode = plan.study.mode
        if mode == "ablation":
            out += [ablation_bars(plan, table, axis, folder) for axis in plan.study.axes]
        elif mode == "grid":
            out += [marginal_bars(plan, rows, axis, folder) for axis in plan.study.axes]
            if len(plan.study.axes) == 2:
                out.append(heatmap(plan, rows, folder))
        if mode == "grid" and len(plan.study.axes) >= 3:
            out.append(grid_scatter3d(plan, rows, folder))
        out.append(curves(plan, rows, table, folder))
        if mode == "search" and study is not None:
            out += optuna_figures(study, folder)
    finally:
        plt.close("all")
    return [p for p in out if p is not None]


def study_metric(plan: Plan) -> str:
    """The study metric as the table shows it (val_error for val_acc with metric_style error)."""
    return shown_metric(plan.study.spec.metric, plan.study.metric_style)


def _completed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["status"] in OK]


def _bars(ax: Any, labels: list[str], values: list[list[float]], metric: str, highlight: int | None) -> None:
    k = scale(metric)[0]
    stats = [summarize(v) for v in values]
    means = [s.mean * k if s.mean is not None else 0.0 for s in stats]
    errs = [(s.mean - s.ci_low) * k if s.ci_low is not None else 0.0 for s in stats]
    colors = ["tab:orange" if i == highlight else "tab:blue" for i in range(len(labels))]
    x = np.arange(len(labels))
    ax.bar(x, means, yerr=errs, capsize=4, color=colors, alpha=0.85)
    for i, s in enumerate(stats):
        ax.annotate(f"n={s.n}", (x[i], means[i] + errs[i]), textcoords="offset points", xytext=(0, 3),
                    ha="center", fontsize=8)
    ax.set_xticks(x, labels, rotation=30 if max(map(len, labels), default=0) > 6 else 0, ha="right")
    finite = [m for m, s in zip(means, stats) if s.mean is not None]
    if finite:  # zoom in: differences of a point matter, the axis need not start at 0
        lo = min(m - e for m, e, s in zip(means, errs, stats) if s.mean is not None)
        hi = max(m + e for m, e, s in zip(means, errs, stats) if s.mean is not None)
        pad = max((hi - lo) * 0.3, 1e-3 * max(abs(hi), 1))
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_ylabel(metric_label(metric))


def ablation_bars(plan: Plan, table: Table, axis: Axis, folder: Path) -> Path:
    """One axis of an ablation: the base and each level, mean with its 95% CI as the error bar."""
    import matplotlib.pyplot as plt

    base = next(v for v in plan.variants if v.is_base and v.axis is None)
    labels, values, highlight = [], [], None
    base_level = base.levels.get(axis.name)
    by_label = {v.levels.get(axis.name): v for v in plan.variants if v.axis == axis.name}
    if base_level is None:  # the base's value is not one of the levels: show it first
        labels.append("base")
        values.append(base.label)
        highlight = 0
    for lv in axis.levels:
        if lv.label == base_level:
            highlight = len(labels)
            labels.append(f"{lv.label} (base)")
            values.append(base.label)
        elif lv.label in by_label:
            labels.append(lv.label)
            values.append(by_label[lv.label].label)
    metrics = table.metrics[:3]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics) + 1, 4), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        samples = [_values(table, label, m) for label in values]
        _bars(ax, labels, samples, m, highlight)
        ax.set_title(metric_label(m))
    fig.suptitle(f"{plan.study.name}: {axis.name} (error bars: 95% CI over seeds/folds)")
    fig.tight_layout()
    path = folder / f"bar-{_slug(axis.name)}.png"
    save_figure(fig, path, dpi=110)
    return path


def _values(table: Table, label: str, metric: str) -> list[float]:
    return list(table.samples.get(label, {}).get(metric, {}).values())


def marginal_bars(plan: Plan, rows: list[dict[str, Any]], axis: Axis, folder: Path) -> Path:
    """One axis of a grid: every run with that level, averaged over all other axes."""
    import matplotlib.pyplot as plt

    metric = study_metric(plan)
    ok = _completed(rows)
    labels = [lv.label for lv in axis.levels]
    values = [[value_of(r, metric) for r in ok if r.get(axis.name) == label and value_of(r, metric) is not None]
              for label in labels]
    fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 3, 4))
    _bars(ax, labels, values, metric, None)
    ax.set_title(f"{plan.study.name}: {axis.name}, mean over the other axes (error bars: 95% CI)", fontsize=10)
    ax.set_xlabel(axis.name)
    fig.tight_layout()
    path = folder / f"bar-{_slug(axis.name)}.png"
    save_figure(fig, path, dpi=110)
    return path


def curves(plan: Plan, rows: list[dict[str, Any]], table: Table, folder: Path) -> Path | None:
    """Per-epoch error (or accuracy, per metric_style; loss for a loss-ranked study) of the best
    variants, one panel per split the runs logged (train, val, test): the mean over seeds/folds
    with a band of +-1 sample std."""
    import matplotlib.pyplot as plt

    kind = "loss" if epoch_metric(plan.study.spec.metric).endswith("_loss") else "acc"
    series = [shown_metric(f"{split}_{kind}", plan.study.metric_style) for split in SPLITS]
    shown = _top_variants(table)
    runs = {label: [r.get("history") or [] for r in rows if r["variant"] == label and r["status"] in OK]
            for label in shown}
    logged = [m for m in series if any(value_of(h, m) is not None for hists in runs.values() for hist in hists
                                       for h in hist)]
    if not logged:
        return None
    width = max(8.0, 4.6 * len(logged) + 0.6)
    per_column = (max(map(len, shown)) + 14) * 0.062 + 0.6  # inches a legend entry takes at 8 pt
    ncol = max(1, min(len(shown), int(width // per_column)))
    legend_rows = math.ceil(len(shown) / ncol)
    fig, axes = plt.subplots(1, len(logged), figsize=(width, 4.4 + 0.19 * legend_rows), squeeze=False,
                             layout="constrained")
    colors = plt.get_cmap("tab10").colors
    base = next((r.info.label for r in table.rows if r.info.is_base), None)
    for ax, metric in zip(axes[0], logged):
        for i, label in enumerate(shown):
            hists = runs[label]
            per_epoch: dict[int, list[float]] = {}
            for hist in hists:
                for h in hist:
                    if value_of(h, metric) is not None:
                        per_epoch.setdefault(h["epoch"], []).append(value_of(h, metric) * scale(metric)[0])
            if not per_epoch:
                continue
            epochs = sorted(per_epoch)
            mean = np.array([np.mean(per_epoch[e]) for e in epochs])
            std = np.array([np.std(per_epoch[e], ddof=1) if len(per_epoch[e]) > 1 else 0.0 for e in epochs])
            name = f"{label} (base)" if label == base and label != "base" else label
            ax.plot(epochs, mean, marker="o", markersize=3, color=colors[i % len(colors)],
                    linestyle="--" if label == base else "-", label=f"{name} (n={len(hists)})")
            ax.fill_between(epochs, mean - std, mean + std, color=colors[i % len(colors)], alpha=0.15, linewidth=0)
        split = metric.split("_")[0]
        ax.set_title(split + (" (counted during the epoch's steps)" if split == "train" else ""), fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel(metric_label(metric))
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, fontsize=8, frameon=False)
    what = "loss" if kind == "loss" else "error" if logged[0].endswith("_error") else "accuracy"
    scored = sum(r.rank is not None for r in table.rows)
    heading = (f"{plan.study.name}: {what} per epoch; lines: mean over seeds/folds, bands: ± 1 std"
               + (f" (best {len(shown)} of {scored} variants)" if scored > len(shown) else ""))
    fig.suptitle("\n".join(textwrap.wrap(heading, int(width * 11))), fontsize=11)
    path = folder / "curves.png"
    save_figure(fig, path, dpi=110)
    return path


def _top_variants(table: Table) -> list[str]:
    """The best-ranked variants (the table's rows come ranked), the base always among them."""
    scored = [r for r in table.rows if r.rank is not None]
    top = [r.info.label for r in scored[:MAX_CURVES]]
    base = next((r.info.label for r in scored if r.info.is_base), None)
    if base is not None and base not in top:
        top = top[: MAX_CURVES - 1] + [base]
    return top


PNG_ROWS = 30  # table.png shows the best rows (and the base): a 160-row image reads in no slide and took seconds

TABLE_COLORS = {"header": "#e6e6e6", "best": "#d4edda", "base": "#e3ebf7", "row": "white", "edge": "#b0b0b0"}


def table_figure(table: Table, title: str, folder: Path) -> Path:
    """The compact table as a PNG: bold header, the best row green, the base row blue, numbers
    right-aligned, best mean per column bold; the figure grows with rows and column widths up to
    PNG_ROWS rows: then the best ones and the base's (its rank says where it stands; table.md has all)."""
    import matplotlib.pyplot as plt
    from matplotlib.table import Table as MplTable

    shown = [r for i, r in enumerate(table.rows) if i < PNG_ROWS or r.info.is_base or r.info.label == table.reference]
    head = header_cells(table)
    body = [body_cells(table, row, bold=("\x00", "")) for row in shown]
    chars = [max([len(head[j])] + [len(r[j].lstrip("\x00")) for r in body]) + 3 for j in range(len(head))]
    char_in, row_in = 0.075, 0.3  # inches per character at 9 pt, per row
    width = max(sum(chars) * char_in + 0.4, 6.0)
    order = "higher" if table.maximize else "lower"
    tests = ("95% CI and p Stein's (adaptive seeds: spread from the pilot seeds; Holm-corrected, * p < 0.05)"
             if table.stein else "95% CI of the mean (t); Δ and p against the reference (paired t-test, else Welch's; "
             "Holm-corrected, * p < 0.05)")
    note = textwrap.wrap(f"Ranked by {metric_label(table.metric)}, {order} is better. Metrics: mean ± std over the n completed runs; "
                         f"{tests}; best epoch: mean over runs. Green: best row; blue: base. "
                         "Bold: best mean per column."
                         + (f" Shown: the {PNG_ROWS} best of {len(table.rows)} variants"
                            f"{' and the base' if len(shown) > PNG_ROWS else ''}; every variant: table.md."
                            if len(shown) < len(table.rows) else ""), int(width / 0.068))
    title_lines = textwrap.wrap(title, int(width / 0.085))
    top_in, bottom_in = 0.25 + 0.22 * len(title_lines), 0.2 + 0.17 * len(note)
    table_in = row_in * (len(body) + 1)
    height = top_in + table_in + bottom_in
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((0.2 / width, bottom_in / height, 1 - 0.4 / width, table_in / height))
    ax.set_axis_off()
    grid = MplTable(ax, bbox=(0, 0, 1, 1))
    total = sum(chars)
    align = {0: "center", 1: "left"}  # rank, variant; everything else is a number or short text
    n = len(body) + 1
    for i, row in enumerate([None, *shown]):
        # Row colours as rectangles behind the cells: a cell drawing only horizontal edges fills nothing.
        color = (TABLE_COLORS["header"] if row is None else TABLE_COLORS["best"] if row.rank == 1
                 else TABLE_COLORS["base"] if row.info.is_base or row.info.label == table.reference
                 else TABLE_COLORS["row"])
        ax.add_patch(plt.Rectangle((0, 1 - (i + 1) / n), 1, 1 / n, facecolor=color, edgecolor="none", zorder=0))
    for i, cells in enumerate([head, *body]):
        for j, text in enumerate(cells):
            cell = grid.add_cell(i, j, chars[j] / total, 1, text=text.lstrip("\x00"), loc=align.get(j, "right"),
                                 facecolor="none", edgecolor=TABLE_COLORS["edge"])
            cell.visible_edges = "horizontal"
            cell.set_linewidth(0.6)
            cell.PAD = 1.0 / chars[j]  # about one character from the cell's edge
            if i == 0 or text.startswith("\x00"):
                cell.get_text().set_fontweight("bold")
    grid.auto_set_font_size(False)
    grid.set_fontsize(9)
    ax.add_table(grid)
    fig.text(0.5, 1 - 0.12 / height, "\n".join(title_lines), ha="center", va="top", fontsize=10.5, fontweight="bold")
    fig.text(0.2 / width, 0.12 / height, "\n".join(note), ha="left", va="bottom", fontsize=7.5, color="#444444")
    path = folder / TABLE_PNG
    save_figure(fig, path, dpi=130)
    return path


def heatmap(plan: Plan, rows: list[dict[str, Any]], folder: Path) -> Path:
    """Two-axis grid: the mean metric of every cell, annotated with mean +- std and n."""
    import matplotlib.pyplot as plt

    a, b = plan.study.axes
    metric = study_metric(plan)
    k = scale(metric)[0]
    ok = _completed(rows)
    grid = np.full((len(a.levels), len(b.levels)), np.nan)
    text = [["" for _ in b.levels] for _ in a.levels]
    for i, la in enumerate(a.levels):
        for j, lb in enumerate(b.levels):
            s = summarize([value_of(r, metric) for r in ok if r.get(a.name) == la.label
                           and r.get(b.name) == lb.label and value_of(r, metric) is not None])
            if s.mean is not None:
                grid[i, j] = s.mean * k
                spread = f"\n± {s.std * k:.2f}" if s.std is not None else ""
                text[i][j] = f"{s.mean * k:.2f}{spread}\nn={s.n}"
    fig, ax = plt.subplots(figsize=(1.3 * len(b.levels) + 3, 1.0 * len(a.levels) + 2.5))
    cmap = "viridis_r" if lower_is_better(metric) else "viridis"
    im = ax.imshow(grid, cmap=cmap, aspect="auto")
    fig.colorbar(im, ax=ax, label=metric_label(metric))
    ax.set_xticks(range(len(b.levels)), [lv.label for lv in b.levels])
    ax.set_yticks(range(len(a.levels)), [lv.label for lv in a.levels])
    ax.set_xlabel(b.name)
    ax.set_ylabel(a.name)
    finite = grid[np.isfinite(grid)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0
    for i in range(len(a.levels)):
        for j in range(len(b.levels)):
            if text[i][j]:
                dark = (grid[i, j] < mid) != lower_is_better(metric)
                ax.text(j, i, text[i][j], ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.set_title(f"{plan.study.name}: {metric}", fontsize=10)
    fig.tight_layout()
    path = folder / "heatmap.png"
    save_figure(fig, path, dpi=110)
    return path


def _coords(axis: Axis) -> tuple[list[float], list[str], bool]:
    """Plot positions of an axis' levels: log10 of wide positive numeric ranges, values, or indices."""
    vals = [lv.value for lv in axis.levels]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)
    if numeric:
        v = [float(x) for x in vals]
        if min(v) > 0 and max(v) / min(v) >= 100:
            return [math.log10(x) for x in v], [lv.label for lv in axis.levels], True
        return v, [lv.label for lv in axis.levels], False
    return list(range(len(vals))), [lv.label for lv in axis.levels], False


def grid_scatter3d(plan: Plan, rows: list[dict[str, Any]], folder: Path, top: int = 5) -> Path:
    """The first three axes in 3-D; each point is the best cell over any further axes, coloured
    by its mean metric, with the `top` winners enlarged and labelled."""
    import matplotlib.pyplot as plt

    axes = plan.study.axes[:3]
    metric = study_metric(plan)
    k = scale(metric)[0]
    cells = winning_cells(plan, rows, 3)
    coords = [_coords(a) for a in axes]
    pos = [{lv.label: c for lv, c in zip(a.levels, coords[i][0])} for i, a in enumerate(axes)]
    fig = plt.figure(figsize=(8, 6.5))
    ax = fig.add_subplot(projection="3d")
    if cells:
        keys = list(cells)
        xyz = np.array([[pos[i][key[i]] for i in range(3)] for key in keys])
        vals = np.array([cells[key] * k for key in keys])
        order = sorted(range(len(keys)), key=lambda i: vals[i], reverse=not lower_is_better(metric))
        sizes = np.full(len(keys), 30.0)
        sizes[order[:top]] = 160.0
        sc = ax.scatter(xyz[:, 0], xyz[:, 1], xyz[:, 2], c=vals, s=sizes,
                        cmap="viridis_r" if lower_is_better(metric) else "viridis", depthshade=False)
        fig.colorbar(sc, ax=ax, shrink=0.6, pad=0.12, label=metric_label(metric))
        for rank, i in enumerate(order[:top], 1):
            ax.text(*xyz[i], f" #{rank} {vals[i]:.2f}", fontsize=8)
    for i, (setter, ticks) in enumerate(((ax.set_xticks, ax.set_xlabel), (ax.set_yticks, ax.set_ylabel),
                                          (ax.set_zticks, ax.set_zlabel))):
        values, labels, log = coords[i]
        setter(values, labels)
        ticks(axes[i].name + (" (log)" if log else ""))
    extra = plan.study.axes[3:]
    note = f"; best over {', '.join(a.name for a in extra)}" if extra else ""
    ax.set_title(f"{plan.study.name}: {metric}, top {top} enlarged{note}", fontsize=10)
    path = folder / "scatter3d.png"
    save_figure(fig, path, dpi=110)
    return path


def winning_cells(plan: Plan, rows: list[dict[str, Any]], n_axes: int) -> dict[tuple[str, ...], float]:
    """Mean metric of each cell of the first n_axes axes: the best variant over the other axes."""
    metric = study_metric(plan)
    better = min if lower_is_better(metric) else max
    by_variant: dict[str, list[float]] = {}
    for r in _completed(rows):
        if value_of(r, metric) is not None:
            by_variant.setdefault(r["variant"], []).append(value_of(r, metric))
    cells: dict[tuple[str, ...], float] = {}
    for v in plan.variants:
        if v.label in by_variant:
            cell = tuple(v.levels[a.name] for a in plan.study.axes[:n_axes])
            mean = float(np.mean(by_variant[v.label]))
            cells[cell] = better(cells.get(cell, mean), mean)
    return cells


def optuna_figures(study: Any, folder: Path) -> list[Path]:
    """Optuna's optimisation history and (with enough finished trials) parameter importances."""
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as ovm

    out = []
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if complete:
            ax = ovm.plot_optimization_history(study)
            path = folder / "history.png"
            save_figure(ax.figure, path, dpi=110, bbox_inches="tight")
            plt.close(ax.figure)
            out.append(path)
        varied = {n for t in complete for n in t.params if len({str(u.params.get(n)) for u in complete}) > 1}
        if len(complete) >= 3 and varied:
            try:
                ax = ovm.plot_param_importances(study)
            except (ValueError, RuntimeError):  # too little variation to fit the importance model
                return out
            path = folder / "importance.png"
            save_figure(ax.figure, path, dpi=110, bbox_inches="tight")
            plt.close(ax.figure)
            out.append(path)
    return out


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
