"""Study outputs, rebuilt from the storage after every finished run and written atomically:
results.csv (one row per run), table.md / table.csv / table.tex (one row per variant), figures.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from cnnlab.io import write_text
from cnnlab.lease import stale_reason
from cnnlab.study.execute import KINDS, SPLITS
from cnnlab.study.plan import Plan, Variant, get_key, search_variant
from cnnlab.study.spec import fmt_value
from cnnlab.study.store import Progress, Store, key_of, winners
from cnnlab.study.table import OK, Table, VariantInfo, build_table, to_csv, to_latex, to_markdown

FAILED = ("failed", "diverged")


@dataclass
class Snapshot:
    """Everything the outputs show, read from the storage at one moment."""

    rows: list[dict[str, Any]]
    progress: Progress
    table: Table
    orphans: int  # results of runs no longer in the study file


def axis_columns(plan: Plan, v: Variant) -> dict[str, str]:
    """The run's value on every axis (an ablation variant keeps the base's value on the others)."""
    base = plan.base_cfg.to_dict()
    out = {}
    for axis in plan.study.axes:
        if axis.name in v.levels:
            out[axis.name] = v.levels[axis.name]
        elif axis.is_key:
            out[axis.name] = fmt_value(get_key(base, axis.name))
        else:
            out[axis.name] = "base"
    return out


def snapshot(plan: Plan, store: Store) -> Snapshot:
    """Rows, progress and the variant table as the storage has them now."""
    trials = store.trials()
    won = winners(trials)
    live = {key_of(t) for t in trials if t.state == TrialState.RUNNING
            and stale_reason(t.user_attrs.get("lease"), t.datetime_start) is None} - set(won)
    rows: list[dict[str, Any]] = []
    done = failed = orphans = 0
    if plan.study.mode == "search":
        n_trials = plan.study.spec.search.n_trials
        order = sorted(won.values(), key=lambda t: t.number)[:n_trials]
        variants: list[VariantInfo] = []
        for t in order:
            key = key_of(t)
            v = search_variant(plan.study, key, t.params)
            variants.append(VariantInfo(v.label, dict(v.levels)))
            for r in t.user_attrs["result"]["rows"]:
                rows.append({"variant": v.label, **t.params, **r, "trial": t.number})
            if t.user_attrs["result"]["state"] == "FAIL":
                failed += 1
            else:
                done += 1
        progress = Progress(n_trials, done, failed, min(len(live), max(0, n_trials - done - failed)))
        variants.sort(key=lambda vi: _rank(rows, vi.label, plan))
        table = build_table(rows, variants, plan.study.table_metrics, [p.name for p in plan.study.params], "best")
        return Snapshot(rows, progress, table, 0)

    units = plan.unit_by_key()
    for key, t in won.items():
        unit = units.get(key)
        if unit is None:
            orphans += 1
            continue
        result_rows = t.user_attrs["result"]["rows"]
        if any(r["status"] in FAILED for r in result_rows):
            failed += 1
        else:
            done += 1
        for r in result_rows:
            rows.append({"variant": unit.variant.label, **axis_columns(plan, unit.variant), **r,
                         "seed": unit.seed, "fold": unit.fold, "trial": t.number})
    position = {u.key: i for i, u in enumerate(plan.units)}
    rows.sort(key=lambda r: position.get(r["key"], len(position)))
    progress = Progress(len(units), done, failed, len(live & set(units)))
    if plan.study.mode == "ablation":
        infos = [VariantInfo(v.label, {"axis": v.axis or "", "value": v.levels.get(v.axis, "") if v.axis else "base"},
                             v.is_base) for v in plan.variants]
        columns = ["axis", "value"]
    else:
        infos = [VariantInfo(v.label, dict(v.levels), v.is_base) for v in plan.variants]
        columns = [a.name for a in plan.study.axes]
    table = build_table(rows, infos, plan.study.table_metrics, columns, "base")
    return Snapshot(rows, progress, table, orphans)


def _rank(rows: list[dict[str, Any]], label: str, plan: Plan) -> float:
    """Sort key for search trials: best mean first, trials without a value last."""
    metric = plan.study.spec.metric
    vals = [r[metric] for r in rows if r["variant"] == label and r["status"] in OK and r.get(metric) is not None]
    if not vals:
        return float("inf")
    mean = sum(vals) / len(vals)
    return mean if plan.study.direction == "minimize" else -mean


def result_columns(plan: Plan, rows: list[dict[str, Any]]) -> list[str]:
    """results.csv's columns: what was varied, the run's identity and status, then its numbers."""
    varied = [p.name for p in plan.study.params] if plan.study.mode == "search" else [a.name for a in plan.study.axes]
    lead = ["variant", *varied, "seed", "fold", "status", "reason"]
    present = {k for r in rows for k in r}
    metrics = []
    for prefix in ("", "final_", "best_"):
        for split in SPLITS:
            for kind in KINDS:
                name = f"{prefix}{split}_{kind}"
                if name in present:
                    metrics.append(name)
                    if prefix == "best_":
                        metrics.append(f"{name}_epoch")
    tail = ["epochs", "best_epoch", "params", "wall_seconds", "threads", "run", "key", "trial", "host"]
    return lead + metrics + tail


def results_csv(plan: Plan, rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=result_columns(plan, rows), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return buf.getvalue()


def title(plan: Plan, snap: Snapshot) -> str:
    s = plan.study
    what = {"ablation": "ablation", "grid": "grid", "search": f"{s.spec.search.sampler if s.spec.search else ''} search"}[s.mode]
    folds = f", {s.spec.cv}-fold CV" if s.spec.cv else ""
    return f"Study {s.name} ({what}, seeds {plan.seeds}{folds}): {snap.progress.line()}"


class Writer:
    """Writes the study outputs; figures at most every `figure_every` seconds until the end."""

    def __init__(self, plan: Plan, store: Store, folder: Path, figure_every: float = 60.0):
        self.plan, self.store, self.folder = plan, store, folder
        self.figure_every = figure_every
        self._last_figures = time.monotonic()

    def __call__(self, final: bool = False) -> Snapshot:
        snap = snapshot(self.plan, self.store)
        f = self.folder
        write_text(f / "results.csv", results_csv(self.plan, snap.rows))
        heading = title(self.plan, snap)
        write_text(f / "table.md", to_markdown(snap.table, heading))
        write_text(f / "table.csv", to_csv(snap.table))
        write_text(f / "table.tex", to_latex(snap.table, heading))
        if final or time.monotonic() - self._last_figures >= self.figure_every:
            from cnnlab.study.figures import (
                draw_all,  # here, not at the top: --status draws nothing (matplotlib)
            )

            draw_all(self.plan, snap.rows, snap.table, f, self.store.study if self.plan.study.mode == "search" else None)
            self._last_figures = time.monotonic()
        return snap
