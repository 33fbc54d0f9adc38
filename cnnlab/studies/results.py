"""Study outputs, rebuilt from the storage after every finished run and written atomically:
results.csv (one row per run), table.md / table.csv / table.tex (the compact table, one row
per variant), table_full.md / table_full.csv / table_full.tex (every statistic of every
metric), figures (table.png among them), and for runs trained with train.probe the landscape
probe's figures and probe_table.md / .csv (probe_figures.py); for a learning curve,
learning_curve.md / .csv / .json and learning_curve.png (learning_curve.py). Tables and
results.csv are ranked by the study metric.
"""

from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from cnnlab.io import write_json, write_text
from cnnlab.lease import stale_reason
from cnnlab.studies.adaptive import (
    outlier_notes,
    pilot_seeds,
    results_by_key,
    stop_notes,
    wanted_units,
)
from cnnlab.studies.execute import KINDS, SPLITS
from cnnlab.studies.plan import Plan, Variant, get_key, search_variant
from cnnlab.studies.spec import fmt_value
from cnnlab.studies.store import Progress, Store, key_of, winners
from cnnlab.studies.table import (
    Table,
    VariantInfo,
    build_table,
    shown_metric,
    source_metric,
    to_csv,
    to_latex,
    to_markdown,
)
from cnnlab.studies.table_full import to_csv_full, to_latex_full, to_markdown_full

FAILED = ("failed", "diverged")
# The study folder's own files (its run directories' files are rundir.py's).
RESULTS, TABLE_MD, TABLE_CSV, TABLE_TEX = "results.csv", "table.md", "table.csv", "table.tex"
TABLE_FULL_MD, TABLE_FULL_CSV, TABLE_FULL_TEX = "table_full.md", "table_full.csv", "table_full.tex"
CURVE_MD, CURVE_CSV, CURVE_JSON = "learning_curve.md", "learning_curve.csv", "learning_curve.json"


@dataclass
class Snapshot:
    """Everything the outputs show, read from the storage at one moment."""

    rows: list[dict[str, Any]]
    progress: Progress
    table: Table
    orphans: int  # results of runs no longer in the study file
    curve: Any = None  # learning_curve.LearningCurve: the points, fits and answers of a learning curve


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


def table_metrics(plan: Plan) -> tuple[list[str], bool]:
    """The table's metrics as shown (val_error with metric_style error) and whether the first,
    the study metric, is maximized (an accuracy maximized is an error minimized)."""
    s = plan.study
    shown = [shown_metric(m, s.metric_style) for m in s.table_metrics]
    flipped = source_metric(shown[0]) != shown[0]
    return shown, (s.direction == "maximize") != flipped


def _ranked(rows: list[dict[str, Any]], table: Table) -> list[dict[str, Any]]:
    """Runs in the order of their variant's rank, then by seed and fold; each row gets its rank."""
    position = {r.info.label: i for i, r in enumerate(table.rows)}
    ranks = {r.info.label: r.rank for r in table.rows}
    for r in rows:
        r["rank"] = ranks.get(r["variant"])

    def order(r: dict[str, Any]) -> tuple[int, int, int]:
        return position.get(r["variant"], len(position)), r.get("seed") or 0, -1 if r.get("fold") is None else r["fold"]

    return sorted(rows, key=order)


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
        metrics, maximize = table_metrics(plan)
        table = build_table(rows, variants, metrics, [p.name for p in plan.study.params], "best", maximize)
        return Snapshot(_ranked(rows, table), progress, table, 0)

    units = plan.unit_by_key()
    rule = plan.study.seed_rule
    results = results_by_key(trials) if rule is not None else {}
    wanted = {u.key for u in wanted_units(plan, results)} if rule is not None else set(units)
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
    progress = Progress(len(wanted), done, failed, len(live & wanted))
    notes = stop_notes(plan, results) if rule is not None else {}
    if plan.study.mode == "ablation":
        infos = [VariantInfo(v.label, {"axis": v.axis or "", "value": v.levels.get(v.axis, "") if v.axis else "base"},
                             v.is_base, notes.get(v.label)) for v in plan.variants]
        columns = ["axis", "value"]
    else:
        infos = [VariantInfo(v.label, dict(v.levels), v.is_base, notes.get(v.label)) for v in plan.variants]
        columns = [a.name for a in plan.study.axes] + (["size"] if plan.study.mode == "learning_curve" else [])
    metrics, maximize = table_metrics(plan)
    pilot = {(s, None) for s in pilot_seeds(plan)} if rule is not None else None
    table = build_table(rows, infos, metrics, columns, "base", maximize, pilot)
    if rule is not None:
        table.notes += outlier_notes(plan, results)
    curve = None
    if plan.study.mode == "learning_curve":
        from cnnlab.studies.learning_curve import (
            analyse,  # scipy.optimize: only for learning curves
        )

        curve = analyse(plan, rows, pilot)
        table.notes = curve.answers() + table.notes
    return Snapshot(_ranked(rows, table), progress, table, orphans, curve)


