"""Study statistics and tables, checked against numbers computed independently."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest
from scipy import stats as sps

from cnnlab.studies.stats import compare, holm, summarize
from cnnlab.studies.table import VariantInfo, build_table, to_markdown
from cnnlab.studies.table_full import to_csv_full, to_latex_full, to_markdown_full


def test_summary_mean_std_and_t_interval_by_hand():
    s = summarize([0.90, 0.92, 0.94])
    # By hand: mean 0.92, sample std 0.02, t(0.975, df=2) = 4.302652729911275.
    half = 4.302652729911275 * 0.02 / math.sqrt(3)
    assert s.n == 3 and s.mean == pytest.approx(0.92) and s.std == pytest.approx(0.02)
    assert (s.ci_low, s.ci_high) == pytest.approx((0.92 - half, 0.92 + half))
    # And against scipy's own interval routine.
    lo, hi = sps.t.interval(0.95, 2, loc=0.92, scale=0.02 / math.sqrt(3))
    assert (s.ci_low, s.ci_high) == pytest.approx((lo, hi))


def test_fewer_than_two_values_have_no_spread():
    assert summarize([0.5]) == summarize([0.5, float("nan")])
    one = summarize([0.5])
    assert one.n == 1 and one.mean == 0.5 and one.std is None and one.ci_low is None
    assert summarize([]).n == 0 and summarize([]).mean is None
    assert compare({0: 0.5}, {0: 0.6, 1: 0.7}).p is None  # one run: a difference, no test
    assert compare({0: 0.5}, {0: 0.6, 1: 0.7}).diff == pytest.approx(0.5 - 0.65)


def test_welch_by_hand():
    a = {0: 0.91, 1: 0.93, 2: 0.92, 3: 0.95}
    b = {10: 0.88, 11: 0.90, 12: 0.87}  # different seeds: unpaired
    c = compare(a, b)
    x, y = np.array(list(a.values())), np.array(list(b.values()))
    va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    t = (x.mean() - y.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(x) - 1) + vb**2 / (len(y) - 1))  # Welch-Satterthwaite
    assert c.test == "Welch"
    assert c.diff == pytest.approx(x.mean() - y.mean())
    assert c.p == pytest.approx(2 * sps.t.sf(abs(t), df))
    assert c.p == pytest.approx(sps.ttest_ind(x, y, equal_var=False).pvalue)


def test_paired_when_seeds_match_by_hand():
    a = {(0, None): 0.910, (1, None): 0.925, (2, None): 0.918}
    b = {(0, None): 0.905, (1, None): 0.915, (2, None): 0.916}
    c = compare(a, b)
    d = np.array([a[k] - b[k] for k in sorted(a)])
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    assert c.test == "paired"
    assert c.p == pytest.approx(2 * sps.t.sf(abs(t), len(d) - 1))
    # The same numbers unpaired give a much larger p: pairing removes the per-seed noise.
    assert compare(dict(zip("abc", a.values())), dict(zip("xyz", b.values()))).p > c.p
    # No spread at all: t = 0/0 has no p-value.
    assert compare({0: 0.5, 1: 0.5}, {0: 0.5, 1: 0.5}).p is None


def test_pairs_that_all_differ_by_the_same_amount_have_no_p_value():
    # Two seeds, each one validation image (of 500) apart: the t-test would make float noise "significant".
    base = {0: 0.949, 1: 0.942}
    variant = {0: 0.947, 1: 0.940}
    c = compare(variant, base)
    assert c.test == "paired" and c.p is None and c.diff == pytest.approx(-0.002)
    assert compare({0: 0.95, 1: 0.9}, {0: 0.95, 1: 0.9}).p is None  # identical: nothing to test either
    assert compare({0: 0.947, 1: 0.941}, base).p == pytest.approx(sps.ttest_rel([0.947, 0.941], [0.949, 0.942]).pvalue)


def test_holm_by_hand():
    # Sorted p: 0.01, 0.03, 0.04 with m = 3 -> 0.03, 0.06, max(0.06, 0.04) = 0.06.
    assert holm([0.04, None, 0.01, 0.03]) == pytest.approx([0.06, None, 0.03, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def rows_for(label, values, status="completed", seeds=None):
    seeds = seeds or list(range(len(values)))
    return [{"variant": label, "seed": s, "fold": None, "status": status, "val_acc": v, "val_loss": 1 - v}
            for s, v in zip(seeds, values)]


@pytest.fixture
def ablation_table():
    rows = (rows_for("base", [0.90, 0.91, 0.92])
            + rows_for("model.dropout=0.5", [0.93, 0.94, 0.96])
            + rows_for("optimizer=adam", [0.80])
            + [{"variant": "optimizer=adam", "seed": 1, "fold": None, "status": "diverged"},
               {"variant": "optimizer=adam", "seed": 2, "fold": None, "status": "failed"}]
            + rows_for("model.norm=none", [0.85, 0.86], seeds=[5, 6]))
    infos = [VariantInfo("base", {"axis": "", "value": "base"}, is_base=True),
             VariantInfo("model.dropout=0.5", {"axis": "model.dropout", "value": "0.5"}),
             VariantInfo("optimizer=adam", {"axis": "optimizer", "value": "adam"}),
             VariantInfo("model.norm=none", {"axis": "model.norm", "value": "none"})]
    return build_table(rows, infos, ["val_acc", "val_loss"], ["axis", "value"], "base")


def test_table_numbers(ablation_table):
    t = ablation_table
    assert t.reference == "base" and t.reference_rule == "base"
    drop = t.row("model.dropout=0.5").cells["val_acc"]
    assert drop.summary.mean == pytest.approx(np.mean([0.93, 0.94, 0.96]))
    assert drop.comparison.test == "paired"
    assert drop.comparison.diff == pytest.approx(np.mean([0.93, 0.94, 0.96]) - 0.91)
    assert drop.comparison.p == pytest.approx(sps.ttest_rel([0.93, 0.94, 0.96], [0.90, 0.91, 0.92]).pvalue)
    norm = t.row("model.norm=none").cells["val_acc"]
    assert norm.comparison.test == "Welch"  # seeds 5, 6 do not match the base's 0, 1, 2
    assert norm.comparison.p == pytest.approx(sps.ttest_ind([0.85, 0.86], [0.90, 0.91, 0.92], equal_var=False).pvalue)
    # Holm over the two testable comparisons (adam has one run: no test).
    p = [drop.comparison.p, norm.comparison.p]
    assert [drop.p_holm, norm.p_holm] == pytest.approx(holm(p))
    adam = t.row("optimizer=adam")
    assert adam.n == 1 and adam.counts == {"completed": 1, "diverged": 1, "failed": 1}
    assert adam.cells["val_acc"].comparison.p is None and adam.not_counted() == "1 failed, 1 diverged"
    # Best per column: highest accuracy, lowest loss.
    assert [r.info.label for r in t.rows if r.cells["val_acc"].best] == ["model.dropout=0.5"]
    assert [r.info.label for r in t.rows if r.cells["val_loss"].best] == ["model.dropout=0.5"]


def test_full_table_markdown_csv_latex(ablation_table):
    md = to_markdown_full(ablation_table, "Study t")
    lines = md.splitlines()
    assert lines[0] == "# Study t"
    header = [c.strip() for c in lines[2].strip("|").split("|")]
    assert header[:4] == ["variant", "axis", "value", "n"] and "val_acc (%) mean ± std" in header
    base_line = next(line for line in lines if line.startswith("| base "))
    assert "91.00 ± 1.00" in base_line and "(reference)" in base_line
    drop_line = next(line for line in lines if line.startswith("| model.dropout=0.5 "))
    mean, std = np.mean([0.93, 0.94, 0.96]) * 100, np.std([0.93, 0.94, 0.96], ddof=1) * 100
    assert f"**{mean:.2f} ± {std:.2f}**" in drop_line and "+3.33" in drop_line and "(paired)" in drop_line
    adam_line = next(line for line in lines if line.startswith("| optimizer=adam "))
    assert "80.00 ± n/a" in adam_line and "1 failed, 1 diverged" in adam_line and "| n/a |" in adam_line
    assert all(len(line.split("|")) == len(lines[2].split("|")) for line in lines[2:7])

    rows = list(csv.DictReader(io.StringIO(to_csv_full(ablation_table))))
    # Ranked by the first metric's mean, best first.
    assert [r["variant"] for r in rows] == ["model.dropout=0.5", "base", "model.norm=none", "optimizer=adam"]
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4"]
    assert float(rows[1]["val_acc_mean"]) == pytest.approx(0.91) and rows[1]["reference"] == "True"
    assert float(rows[0]["val_acc_p"]) == pytest.approx(sps.ttest_rel([0.93, 0.94, 0.96], [0.90, 0.91, 0.92]).pvalue)
    assert rows[0]["val_acc_best"] == "True" and rows[3]["val_acc_std"] == "" and rows[3]["diverged"] == "1"

    tex = to_latex_full(ablation_table, "Study t")
    assert r"\begin{tabular}" in tex and r"\toprule" in tex and r"\bottomrule" in tex
    body = [line for line in tex.splitlines() if line.endswith(r"\\")]
    cols = tex.split(r"\begin{tabular}{")[1].split("}")[0]
    assert all(line.count(" & ") == len(cols) - 1 for line in body)
    assert r"model.dropout=0.5 & model.dropout" in tex and r"val\_acc (\%)" in tex
    assert r"\textbf{" + f"{mean:.2f}" + r" $\pm$ " + f"{std:.2f}" + "}" in tex


def test_reference_falls_back_to_the_best_without_a_base():
    rows = rows_for("a", [0.5, 0.6]) + rows_for("b", [0.7, 0.8])
    t = build_table(rows, [VariantInfo("a"), VariantInfo("b")], ["val_acc"], [], "base")
    assert t.reference == "b" and t.reference_rule == "best"
    assert t.row("a").cells["val_acc"].comparison.diff == pytest.approx(-0.2)
    assert "Δ vs best" in to_markdown(t, "x")
