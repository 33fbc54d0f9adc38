"""The study table: one row per variant with n, mean +- std, 95% CI, and the difference from
the reference variant with its p-value; the best value per column marked; runs that failed,
diverged or were pruned counted beside the numbers, never dropped silently.

Rows are ranked by the study metric, best first. Two renderings of the same Table:
the compact one (to_markdown, to_csv, to_latex: the study metric with its CI, difference, p,
n, best epoch and failures, one mean +- std column per other metric) and the full one
(table_full.py: every statistic of every metric). With metric_style "error" the
table's metrics are error names (val_error = 1 - val_acc, val_top5_error = 1 - val_top5):
`value_of` reads them from a results row or a history entry.

With adaptive seeds (adaptive.py) the CIs and p-values are Stein's (stats.stein_summary,
stein_compare: spread from the pilot seeds) and a "seeds" column says how many seeds each
variant runs and why it stopped there.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from cnnlab.studies.spec import epoch_metric
from cnnlab.studies.stats import (
    Comparison,
    Summary,
    compare,
    holm,
    stein_compare,
    stein_summary,
    summarize,
)

ACCURACY_ENDINGS = ("_acc", "_top5")

NOT_COUNTED = ("failed", "diverged", "pruned")
# Runs that trained to their end: all epochs, or until early stopping ended them.
OK = ("completed", "early_stopped")


@dataclass
class VariantInfo:
    """A table row's identity: label, descriptive columns (axis values), whether it is the base."""

    label: str
    columns: dict[str, str] = field(default_factory=dict)
    is_base: bool = False
    seeds: str | None = None  # adaptive seeds: "7: precision ±0.005" (how many, and why it stopped)


@dataclass
class Cell:
    summary: Summary
    comparison: Comparison | None = None
    p_holm: float | None = None
    best: bool = False


@dataclass
class TableRow:
    info: VariantInfo
    counts: dict[str, int]
    cells: dict[str, Cell]
    rank: int | None = None  # 1 = best on the study metric; None: no completed run yet
    best_epoch: float | None = None  # mean over runs of the epoch where the study metric's series was best

    @property
    def n(self) -> int:
        return sum(self.counts.get(s, 0) for s in OK)

    def not_counted(self) -> str:
        """'1 diverged, 2 failed': runs that are in no mean."""
        return ", ".join(f"{self.counts[s]} {s}" for s in NOT_COUNTED if self.counts.get(s))


@dataclass
class Table:
    metrics: list[str]
    columns: list[str]  # descriptive column names
    rows: list[TableRow]
    reference: str | None  # label of the variant every other is compared with
    reference_rule: str  # "base" or "best"
    samples: dict[str, dict[str, dict[Any, float]]] = field(default_factory=dict)  # variant -> metric -> run -> value
    maximize: bool = True  # the direction of metrics[0], the study metric that ranks the rows
    stein: bool = False  # adaptive seeds: CIs and tests are Stein's (spread from the pilot seeds)
    notes: list[str] = field(default_factory=list)  # lines printed under the legend (a learning curve's answer)

    def row(self, label: str) -> TableRow:
        return next(r for r in self.rows if r.info.label == label)

    @property
    def metric(self) -> str:
        return self.metrics[0]


def lower_is_better(metric: str) -> bool:
    return metric.endswith(("_loss", "_error"))


def shown_metric(metric: str, style: str) -> str:
    """The name a metric is shown under: with style "error", val_acc -> val_error (1 - val_acc),
    best_test_top5 -> best_test_top5_error; losses and the "accuracy" style keep their names."""
    if style != "error" or not metric.endswith(ACCURACY_ENDINGS):
        return metric
    return metric[: -len("_acc")] + "_error" if metric.endswith("_acc") else metric + "_error"


def source_metric(metric: str) -> str:
    """The recorded metric behind a shown one (val_error -> val_acc, val_top5_error -> val_top5)."""
    if not metric.endswith("_error"):
        return metric
    stem = metric[: -len("_error")]
    return stem if stem.endswith("_top5") else stem + "_acc"


def value_of(record: dict[str, Any], metric: str) -> float | None:
    """A metric of a results row or history entry, an error computed from its accuracy."""
    value = record.get(source_metric(metric))
    if value is None or metric == source_metric(metric):
        return value
    return 1.0 - value


def metric_label(metric: str) -> str:
    """A column heading: "val error (%)", "best test top-5 acc (%)", "val loss"."""
    words = metric.replace("top5_error", "top-5 error").replace("top5", "top-5 acc").replace("_", " ")
    return f"{words} (%)" if scale(metric)[0] == 100 else words


