"""The full study table (table_full.md / .csv / .tex): every statistic of every metric, one row per
variant, from the same Table as the compact one (table.py builds it and renders the compact table)."""

from __future__ import annotations

import csv
import io
from typing import Any

from cnnlab.studies.stats import Comparison
from cnnlab.studies.table import (
    Table,
    TableRow,
    ci_text,
    diff_texts,
    markdown_table,
    mean_std_text,
    raw_number,
    reference_phrase,
    scale,
    statistics_phrase,
    tex_escape,
)


def header_cells_full(table: Table) -> list[str]:
    ref = "base" if table.reference_rule == "base" else "best"
    cells = ["variant", *table.columns, "n", *(["seeds"] if table.stein else []), "not counted"]
    for m in table.metrics:
        unit = " (%)" if scale(m)[0] == 100 else ""
        cells += [f"{m}{unit} mean ± std", "95% CI", f"Δ vs {ref}", "p"]
    return cells


def body_cells_full(table: Table, row: TableRow, bold: tuple[str, str] = ("**", "**")) -> list[str]:
    cells = [row.info.label, *(row.info.columns.get(c, "") for c in table.columns), str(row.n),
             *([row.info.seeds or ""] if table.stein else []), row.not_counted()]
    for m in table.metrics:
        cell = row.cells[m]
        text = mean_std_text(m, cell.summary)
        if cell.best:
            text = f"{bold[0]}{text}{bold[1]}"
        cells += [text, ci_text(m, cell.summary), *diff_texts(table, row, m)]
    return cells


def legend_full(table: Table) -> str:
    ref = reference_phrase(table)
    if table.stein:
        phrase = statistics_phrase(table)
        return (f"n: completed runs in the statistics. Mean ± sample std over seeds. {phrase[:1].upper()}{phrase[1:]} "
                "Bold: best mean per column. n/a: fewer than 2 pilot runs (no spread, no test).")
    return (f"n: completed runs in the statistics. Mean ± sample std over seeds/folds; 95% CI of the mean "
            f"(t distribution). Δ: difference of means from {ref}; p: paired t-test when both variants ran "
            "the same seeds/folds, else Welch's t-test; * p < 0.05 after Holm's correction for the number "
            "of variants. Bold: best mean per column. n/a: fewer than 2 runs (no spread, no test).")


def to_markdown_full(table: Table, title: str) -> str:
    """Every statistic of every metric, one row per variant."""
    head = header_cells_full(table)
    return markdown_table(title, head, "|" + "---|" * len(head), [body_cells_full(table, r) for r in table.rows],
                     legend_full(table))


def to_csv_full(table: Table) -> str:
    """Machine-readable: raw numbers (fractions, not percent), one column per statistic."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    head = ["rank", "variant", *table.columns, "n", "failed", "diverged", "pruned", "reference"]
    for m in table.metrics:
        head += [f"{m}_{s}" for s in ("mean", "std", "ci_low", "ci_high", "diff", "p", "p_holm", "test", "best")]
    w.writerow(head)
    for row in table.rows:
        out: list[Any] = [row.rank or "", row.info.label, *(row.info.columns.get(c, "") for c in table.columns), row.n,
                          row.counts.get("failed", 0), row.counts.get("diverged", 0), row.counts.get("pruned", 0),
                          row.info.label == table.reference]
        for m in table.metrics:
            c = row.cells[m]
            cmp = c.comparison or Comparison(None, None, None)
            out += [raw_number(c.summary.mean), raw_number(c.summary.std), raw_number(c.summary.ci_low), raw_number(c.summary.ci_high),
                    raw_number(cmp.diff), raw_number(cmp.p), raw_number(c.p_holm), cmp.test or "", c.best]
        w.writerow(out)
    return buf.getvalue()


def to_latex_full(table: Table, title: str) -> str:
    """The full table as booktabs (\\usepackage{booktabs})."""
    head = [tex_escape(h).replace("±", r"$\pm$").replace("Δ", r"$\Delta$") for h in header_cells_full(table)]
    lines = [f"% {title}", r"\begin{tabular}{" + "l" * (2 + len(table.columns)) + "r" * (len(head) - 2 - len(table.columns)) + "}",
             r"\toprule", " & ".join(head) + r" \\", r"\midrule"]
    for row in table.rows:
        cells = body_cells_full(table, row, bold=("\x00", "\x01"))
        tex = [tex_escape(c).replace("±", r"$\pm$").replace("\x00", r"\textbf{").replace("\x01", "}") for c in cells]
        lines.append(" & ".join(tex) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", "% " + legend_full(table)]
    return "\n".join(lines) + "\n"
