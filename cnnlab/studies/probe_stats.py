"""The numbers behind a study's landscape-probe outputs (runs trained with train.probe).

Each completed run's probe.csv (cnnlab/training/probe.py) becomes three series over its probed
steps, each a summary over the probe's step sizes:
    loss band     max - min of the loss along the gradient       (Santurkar et al. 2018, fig. 4a)
    grad change   max of ||grad(w - eta g) - g||                  (gradient predictiveness, fig. 4b)
    beta          max of that change / (eta ||g||)                (effective beta-smoothness, fig. 4c)

Runs fall into groups and settings: in a grid, the group is the run's level on the first axis
(the compared one: BN or not) and the setting its levels on the others (the lr); in other modes
every variant is a group of its own. Per run, each series is reduced to its median over the
probed steps. A group's value is the median over its runs (seeds, folds) with a percentile
bootstrap 95% interval over those runs (with two seeds, it spans the two). The first group is
compared with each later one by pairs of runs that share the setting, seed and fold: the ratio
first / later (BN / no BN) is the geometric mean of the pairs' ratios, and p the paired t-test
on their logarithms, per setting and pooled over all settings.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.lazy import lazy
from cnnlab.rundir import Run
from cnnlab.studies.plan import Plan
from cnnlab.studies.table import OK

stats = lazy("scipy.stats")

QUANTITIES = {"band": "loss band", "grad_change": "grad change", "beta": "beta"}
N_BOOT = 2000


@dataclass
class ProbeRun:
    """One run's probe series, one value per probed step."""

    group: str
    setting: str  # "" when the study has no other axes
    seed: int
    fold: int | None
    steps: np.ndarray
    loss_low: np.ndarray  # min over the step sizes of the loss along the gradient
    loss_high: np.ndarray
    series: dict[str, np.ndarray]  # QUANTITIES -> values per step

    @property
    def pair_key(self) -> tuple[str, int, int]:
        return self.setting, self.seed, -1 if self.fold is None else self.fold

    def median(self, quantity: str) -> float:
        return float(np.nanmedian(self.series[quantity]))


def compared_axis(plan: Plan) -> str | None:
    """The axis whose levels are compared (a grid's first axis), or None: every variant is a group."""
    return plan.study.axes[0].name if plan.study.mode == "grid" and plan.study.axes else None


def load_runs(plan: Plan, rows: list[dict[str, Any]], folder: Path) -> list[ProbeRun]:
    """The completed runs of a study that wrote probe.csv, in group order."""
    axis = compared_axis(plan)
    others = [a.name for a in plan.study.axes[1:]] if axis else []
    out = []
    for r in rows:
        if r.get("status") not in OK or not r.get("run"):
            continue
        probe = Run(folder / r["run"]).probe()
        if not probe or not probe["step"]:
            continue
        group = str(r.get(axis)) if axis else r["variant"]
        setting = ", ".join(f"{k}={r.get(k)}" for k in others)
        out.append(_series(group, setting, int(r.get("seed") or 0), r.get("fold"), probe))
    order = group_order(plan, out)
    return sorted(out, key=lambda p: (order.index(p.group), p.setting, p.seed, -1 if p.fold is None else p.fold))


def _series(group: str, setting: str, seed: int, fold: int | None, probe: dict[str, list[float]]) -> ProbeRun:
    step = np.asarray(probe["step"], dtype=int)
    steps = np.unique(step)
    per: dict[str, list[float]] = {k: [] for k in ("low", "high", "grad_change", "beta")}
    for s in steps:
        at = step == s
        loss = np.asarray(probe["loss"], dtype=float)[at]
        per["low"].append(float(np.min(loss)))
        per["high"].append(float(np.max(loss)))
        per["grad_change"].append(float(np.max(np.asarray(probe["grad_change"], dtype=float)[at])))
        per["beta"].append(float(np.max(np.asarray(probe["beta"], dtype=float)[at])))
    low, high = np.asarray(per["low"]), np.asarray(per["high"])
    series = {"band": high - low, "grad_change": np.asarray(per["grad_change"]), "beta": np.asarray(per["beta"])}
    return ProbeRun(group, setting, seed, fold, steps, low, high, series)