def build_table(rows: list[dict[str, Any]], variants: list[VariantInfo], metrics: list[str],
                columns: list[str], reference: str = "base", maximize: bool | None = None,
                pilot: set[Any] | None = None) -> Table:
    """Aggregate results rows (one per run) into variant rows; only completed runs enter the numbers.

    metrics[0] is the study metric: rows are ranked by its mean (best first, `maximize` or, by
    default, higher accuracy / lower loss and error; variants without a value keep their order
    at the end), and each row's best epoch is the mean over its runs of the epoch where that
    metric's per-epoch series (the row's history) was best.
    reference: "base" compares with the base variant when there is one, else with the best;
    "best" always compares with the variant whose first metric has the best mean.
    pilot: with adaptive seeds, the (seed, fold) of the pilot runs: CIs and tests become Stein's.
    """
    if maximize is None:
        maximize = not lower_is_better(metrics[0])
    by_variant: dict[str, list[dict[str, Any]]] = {v.label: [] for v in variants}
    for r in rows:
        by_variant.setdefault(r["variant"], []).append(r)
    samples: dict[str, dict[str, dict[Any, float]]] = {}
    table_rows = []
    for v in variants:
        runs = by_variant.get(v.label, [])
        counts: dict[str, int] = {}
        for r in runs:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        ok = [r for r in runs if r["status"] in OK]
        samples[v.label] = {m: {(r.get("seed"), r.get("fold")): value_of(r, m) for r in ok
                                if value_of(r, m) is not None} for m in metrics}
        cells = {m: Cell(summarize(list(samples[v.label][m].values())) if pilot is None
                         else stein_summary(samples[v.label][m], pilot)) for m in metrics}
        epochs = [e for e in (best_epoch(r, metrics[0], maximize) for r in ok) if e is not None]
        table_rows.append(TableRow(v, counts, cells, best_epoch=sum(epochs) / len(epochs) if epochs else None))

    scored = [r for r in table_rows if r.cells[metrics[0]].summary.mean is not None]
    scored.sort(key=lambda r: r.cells[metrics[0]].summary.mean, reverse=maximize)  # stable: ties keep their order
    for rank, r in enumerate(scored, 1):
        r.rank = rank
    table_rows = scored + [r for r in table_rows if r.rank is None]

    ref = _reference(table_rows, metrics[0], reference)
    for m in metrics:
        if ref is not None:
            for r in table_rows:
                if r.info.label != ref:
                    a, b = samples[r.info.label][m], samples[ref][m]
                    r.cells[m].comparison = compare(a, b) if pilot is None else stein_compare(a, b, pilot)
            others = [r for r in table_rows if r.info.label != ref]
            adjusted = holm([r.cells[m].comparison.p for r in others])
            for r, p in zip(others, adjusted):
                r.cells[m].p_holm = p
        means = [r.cells[m].summary.mean for r in table_rows if r.cells[m].summary.mean is not None]
        if means:
            higher = maximize if m == metrics[0] else not lower_is_better(m)
            best = max(means) if higher else min(means)
            for r in table_rows:
                r.cells[m].best = r.cells[m].summary.mean == best
    rule = "base" if ref is not None and any(r.info.is_base and r.info.label == ref for r in table_rows) else "best"
    return Table(metrics, columns, table_rows, ref, rule, samples, maximize, stein=pilot is not None)


def best_epoch(row: dict[str, Any], metric: str, maximize: bool) -> int | None:
    """The epoch whose value of the metric's per-epoch series was best (the first on ties)."""
    series = epoch_metric(metric)  # best_val_error, final_val_error: val_error
    points = [(h["epoch"], value_of(h, series)) for h in row.get("history") or []]
    points = [(e, v) for e, v in points if v is not None]
    if not points:
        recorded = row.get(f"best_{source_metric(series)}_epoch")  # from summary.json's bests
        return recorded if isinstance(recorded, int) else None
    pick = max if maximize else min
    return pick(points, key=lambda p: p[1])[0]


def _reference(rows: list[TableRow], metric: str, rule: str) -> str | None:
    """The base (rule "base", when it has runs), else the best-ranked row (rows come ranked)."""
    if rule == "base":
        base = next((r for r in rows if r.info.is_base and r.n), None)
        if base is not None:
            return base.info.label
    return next((r.info.label for r in rows if r.rank == 1), None)


# ----------------------------------------------------------------------------- formatting


