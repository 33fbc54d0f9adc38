"""`cnnlab report STUDY_DIR`: a study's report, answer first.

Top: progress (a study still running says so), the winning variant and the compact table
exactly as `cnnlab study` prints it (cnnlab/studies/table.py renders the cells; nothing is
recomputed here), with the statistical method in two sentences. Then the study's figures
(a search's Optuna history and importances among them), per-variant curves, one section per
variant linking to its runs, and one section per run with its numbers and curves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnlab.reports import figures
from cnnlab.reports.doc import (
    Code,
    Doc,
    Figure,
    Items,
    Link,
    Mono,
    Notice,
    Strong,
    Table,
    Text,
    Toc,
    Value,
    duration,
    percent,
    slug,
)
from cnnlab.reports.images import read_png
from cnnlab.rundir import Run
from cnnlab.studies.saved import SavedStudy, read_study
from cnnlab.studies.spec import epoch_metric
from cnnlab.studies.table import Table as StudyTable
from cnnlab.studies.table import (
    body_cells,
    header_cells,
    legend,
    metric_label,
    scale,
    shown_metric,
    value_of,
)

# A 160-cell grid embedded every run's curves (14.5 MB, 40 rows of panels): past these caps the
# report shows the best-ranked ones and names where the others are, so it stays a file one can mail.
MAX_VARIANT_PANELS = 24
MAX_RUN_FIGURES = 24
BOLD = ("\x00", "\x01")  # body_cells' bold markers, turned into <strong>
ORDER = ("curves", "bar-", "heatmap", "scatter3d", "history", "importance")
CAPTIONS = {
    "curves": "Per-epoch curves of the best variants and the base, one panel per split: the mean over seeds/folds, "
              "the band +/- 1 sample std.",
    "bar-": "One axis: each level's mean with its 95% confidence interval as the error bar (n above each bar).",
    "heatmap": "Two axes: the mean study metric of every cell, with its std and n.",
    "scatter3d": "The first three axes in 3-D; the best cells enlarged and labelled.",
    "history": "Optuna's optimisation history: every trial's value and the best so far.",
    "importance": "Optuna's hyperparameter importances (fANOVA): how much of the variation of the study metric "
                  "each searched parameter explains.",
    "probe-loss": "Landscape probe (Santurkar et al. 2018, figure 4a): the loss band along the gradient over the "
                  "probe's step sizes and the settings, per group; median over seeds, bootstrap 95% band.",
    "probe-grad-change": "Landscape probe (figure 4b): gradient predictiveness, the change of the gradient along "
                         "the step, one panel per setting.",
    "probe-beta": "Landscape probe (figure 4c): effective beta-smoothness, one panel per setting.",
}


def build(folder: Path) -> Doc:
    r = read_study(folder)
    doc = Doc(f"Study {r.name}", subtitle=_subtitle(r))
    notices(doc, r)
    if r.snap is not None:
        answer(doc, r)
        table(doc, r.snap.table)
    else:
        md = r.table_md()
        doc.add(Code(md) if md else Text("No table has been written yet."))
    doc.add(Toc())
    study_figures(doc, r)
    variant_curves(doc, r)
    variants(doc, r)
    runs(doc, r)
    return doc


def _subtitle(r: SavedStudy) -> str:
    m = r.meta
    parts = [str(m.get("mode", "")), f"seeds {m.get('seeds')}", f"metric {m.get('metric')} ({m.get('direction')})"]
    if m.get("cv"):
        parts.append(f"{m['cv']}-fold CV")
    if r.snap is not None:
        parts.append(r.snap.progress.line())
    return " · ".join(p for p in parts if p) + f" · {r.folder.resolve()}"


def notices(doc: Doc, r: SavedStudy) -> None:
    if r.problem is not None:
        doc.add(Notice(["The study's results cannot be read back (", r.problem, "): the table below is table.md as ",
                        "the study last wrote it, and the runs are listed from the folder."], "bad"))
        return
    p = r.snap.progress
    if p.running or p.left:
        doc.add(Notice([f"In progress: {p.line()}. The numbers are those of the runs finished so far; run ",
                        Mono(f"cnnlab report {r.folder}"), " again when the study has finished."]))
    if r.snap.orphans:
        doc.add(Notice(f"{r.snap.orphans} finished runs belong to an earlier version of the study file and are "
                       "not in the table.", "info"))


def answer(doc: Doc, r: SavedStudy) -> None:
    t = r.snap.table
    top = next((row for row in t.rows if row.rank == 1), None)
    if top is None:
        doc.add(Text("No run has completed yet: no numbers."))
        return
    cells = dict(zip(header_cells(t), [c.replace(BOLD[0], "").replace(BOLD[1], "") for c in body_cells(t, top, BOLD)]))
    m = metric_label(t.metric)
    line: list[Any] = ["Best: ", Strong(top.info.label), f", {m} ", Strong(cells[m]), f" (n = {top.n}, 95% CI {cells['95% CI']})"]
    if top.info.label != t.reference:
        ref = [h for h in cells if h.startswith("Δ vs")][0]
        line.append(f"; {ref} {cells[ref]}, p (Holm) {cells['p (Holm)']}")
    doc.add(Text(line + ["."], lead=True))


def table(doc: Doc, t: StudyTable) -> None:
    """The compact table: the cells body_cells renders for table.md, bold as <strong>."""
    rows, kinds = [], []
    for row in t.rows:
        cells: list[Any] = [_bold(c) for c in body_cells(t, row, BOLD)]
        cells[1] = Link(cells[1] if isinstance(cells[1], str) else row.info.label, f"#{variant_anchor(row.info.label)}")
        rows.append(cells)
        kinds.append("best" if row.rank == 1 else "base" if row.info.is_base or row.info.label == t.reference
                     else "bad" if row.rank is None else "")
    doc.add(Table(header_cells(t), rows, align="rl" + "r" * (len(header_cells(t)) - 2), row_class=kinds,
                  id="study-table", note=legend(t)))
    ref = "the base" if t.reference_rule == "base" else "the best variant"
    doc.add(Text([Strong("Method. "), "Each number is the mean ± sample standard deviation over a variant's completed "
                  "runs (seeds or folds), with the 95% confidence interval of the mean from the t distribution. ",
                  f"Δ is the difference of means from {ref}, and its p-value comes from a paired t-test on runs that "
                  "share seeds/folds (else Welch's t-test), Holm-corrected for the number of variants compared, so "
                  "* (p < 0.05) holds for the table as a whole."]))


def _bold(cell: str) -> Any:
    if BOLD[0] in cell:
        before, _, rest = cell.partition(BOLD[0])
        inner, _, after = rest.partition(BOLD[1])
        return [before, Strong(inner), after] if before or after else Strong(inner)
    return cell


def variant_anchor(label: str) -> str:
    return "variant-" + slug(label)


def run_anchor(name: str) -> str:
    return "run-" + slug(name)


def study_figures(doc: Doc, r: SavedStudy) -> None:
    pngs = sorted(r.folder.glob("*.png"), key=lambda p: (next((i for i, o in enumerate(ORDER) if p.stem.startswith(o)),
                                                               len(ORDER)), p.name))
    pngs = [p for p in pngs if p.stem != "table"]  # table.png draws the table above
    if not pngs:
        return
    doc.section("Figures", "figures")
    for path in pngs:
        png = read_png(path)
        if png is not None:
            about = next((c for o, c in CAPTIONS.items() if path.stem.startswith(o)), "")
            doc.add(Figure(png, path.name, [about + " (", Mono(path.name), ")"]))
    from cnnlab.studies.probe_figures import TABLE_MD as PROBE_TABLE

    if (r.folder / PROBE_TABLE).is_file():  # the landscape probe's numbers beside its figures
        doc.add(Code((r.folder / PROBE_TABLE).read_text(encoding="utf-8"), summary=f"{PROBE_TABLE}: the landscape "
                     "probe's medians per variant, their CIs, the BN / no-BN ratios and paired p"))


def variant_curves(doc: Doc, r: SavedStudy) -> None:
    """Each variant's runs in a panel of its own: the study metric's per-epoch series, a thin line per run."""
    if r.snap is None:
        return
    style = r.plan.study.metric_style
    series = shown_metric(epoch_metric(r.plan.study.spec.metric), style)
    k = scale(series)[0]
    by_variant: dict[str, list[list[tuple[int, float]]]] = {row.info.label: [] for row in r.snap.table.rows}
    for row in r.snap.rows:
        pts = [(h["epoch"], value_of(h, series) * k) for h in row.get("history") or [] if value_of(h, series) is not None]
        by_variant.setdefault(row["variant"], []).append(pts)
    ranked = {label: runs for label, runs in by_variant.items() if any(runs)}
    shown = dict(list(ranked.items())[:MAX_VARIANT_PANELS])
    png = figures.variant_panels(shown, metric_label(series))
    if png is not None:
        doc.section("Per-variant curves", "variant-curves")
        which = ("every variant" if len(shown) == len(ranked)
                 else f"the {len(shown)} best-ranked of the {len(ranked)} variants (the others: their runs below)")
        doc.add(Figure(png, "variants.png", f"{metric_label(series)} per epoch for {which}, ranked as in the "
                                            "table: a thin line per run (seed/fold), the bold line their mean."))


def variants(doc: Doc, r: SavedStudy) -> None:
    if r.snap is None:
        return
    doc.section("Variants", "variants")
    search = r.plan.study.mode == "search"
    overrides = {v.label: v.overrides for v in r.plan.variants}
    t = r.snap.table
    for row in t.rows:
        doc.section(row.info.label, variant_anchor(row.info.label), level=3)
        keys = row.info.columns if search else overrides.get(row.info.label) or {}  # the base sets nothing
        what = ", ".join(f"{k}={v}" for k, v in keys.items()) if keys else "the base config"
        doc.add(Text([f"Rank {row.rank or '-'}; {what}; {row.n} completed"
                      + (f", {row.not_counted()}" if row.not_counted() else "") + " runs."]))
        items = [[Link(run_name(x), f"#{run_anchor(run_name(x))}"), f": {_run_line(x, t)}"]
                 for x in r.snap.rows if x["variant"] == row.info.label]
        if items:
            doc.add(Items(items))


def run_name(row: dict[str, Any]) -> str:
    return Path(str(row.get("run") or f"seed {row.get('seed')}")).name


def _run_line(row: dict[str, Any], t: StudyTable) -> str:
    parts = [f"seed {row.get('seed')}" + (f", fold {row['fold']}" if row.get("fold") is not None else ""), str(row["status"])]
    value = value_of(row, t.metric)
    if value is not None:
        parts.append(f"{metric_label(t.metric)} {value * scale(t.metric)[0]:{scale(t.metric)[1]}}")
    return "; ".join(parts)


def runs(doc: Doc, r: SavedStudy) -> None:
    if r.snap is not None:
        entries = [(run_name(x), r.folder / str(x["run"]) if x.get("run") else None, x) for x in r.snap.rows]
    else:
        folder = r.folder / "runs"
        entries = [(p.name, p, {}) for p in sorted(folder.iterdir()) if p.is_dir()] if folder.is_dir() else []
    if not entries:
        return
    doc.section("Runs", "runs")
    if len(entries) > MAX_RUN_FIGURES:
        doc.add(Text([f"{len(entries)} runs, best-ranked first; the curves of the first {MAX_RUN_FIGURES} are shown, "
                      "the others' are named (their curves.png in the study folder)."]))
    for i, (name, path, row) in enumerate(entries):
        doc.section(name, run_anchor(name), level=3)
        if row.get("variant"):
            doc.add(Text(["Variant ", Link(row["variant"], f"#{variant_anchor(row['variant'])}"),
                          f", seed {row.get('seed')}" + (f", fold {row['fold']}" if row.get("fold") is not None else "")]))
        run_section(doc, path, row, curves=i < MAX_RUN_FIGURES, study=r.folder)


def run_section(doc: Doc, path: Path | None, row: dict[str, Any], curves: bool = True,
                study: Path | None = None) -> None:
    """A study run's own numbers (from its summary.json) and curves (embedded, or named when `curves` is off)."""
    summary = Run(path).summary_or_none() if path is not None and path.is_dir() else None
    if summary is None:
        reason = row.get("reason") or "no run directory (it failed before training)"
        doc.add(Notice(f"{row.get('status', 'no summary')}: {reason}", "bad"))
        return
    s = summary
    cells = [s.get("status", "?"), *(_acc_cell(s, k) for k in ("val_acc", "test_acc")), str(s.get("best_epoch")),
             f"{s.get('epochs')}/{s.get('epochs_planned')}", duration(s.get("wall_seconds"))]
    doc.add(Table(["status", "val accuracy", "test accuracy", "best epoch", "epochs", "training time"], [cells],
                  align="lrrrrr"))
    if s.get("status") not in ("completed", "early_stopped") and s.get("reason"):
        doc.add(Notice(str(s["reason"]), "bad" if s.get("status") in ("failed", "diverged") else "warn"))
    if not curves:
        where = Run(path).curves_png
        if where.is_file():
            shown = where.relative_to(study) if study is not None and where.is_relative_to(study) else where
            doc.add(Text(["Curves: ", Mono(str(shown)), " (not embedded)."]))
        return
    png = read_png(Run(path).curves_png)
    if png is not None:
        doc.add(Figure(png, f"{path.name}.png", f"{path.name}: training loss per step, accuracy per epoch (its curves.png)."))


def _acc_cell(summary: dict[str, Any], key: str) -> Any:
    v = summary.get(key)
    return Value(percent(v), key, v) if isinstance(v, (int, float)) else "n/a"
