"""The study table: one row per variant with n, mean +- std, 95% CI, and the difference from
the reference variant with its p-value; the best value per column marked; runs that failed,
diverged or were pruned counted beside the numbers, never dropped silently.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from cnnlab.study.stats import Comparison, Summary, compare, holm, summarize

NOT_COUNTED = ("failed", "diverged", "pruned")
# Runs that trained to their end: all epochs, or until early stopping ended them.
OK = ("completed", "early_stopped")


@dataclass
class VariantInfo:
    """A table row's identity: label, descriptive columns (axis values), whether it is the base."""

    label: str
    columns: dict[str, str] = field(default_factory=dict)
    is_base: bool = False


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

    def row(self, label: str) -> TableRow:
        return next(r for r in self.rows if r.info.label == label)


def lower_is_better(metric: str) -> bool:
    return metric.endswith("_loss")


def build_table(rows: list[dict[str, Any]], variants: list[VariantInfo], metrics: list[str],
                columns: list[str], reference: str = "base") -> Table:
    """Aggregate results rows (one per run) into variant rows; only completed runs enter the numbers.

    reference: "base" compares with the base variant when there is one, else with the best;
    "best" always compares with the variant whose first metric has the best mean.
    """
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
        samples[v.label] = {m: {(r.get("seed"), r.get("fold")): r[m] for r in ok if r.get(m) is not None}
                            for m in metrics}
        cells = {m: Cell(summarize(list(samples[v.label][m].values()))) for m in metrics}
        table_rows.append(TableRow(v, counts, cells))

    ref = _reference(table_rows, metrics[0], reference)
    for m in metrics:
        if ref is not None:
            for r in table_rows:
                if r.info.label != ref:
                    r.cells[m].comparison = compare(samples[r.info.label][m], samples[ref][m])
            others = [r for r in table_rows if r.info.label != ref]
            adjusted = holm([r.cells[m].comparison.p for r in others])
            for r, p in zip(others, adjusted):
                r.cells[m].p_holm = p
        means = [r.cells[m].summary.mean for r in table_rows if r.cells[m].summary.mean is not None]
        if means:
            best = min(means) if lower_is_better(m) else max(means)
            for r in table_rows:
                r.cells[m].best = r.cells[m].summary.mean == best
    rule = "base" if ref is not None and any(r.info.is_base and r.info.label == ref for r in table_rows) else "best"
    return Table(metrics, columns, table_rows, ref, rule, samples)


def _reference(rows: list[TableRow], metric: str, rule: str) -> str | None:
    if rule == "base":
        base = next((r for r in rows if r.info.is_base and r.n), None)
        if base is not None:
            return base.info.label
    scored = [r for r in rows if r.cells[metric].summary.mean is not None]
    if not scored:
        return None
    pick = min if lower_is_better(metric) else max
    return pick(scored, key=lambda r: r.cells[metric].summary.mean).info.label


# ----------------------------------------------------------------------------- formatting


def scale(metric: str) -> tuple[float, str]:
    """Accuracies are shown in percent, losses as they are."""
    return (100.0, ".2f") if metric.endswith(("_acc", "_top5")) else (1.0, ".4f")