def scale(metric: str) -> tuple[float, str]:
    """Accuracies and errors are shown in percent, losses as they are."""
    return (100.0, ".2f") if metric.endswith((*ACCURACY_ENDINGS, "_error")) else (1.0, ".4f")


def fmt_num(metric: str, value: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    k, f = scale(metric)
    return format(value * k, ("+" if signed else "") + f)


def fmt_p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def mean_std_text(metric: str, s: Summary) -> str:
    if s.mean is None:
        return "n/a"
    if s.std is None:
        return f"{fmt_num(metric, s.mean)} ± n/a"
    return f"{fmt_num(metric, s.mean)} ± {fmt_num(metric, s.std)}"


def ci_text(metric: str, s: Summary) -> str:
    if s.ci_low is None:
        return "n/a"
    return f"[{fmt_num(metric, s.ci_low)}, {fmt_num(metric, s.ci_high)}]"


def diff_texts(table: Table, row: TableRow, metric: str) -> tuple[str, str]:
    """(difference, p-value) cells; '*' marks p < 0.05 after Holm's correction."""
    if row.info.label == table.reference:
        return "(reference)", ""
    c = row.cells[metric].comparison
    if c is None or c.diff is None:
        return "n/a", "n/a"
    star = "*" if row.cells[metric].p_holm is not None and row.cells[metric].p_holm < 0.05 else ""
    test = f" ({c.test})" if c.test else ""
    return fmt_num(metric, c.diff, signed=True), f"{fmt_p(c.p)}{star}{test}"


def tex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                 ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\^{}")):
        s = s.replace(a, b)
    return s


def raw_number(v: float | None) -> str:
    return "" if v is None else repr(float(v))


# ----------------------------------------------------------------------------- the compact table


def _failures(row: TableRow) -> str:
    """'2 diverged', '1 failed, 1 diverged', '0': runs that are in no number (pruned ones too)."""
    return row.not_counted() or "0"


def _epoch(value: float | None) -> str:
    return "n/a" if value is None else f"{round(value, 1):g}"


def _variant(table: Table, row: TableRow) -> str:
    base = row.info.is_base and row.info.label != "base"
    return row.info.label + (" (base)" if base else "")


def _p_holm(table: Table, row: TableRow) -> str:
    """Holm-adjusted p of the study metric, * below 0.05; the test is named when it is Welch's."""
    if row.info.label == table.reference:
        return ""
    cell = row.cells[table.metric]
    if cell.p_holm is None:
        return "n/a"
    star = "*" if cell.p_holm < 0.05 else ""
    welch = " (Welch)" if cell.comparison is not None and cell.comparison.test == "Welch" else ""
    return f"{fmt_p(cell.p_holm)}{star}{welch}"


def header_cells(table: Table) -> list[str]:
    """The compact table's headings: rank, variant, the study metric and its statistics, the others."""
    ref = "base" if table.reference_rule == "base" else "best"
    m = table.metric
    seeds = ["seeds: why stopped"] if table.stein else []
    return ["#", "variant", metric_label(m), "95% CI", f"Δ vs {ref}", "p (Holm)", "n", *seeds, "best epoch", "failures",
            *(metric_label(o) for o in table.metrics[1:])]


def body_cells(table: Table, row: TableRow, bold: tuple[str, str] = ("**", "**")) -> list[str]:
    """One compact row: metrics as mean ± std (the best mean per column in bold)."""
    def shown(m: str) -> str:
        text = mean_std_text(m, row.cells[m].summary)
        return f"{bold[0]}{text}{bold[1]}" if row.cells[m].best else text

    m = table.metric
    diff = diff_texts(table, row, m)[0]
    seeds = [row.info.seeds or ""] if table.stein else []
    return [str(row.rank) if row.rank else "-", _variant(table, row), shown(m), ci_text(m, row.cells[m].summary), diff,
            _p_holm(table, row), str(row.n), *seeds, _epoch(row.best_epoch), _failures(row),
            *(shown(o) for o in table.metrics[1:])]


def reference_phrase(table: Table) -> str:
    """What the differences in both tables' legends are taken from."""
    if table.reference is None:
        return "the reference (none yet: no completed runs)"
    if table.reference_rule == "base":
        return "the base" + (f" ({table.reference})" if table.reference != "base" else "")
    return f"the best variant ({table.reference})"


def statistics_phrase(table: Table) -> str:
    """How the CIs, differences and p-values were computed (both tables' legends)."""
    ref = reference_phrase(table)
    if table.stein:
        return ("adaptive seeds, Stein's two-stage procedure: 95% CI of the mean over the n runs with the spread of "
                f"the pilot seeds (t with pilot - 1 degrees of freedom); Δ: mean paired difference from {ref} over "
                "the seeds both ran; p: Stein's t-test of that difference (spread of the pilot pairs), "
                "Holm-corrected for the number of variants; * p < 0.05. seeds: how many the variant runs and why "
                "it stopped there (the precision reached, or max).")
    return (f"95% CI of the mean (t distribution). Δ: difference of means from {ref}; p: paired t-test when both "
            "variants ran the same seeds/folds, else Welch's, Holm-corrected for the number of variants; * p < 0.05.")


def legend(table: Table) -> str:
    m = metric_label(table.metric)
    errors = [o for o in table.metrics if o != source_metric(o)]
    error_note = f" Errors are 1 - accuracy ({', '.join(errors)})." if errors else ""
    return (f"Ranked by {m}, {'higher' if table.maximize else 'lower'} is better. Metrics: mean ± sample std "
            f"over the n completed runs (seeds/folds); {statistics_phrase(table)} best epoch: mean over runs of the epoch "
            f"where {epoch_metric(table.metric)} was best. failures: runs in no number (failed, diverged, pruned). "
            f"Bold: best mean per column; n/a: too few runs.{error_note} Every statistic of every metric: table_full.md.")


def to_markdown(table: Table, title: str) -> str:
    """The compact table (what the terminal prints and table.md holds)."""
    head = header_cells(table)
    left = {1, head.index("seeds: why stopped")} if table.stein else {1}  # the variant and the seeds' reason
    rule = "|" + "".join("---|" if i in left else "--:|" for i in range(len(head)))  # numbers right-aligned
    notes = "".join(f"\n{line}\n" for line in table.notes)
    return markdown_table(title, head, rule, [body_cells(table, r) for r in table.rows], legend(table)) + notes


def markdown_table(title: str, head: list[str], rule: str, rows: list[list[str]], legend_text: str) -> str:
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", rule]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in rows]
    return "\n".join(lines) + "\n\n" + legend_text + "\n"


def to_csv(table: Table) -> str:
    """The compact table's numbers, raw (fractions, not percent), ranked like the table."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    m = table.metric
    head = ["rank", "variant", *table.columns, "base", "reference", "n", "failures", "pruned",
            *(f"{m}_{s}" for s in ("mean", "std", "ci_low", "ci_high", "diff", "p", "p_holm", "test")), "best_epoch"]
    for o in table.metrics[1:]:
        head += [f"{o}_mean", f"{o}_std"]
    if table.stein:
        head.append("seeds")
    w.writerow(head)
    for row in table.rows:
        c = row.cells[m]
        cmp = c.comparison or Comparison(None, None, None)
        out: list[Any] = [row.rank or "", row.info.label, *(row.info.columns.get(k, "") for k in table.columns),
                          row.info.is_base, row.info.label == table.reference, row.n,
                          row.counts.get("failed", 0) + row.counts.get("diverged", 0), row.counts.get("pruned", 0),
                          raw_number(c.summary.mean), raw_number(c.summary.std), raw_number(c.summary.ci_low), raw_number(c.summary.ci_high),
                          raw_number(cmp.diff), raw_number(cmp.p), raw_number(c.p_holm), cmp.test or "", raw_number(row.best_epoch)]
        for o in table.metrics[1:]:
            out += [raw_number(row.cells[o].summary.mean), raw_number(row.cells[o].summary.std)]
        if table.stein:
            out.append(row.info.seeds or "")
        w.writerow(out)
    return buf.getvalue()


def to_latex(table: Table, title: str) -> str:
    """The compact table as booktabs (\\usepackage{booktabs}) ready to paste into a report."""
    def tex(text: str) -> str:
        return (tex_escape(text).replace("±", r"$\pm$").replace("Δ", r"$\Delta$")
                .replace("\x00", r"\textbf{").replace("\x01", "}"))

    head = [tex(h) for h in header_cells(table)]
    lines = [f"% {title}", r"\begin{tabular}{r" + "l" + "r" * (len(head) - 2) + "}", r"\toprule",
             " & ".join(head) + r" \\", r"\midrule"]
    for row in table.rows:
        lines.append(" & ".join(tex(c) for c in body_cells(table, row, bold=("\x00", "\x01"))) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", "% " + legend(table)]
    return "\n".join(lines) + "\n"
