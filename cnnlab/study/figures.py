"""Study figures: a bar chart per axis, validation curves of all variants, a heatmap for two
axes, a 3-D scatter of the winners for three, and Optuna's history and importances for search.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

import cnnlab.analysis  # noqa: F401  (selects the Agg backend)
from cnnlab.io import save_figure
from cnnlab.study.plan import Plan
from cnnlab.study.spec import Axis, epoch_metric
from cnnlab.study.stats import summarize
from cnnlab.study.table import OK, Table, lower_is_better, scale

MAX_CURVES = 10


def draw_all(plan: Plan, rows: list[dict[str, Any]], table: Table, folder: Path, study: Any = None) -> list[Path]:
    """Every figure that suits this study; returns the files written."""
    import matplotlib.pyplot as plt

    out: list[Path] = []
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


def _metric_label(metric: str) -> str:
    return f"{metric} (%)" if scale(metric)[0] == 100 else metric


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
    ax.set_ylabel(_metric_label(metric))


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
        ax.set_title(m)
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

    metric = plan.study.spec.metric
    ok = _completed(rows)
    labels = [lv.label for lv in axis.levels]
    values = [[r[metric] for r in ok if r.get(axis.name) == label and r.get(metric) is not None] for label in labels]
    fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 3, 4))
    _bars(ax, labels, values, metric, None)
    ax.set_title(f"{plan.study.name}: {axis.name}, mean over the other axes (error bars: 95% CI)", fontsize=10)
    ax.set_xlabel(axis.name)
    fig.tight_layout()
    path = folder / f"bar-{_slug(axis.name)}.png"
    save_figure(fig, path, dpi=110)
    return path


def curves(plan: Plan, rows: list[dict[str, Any]], table: Table, folder: Path) -> Path | None:
    """Per-epoch validation metric of every variant: the mean over seeds/folds with a +-std band."""
    import matplotlib.pyplot as plt

    metric = epoch_metric(plan.study.spec.metric)
    k = scale(metric)[0]
    shown = _top_variants(table, plan.study.spec.metric)
    fig, ax = plt.subplots(figsize=(8, 5))
    drawn = 0
    for label in shown:
        hists = [r.get("history") or [] for r in rows if r["variant"] == label and r["status"] in OK]
        epochs = sorted({h["epoch"] for hist in hists for h in hist if metric in h})
        if not epochs:
            continue
        per_epoch = [[h[metric] * k for hist in hists for h in hist if h["epoch"] == e and metric in h] for e in epochs]
        mean = np.array([np.mean(v) for v in per_epoch])
        std = np.array([np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in per_epoch])
        line, = ax.plot(epochs, mean, marker="o", markersize=3, label=f"{label} (n={len(hists)})")
        ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    more = len(table.rows) - len(shown)
    ax.set_title(f"{plan.study.name}: {metric} per epoch, mean ± std over seeds/folds"
                 + (f" (best {len(shown)} of {len(table.rows)} variants)" if more > 0 else ""), fontsize=10)
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(_metric_label(metric))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = folder / "curves.png"
    save_figure(fig, path, dpi=110)
    return path


def _top_variants(table: Table, metric: str) -> list[str]:
    scored = [r for r in table.rows if r.cells[metric].summary.mean is not None]
    scored.sort(key=lambda r: r.cells[metric].summary.mean, reverse=not lower_is_better(metric))
    top = [r.info.label for r in scored[:MAX_CURVES]]
    base = next((r.info.label for r in table.rows if r.info.is_base), None)
    if base is not None and base not in top and any(r.info.label == base for r in scored):
        top = top[: MAX_CURVES - 1] + [base]
    return top


def heatmap(plan: Plan, rows: list[dict[str, Any]], folder: Path) -> Path:
    """Two-axis grid: the mean metric of every cell, annotated with mean +- std and n."""
    import matplotlib.pyplot as plt

    a, b = plan.study.axes
    metric = plan.study.spec.metric
    k = scale(metric)[0]
    ok = _completed(rows)
    grid = np.full((len(a.levels), len(b.levels)), np.nan)
    text = [["" for _ in b.levels] for _ in a.levels]
    for i, la in enumerate(a.levels):
        for j, lb in enumerate(b.levels):
            s = summarize([r[metric] for r in ok if r.get(a.name) == la.label and r.get(b.name) == lb.label
                           and r.get(metric) is not None])
            if s.mean is not None:
                grid[i, j] = s.mean * k
                spread = f"\n± {s.std * k:.2f}" if s.std is not None else ""
                text[i][j] = f"{s.mean * k:.2f}{spread}\nn={s.n}"
    fig, ax = plt.subplots(figsize=(1.3 * len(b.levels) + 3, 1.0 * len(a.levels) + 2.5))
    cmap = "viridis_r" if lower_is_better(metric) else "viridis"
    im = ax.imshow(grid, cmap=cmap, aspect="auto")
    fig.colorbar(im, ax=ax, label=_metric_label(metric))
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
    metric = plan.study.spec.metric
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
        fig.colorbar(sc, ax=ax, shrink=0.6, label=_metric_label(metric))
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
    metric = plan.study.spec.metric
    better = min if lower_is_better(metric) else max
    by_variant: dict[str, list[float]] = {}
    for r in _completed(rows):
        if r.get(metric) is not None:
            by_variant.setdefault(r["variant"], []).append(r[metric])
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