def group_order(plan: Plan, runs: list[ProbeRun]) -> list[str]:
    """Groups in the study file's order (the first is the reference of the comparisons)."""
    axis = compared_axis(plan)
    declared = [lv.label for lv in plan.study.axes[0].levels] if axis else [v.label for v in plan.variants]
    return [g for g in declared if any(p.group == g for p in runs)] + sorted(
        {p.group for p in runs} - set(declared))


def common_steps(runs: list[ProbeRun]) -> np.ndarray:
    """The probed steps every run has (runs of a study share them unless one stopped early)."""
    steps = runs[0].steps
    for r in runs[1:]:
        steps = np.intersect1d(steps, r.steps)
    return steps


def on_steps(run: ProbeRun, values: np.ndarray, steps: np.ndarray) -> np.ndarray:
    return values[np.searchsorted(run.steps, steps)]


def median_band(values: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Median over rows (runs) of each column, and its percentile-bootstrap 95% interval (None for one row)."""
    values = np.asarray(values, dtype=float)
    med = np.median(values, axis=0)
    if values.shape[0] < 2:
        return med, None, None
    ci = stats.bootstrap((values,), np.median, axis=0, vectorized=True, method="percentile",
                         n_resamples=N_BOOT, rng=np.random.default_rng(seed)).confidence_interval
    return med, np.asarray(ci.low), np.asarray(ci.high)


@dataclass
class Cell:
    median: float | None
    low: float | None
    high: float | None
    n: int


@dataclass
class Contrast:
    ratio: float | None  # geometric mean of the pairs' ratios (group / other)
    p: float | None  # paired t-test on the logarithms
    pairs: int


def cell(values: list[float]) -> Cell:
    v = [x for x in values if math.isfinite(x)]
    if not v:
        return Cell(None, None, None, 0)
    med, low, high = median_band(np.asarray(v)[:, None])
    return Cell(float(med[0]), None if low is None else float(low[0]), None if high is None else float(high[0]), len(v))


def contrast(runs: list[ProbeRun], group: str, other: str, quantity: str, setting: str | None) -> Contrast:
    """`group` against `other` over the runs they pair on (one setting, or all when None)."""
    mine = {r.pair_key: r.median(quantity) for r in runs if r.group == group and setting in (None, r.setting)}
    ref = {r.pair_key: r.median(quantity) for r in runs if r.group == other and setting in (None, r.setting)}
    logs = [math.log(mine[k]) - math.log(ref[k]) for k in sorted(set(mine) & set(ref))
            if mine[k] > 0 and ref[k] > 0 and math.isfinite(mine[k]) and math.isfinite(ref[k])]
    if not logs:
        return Contrast(None, None, 0)
    ratio = math.exp(float(np.mean(logs)))
    p = None
    if len(logs) >= 2 and np.std(logs) > 0:
        p = float(stats.ttest_1samp(logs, 0.0).pvalue)  # = ttest_rel on the logarithms
    return Contrast(ratio, p, len(logs))


@dataclass
class ProbeTable:
    groups: list[str]
    settings: list[str]
    cells: dict[tuple[str, str], dict[str, Cell]]  # (setting, group) -> quantity -> Cell
    contrasts: dict[tuple[str | None, str], dict[str, Contrast]]  # (setting or None: pooled, later group) -> ...


def build(plan: Plan, runs: list[ProbeRun]) -> ProbeTable:
    groups = group_order(plan, runs)
    settings = sorted({r.setting for r in runs}, key=_setting_order(plan))
    cells = {}
    for s in settings:
        for g in groups:
            mine = [r for r in runs if r.group == g and r.setting == s]
            if mine:
                cells[(s, g)] = {q: cell([r.median(q) for r in mine]) for q in QUANTITIES}
    contrasts = {}
    for g in groups[1:]:
        for s in [*settings, None] if len(settings) > 1 else settings:
            contrasts[(s, g)] = {q: contrast(runs, groups[0], g, q, s) for q in QUANTITIES}
    return ProbeTable(groups, settings, cells, contrasts)


def _setting_order(plan: Plan) -> Any:
    """Settings in the order of their levels in the study file (lr 0.05 before 0.1 before 0.2)."""
    levels = [[lv.label for lv in a.levels] for a in plan.study.axes[1:]] if compared_axis(plan) else []

    def key(setting: str) -> tuple[int, ...]:
        parts = [p.split("=", 1)[-1] for p in setting.split(", ")] if setting else []
        return tuple(lv.index(v) if v in lv else len(lv) for lv, v in zip(levels, parts))

    return key


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def rows(table: ProbeTable) -> list[list[str]]:
    """The table's body: a row per setting and group, then its contrasts; the pooled contrasts last."""
    out = []
    for s in table.settings:
        for g in table.groups:
            cells = table.cells.get((s, g))
            if cells is None:
                continue
            n = max(c.n for c in cells.values())
            line = [s or "all", g, str(n)]
            for q in QUANTITIES:
                c = cells[q]
                line += [_fmt(c.median), "n/a" if c.low is None else f"[{_fmt(c.low)}, {_fmt(c.high)}]"]
            out.append(line)
        out += _contrast_rows(table, s)
    if len(table.settings) > 1:
        out += _contrast_rows(table, None)
    return out


def _contrast_rows(table: ProbeTable, setting: str | None) -> list[list[str]]:
    out = []
    for g in table.groups[1:]:
        cs = table.contrasts.get((setting, g))
        if cs is None:
            continue
        pairs = max(c.pairs for c in cs.values())
        line = ["all (pooled)" if setting is None else (setting or "all"), f"{table.groups[0]} / {g}", f"{pairs} pairs"]
        for q in QUANTITIES:
            c = cs[q]
            line += ["n/a" if c.ratio is None else f"x{c.ratio:.3g}", "p n/a" if c.p is None else f"p={c.p:.3g}"]
        out.append(line)
    return out


def header() -> list[str]:
    head = ["setting", "variant", "n"]
    for q in QUANTITIES.values():
        head += [f"{q} (median)", "95% CI"]
    return head


def to_markdown(table: ProbeTable, title: str) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(header()) + " |", "|" + "---|" * 2 + "--:|" * (len(header()) - 2)]
    lines += ["| " + " | ".join(r) + " |" for r in rows(table)]
    lines += ["", "Per run: the median over its probed steps of the loss band (max - min of the loss over the probe's "
              "step sizes), the gradient change (max over the sizes of ||grad(w - eta g) - g||) and beta (max over the "
              "sizes of that change / (eta ||g||)). Variant: median over runs, 95% percentile-bootstrap CI over runs. "
              "Ratio rows: the first variant over the other, the geometric mean of the ratios of runs paired by "
              "setting and seed (below 1: the first is smaller), p from the paired t-test on their logarithms.", ""]
    return "\n".join(lines)


def to_csv(table: ProbeTable) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["setting", "variant", "n", *(f"{q}_{s}" for q in QUANTITIES for s in ("median", "ci_low", "ci_high")),
                *(f"{q}_{s}" for q in QUANTITIES for s in ("ratio", "p"))])
    for s in table.settings:
        for g in table.groups:
            cells = table.cells.get((s, g))
            if cells is not None:
                w.writerow([s, g, max(c.n for c in cells.values()),
                            *(_num(getattr(cells[q], a)) for q in QUANTITIES for a in ("median", "low", "high")),
                            *([""] * 2 * len(QUANTITIES))])
    for (s, g), cs in table.contrasts.items():
        w.writerow(["(pooled)" if s is None else s, f"{table.groups[0]} / {g}", max(c.pairs for c in cs.values()),
                    *([""] * 3 * len(QUANTITIES)), *(_num(getattr(cs[q], a)) for q in QUANTITIES for a in ("ratio", "p"))])
    return buf.getvalue()


def _num(v: float | None) -> str:
    return "" if v is None else repr(float(v))