def fmt_num(metric: str, value: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    k, f = scale(metric)
    return format(value * k, ("+" if signed else "") + f)


def fmt_p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _mean_std(metric: str, s: Summary) -> str:
    if s.mean is None:
        return "n/a"
    if s.std is None:
        return f"{fmt_num(metric, s.mean)} ± n/a"
    return f"{fmt_num(metric, s.mean)} ± {fmt_num(metric, s.std)}"


def _ci(metric: str, s: Summary) -> str:
    if s.ci_low is None:
        return "n/a"
    return f"[{fmt_num(metric, s.ci_low)}, {fmt_num(metric, s.ci_high)}]"


def _diff(table: Table, row: TableRow, metric: str) -> tuple[str, str]:
    """(difference, p-value) cells; '*' marks p < 0.05 after Holm's correction."""
    if row.info.label == table.reference:
        return "(reference)", ""
    c = row.cells[metric].comparison
    if c is None or c.diff is None:
        return "n/a", "n/a"
    star = "*" if row.cells[metric].p_holm is not None and row.cells[metric].p_holm < 0.05 else ""
    test = f" ({c.test})" if c.test else ""
    return fmt_num(metric, c.diff, signed=True), f"{fmt_p(c.p)}{star}{test}"


def header_cells(table: Table) -> list[str]:
    ref = "base" if table.reference_rule == "base" else "best"
    cells = ["variant", *table.columns, "n", "not counted"]
    for m in table.metrics:
        unit = " (%)" if scale(m)[0] == 100 else ""
        cells += [f"{m}{unit} mean ± std", "95% CI", f"Δ vs {ref}", "p"]
    return cells


def body_cells(table: Table, row: TableRow, bold: tuple[str, str] = ("**", "**")) -> list[str]:
    cells = [row.info.label, *(row.info.columns.get(c, "") for c in table.columns), str(row.n), row.not_counted()]
    for m in table.metrics:
        cell = row.cells[m]
        text = _mean_std(m, cell.summary)
        if cell.best:
            text = f"{bold[0]}{text}{bold[1]}"
        cells += [text, _ci(m, cell.summary), *_diff(table, row, m)]
    return cells


def legend(table: Table) -> str:
    if table.reference is None:
        ref = "the reference (none yet: no completed runs)"
    elif table.reference_rule == "base":
        ref = "the base" + (f" ({table.reference})" if table.reference != "base" else "")
    else:
        ref = f"the best variant ({table.reference})"
    return (f"n: completed runs in the statistics. Mean ± sample std over seeds/folds; 95% CI of the mean "
            f"(t distribution). Δ: difference of means from {ref}; p: paired t-test when both variants ran "
            "the same seeds/folds, else Welch's t-test; * p < 0.05 after Holm's correction for the number "
            "of variants. Bold: best mean per column. n/a: fewer than 2 runs (no spread, no test).")


def to_markdown(table: Table, title: str) -> str:
    head = header_cells(table)
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table.rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in body_cells(table, row)) + " |")
    return "\n".join(lines) + "\n\n" + legend(table) + "\n"


def to_csv(table: Table) -> str:
    """Machine-readable: raw numbers (fractions, not percent), one column per statistic."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    head = ["variant", *table.columns, "n", "failed", "diverged", "pruned", "reference"]
    for m in table.metrics:
        head += [f"{m}_{s}" for s in ("mean", "std", "ci_low", "ci_high", "diff", "p", "p_holm", "test", "best")]
    w.writerow(head)
    for row in table.rows:
        out: list[Any] = [row.info.label, *(row.info.columns.get(c, "") for c in table.columns), row.n,
                          row.counts.get("failed", 0), row.counts.get("diverged", 0), row.counts.get("pruned", 0),
                          row.info.label == table.reference]
        for m in table.metrics:
            c = row.cells[m]
            cmp = c.comparison or Comparison(None, None, None)
            out += [_raw(c.summary.mean), _raw(c.summary.std), _raw(c.summary.ci_low), _raw(c.summary.ci_high),
                    _raw(cmp.diff), _raw(cmp.p), _raw(c.p_holm), cmp.test or "", c.best]
        w.writerow(out)
    return buf.getvalue()


def _raw(v: float | None) -> str:
    return "" if v is None else repr(float(v))


def _tex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                 ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\^{}")):
        s = s.replace(a, b)
    return s


def to_latex(table: Table, title: str) -> str:
    """A booktabs table (\\usepackage{booktabs}) ready to paste into a report."""
    head = [_tex_escape(h).replace("±", r"$\pm$").replace("Δ", r"$\Delta$") for h in header_cells(table)]
    lines = [f"% {title}", r"\begin{tabular}{" + "l" * (2 + len(table.columns)) + "r" * (len(head) - 2 - len(table.columns)) + "}",
             r"\toprule", " & ".join(head) + r" \\", r"\midrule"]
    for row in table.rows:
        cells = body_cells(table, row, bold=("\x00", "\x01"))
        tex = [_tex_escape(c).replace("±", r"$\pm$").replace("\x00", r"\textbf{").replace("\x01", "}") for c in cells]
        lines.append(" & ".join(tex) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", "% " + legend(table)]
    return "\n".join(lines) + "\n"