def result_columns(plan: Plan, rows: list[dict[str, Any]]) -> list[str]:
    """results.csv's columns: the variant's rank, what was varied, the run's identity and status, then
    its numbers (as recorded: accuracies, whatever the table's metric_style)."""
    varied = [p.name for p in plan.study.params] if plan.study.mode == "search" else [a.name for a in plan.study.axes]
    lead = ["rank", "variant", *varied, "seed", "fold", "status", "reason"]
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
    what = {"ablation": "ablation", "grid": "grid", "learning_curve": f"learning curve over {len(s.sizes)} sizes",
            "search": f"{s.spec.search.sampler if s.spec.search else ''} search"}[s.mode]
    folds = f", {s.spec.cv}-fold CV" if s.spec.cv else ""
    rule = s.seed_rule
    seeds = (f"adaptive seeds {plan.seeds[0]}.. ({rule.min} to {rule.max}, 95% CI ±{rule.precision:g})" if rule
             else f"seeds {plan.seeds}")
    return f"Study {s.name} ({what}, {seeds}{folds}): {snap.progress.line()}"


FIGURES_EVERY_S = 300.0  # the study's figures while it runs: at most this often
TABLES_EVERY_S = 10.0  # the tables while it runs: after a run, unless this process wrote them less than this ago


class Writer:
    """Writes the study outputs: the tables after a run (at most every `tables_every` seconds: read
    from the storage and written again after each of a grid's 1-second runs, they cost a tenth of
    its time), the figures at most every `figure_every` seconds (a 160-variant table.png took
    seconds to draw: drawn every minute by every worker it was a fifth of a grid of small runs'
    time), everything at the end (bench/RESULTS.md, "Study overhead"). flush() writes the tables a
    run left unwritten: for a worker that stops early."""

    def __init__(self, plan: Plan, store: Store, folder: Path, figure_every: float = FIGURES_EVERY_S,
                 tables_every: float = TABLES_EVERY_S):
        self.plan, self.store, self.folder = plan, store, folder
        self.figure_every, self.tables_every = figure_every, tables_every
        self._last_figures = time.monotonic()
        self._last_tables = -math.inf
        self.pending = False  # a result arrived that the tables do not show yet

    def flush(self) -> None:
        if self.pending:
            self(force=True)

    def __call__(self, final: bool = False, force: bool = False, processes: int = 1) -> Snapshot | None:
        """The tables (and figures when due, or all at the end: `final`); None when skipped as too soon.
        `processes`: how many may draw the figures (figures.draw_all)."""
        if not (final or force) and time.monotonic() - self._last_tables < self.tables_every:
            self.pending = True
            return None
        self._last_tables, self.pending = time.monotonic(), False
        snap = snapshot(self.plan, self.store)
        f = self.folder
        write_text(f / RESULTS, results_csv(self.plan, snap.rows))
        heading = title(self.plan, snap)
        write_text(f / TABLE_MD, to_markdown(snap.table, heading))
        write_text(f / TABLE_CSV, to_csv(snap.table))
        write_text(f / TABLE_TEX, to_latex(snap.table, heading))
        write_text(f / TABLE_FULL_MD, to_markdown_full(snap.table, heading))
        write_text(f / TABLE_FULL_CSV, to_csv_full(snap.table))
        write_text(f / TABLE_FULL_TEX, to_latex_full(snap.table, heading))
        if snap.curve is not None:
            write_text(f / CURVE_MD, snap.curve.to_markdown(heading))
            write_text(f / CURVE_CSV, snap.curve.to_csv())
            write_json(f / CURVE_JSON, snap.curve.to_json())
        if final or time.monotonic() - self._last_figures >= self.figure_every:
            # here, not at the top: --status draws nothing (matplotlib)
            from cnnlab.studies.figures import draw_all
            from cnnlab.studies.probe_figures import draw_probe

            draw_all(self.plan, snap.rows, snap.table, f, self.store.study if self.plan.study.mode == "search" else None,
                     title=heading, processes=processes)
            draw_probe(self.plan, snap.rows, f)  # runs with train.probe: figures and table of probe.csv
            if snap.curve is not None:
                from cnnlab.studies.learning_curve_figure import draw_curve

                draw_curve(snap.curve, f, title=heading)
            self._last_figures = time.monotonic()
        return snap
