"""The compact study table, metric_style error, ranking, table.png and the per-split curves, on a
real tiny ablation (the MNIST slice of test_study_run): every number checked against the runs'
own summary.json and metrics.jsonl, read here by hand."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats as sps
from test_study_run import PNG, base, read_csv, run, write_study  # noqa: F401  (base: the fixture)

from cnnlab.studies import figures
from cnnlab.studies.launch import study_status
from cnnlab.studies.stats import holm
from cnnlab.studies.table import to_markdown

pytestmark = pytest.mark.slow

VARIANTS = ("base", "model.dropout=0.5", "optimizer=adam")
ERROR_STUDY = {
    "mode": "ablation",
    "seeds": [0, 1],
    "overrides": {"train.epochs": 2},  # two epochs: the best epoch can be either
    "axes": {
        "model.dropout": [0.0, 0.5],
        "optimizer": {"adam": {"optim.name": "adam", "optim.lr": 0.01}},
        "diverge": {"huge_lr": {"model.norm": "none", "model.activation": "tanh", "optim.lr": 1.0e38}},
    },
    "table": {"metrics": ["test_acc", "val_top5", "val_loss"], "metric_style": "error"},
}


@pytest.fixture
def error_study(tmp_path, base, capsys):  # noqa: F811
    path = write_study(tmp_path, file="err", **ERROR_STUDY)
    code, out, err = run(capsys, "study", path)
    assert code == 0, err
    return path, tmp_path / "studies" / "err", out


def by_hand(folder: Path, rows: list[dict[str, str]]) -> dict[str, dict[str, np.ndarray]]:
    """Per variant, over its completed runs in seed order: errors from summary.json and the epoch
    of the lowest val error in metrics.jsonl (the first such epoch on ties)."""
    out: dict[str, dict[str, list[float]]] = {}
    for r in sorted(rows, key=lambda r: int(r["seed"])):
        if r["status"] != "completed":
            continue
        summary = json.loads((folder / r["run"] / "summary.json").read_text())
        history = [json.loads(line) for line in (folder / r["run"] / "metrics.jsonl").read_text().splitlines()]
        errors = [1 - h["val_acc"] for h in history]
        v = out.setdefault(r["variant"], {})
        v.setdefault("val_error", []).append(1 - summary["val_acc"])
        v.setdefault("test_error", []).append(1 - summary["test_acc"])
        v.setdefault("val_top5_error", []).append(1 - summary["val_top5"])
        selected = next(h for h in history if h["epoch"] == summary["best_epoch"])  # the epoch val_acc is taken at
        v.setdefault("val_loss", []).append(selected["val_loss"])
        v.setdefault("best_epoch", []).append(history[errors.index(min(errors))]["epoch"])
    return {k: {m: np.array(x) for m, x in v.items()} for k, v in out.items()}


def test_compact_error_table_ranked_from_the_runs_own_files(error_study):
    path, folder, out = error_study
    rows = read_csv(folder / "results.csv")
    hand = by_hand(folder, rows)
    assert sorted(hand) == sorted(VARIANTS)
    table = read_csv(folder / "table.csv")

    # Ranked by val error, lowest first; the diverged variant (no number) last, unranked.
    ranked = sorted(VARIANTS, key=lambda v: hand[v]["val_error"].mean())
    assert [r["variant"] for r in table] == [*ranked, "diverge=huge_lr"]
    assert [r["rank"] for r in table] == ["1", "2", "3", ""]
    # results.csv: the same order, each variant's runs by seed; its numbers stay accuracies.
    assert [(r["variant"], r["seed"], r["rank"]) for r in rows] == [
        (r["variant"], s, r["rank"]) for r in table for s in ("0", "1")]
    assert "val_acc" in rows[0] and "val_error" not in rows[0]

    t = {r["variant"]: r for r in table}
    for v in VARIANTS:
        got, want = t[v], hand[v]
        assert got["n"] == "2" and got["failures"] == "0"
        for m in ("val_error", "test_error", "val_top5_error", "val_loss"):
            assert float(got[f"{m}_mean"]) == pytest.approx(want[m].mean(), abs=1e-12)
            assert float(got[f"{m}_std"]) == pytest.approx(want[m].std(ddof=1), abs=1e-12)
        lo, hi = sps.t.interval(0.95, 1, loc=want["val_error"].mean(), scale=want["val_error"].std(ddof=1) / np.sqrt(2))
        assert (float(got["val_error_ci_low"]), float(got["val_error_ci_high"])) == pytest.approx((lo, hi))
        assert float(got["best_epoch"]) == pytest.approx(want["best_epoch"].mean())
    # Δ of errors against the base: the sign of an error difference (worse = positive).
    others = [v for v in ranked if v != "base"]
    p = [sps.ttest_rel(hand[v]["val_error"], hand["base"]["val_error"]).pvalue for v in others]
    for v, p_raw, p_holm in zip(others, p, holm(p)):
        diff = hand[v]["val_error"].mean() - hand["base"]["val_error"].mean()
        acc_diff = np.mean([1 - e for e in hand[v]["val_error"]]) - np.mean([1 - e for e in hand["base"]["val_error"]])
        assert float(t[v]["val_error_diff"]) == pytest.approx(diff) == pytest.approx(-acc_diff)
        if t[v]["val_error_p"]:  # empty only when both seeds differ by exactly the same amount
            assert float(t[v]["val_error_p"]) == pytest.approx(p_raw)
            assert float(t[v]["val_error_p_holm"]) == pytest.approx(p_holm)
        assert t[v]["val_error_test"] == "paired"
    assert t["base"]["reference"] == t["base"]["base"] == "True" and t["base"]["val_error_diff"] == ""
    assert (t["diverge=huge_lr"]["n"], t["diverge=huge_lr"]["failures"]) == ("0", "2")

    # table.md: what the terminal printed, one compact row per variant.
    md = (folder / "table.md").read_text()
    assert md in out
    lines = md.splitlines()
    header = [c.strip() for c in lines[2].strip("|").split("|")]
    assert header == ["#", "variant", "val error (%)", "95% CI", "Δ vs base", "p (Holm)", "n", "best epoch", "failures",
                      "test error (%)", "val top-5 error (%)", "val loss"]
    body = [[c.strip() for c in line.strip("|").split("|")] for line in lines[4:8]]
    assert [b[1] for b in body] == [*ranked, "diverge=huge_lr"]
    for b in body[:3]:
        want = hand[b[1]]
        mean, std = want["val_error"].mean() * 100, want["val_error"].std(ddof=1) * 100
        assert b[2].strip("*") == f"{mean:.2f} ± {std:.2f}"
        assert b[9].strip("*") == f"{want['test_error'].mean() * 100:.2f} ± {want['test_error'].std(ddof=1) * 100:.2f}"
        assert b[4] == ("(reference)" if b[1] == "base" else
                        f"{(want['val_error'].mean() - hand['base']['val_error'].mean()) * 100:+.2f}")
    assert body[0][2].startswith("**")  # the best mean in bold
    assert body[3][6:9] == ["0", "n/a", "2 diverged"]
    assert "Ranked by val error (%), lower is better" in md and "Errors are 1 - accuracy" in md

    # The full table of every statistic is still there, in the same ranked order and the same style.
    full = read_csv(folder / "table_full.csv")
    assert [r["variant"] for r in full] == [r["variant"] for r in table]
    assert "val_error_ci_low" in full[0] and "test_error_diff" in full[0] and "val_acc_mean" not in full[0]
    assert "| n | not counted |" in (folder / "table_full.md").read_text()
    assert r"\toprule" in (folder / "table.tex").read_text() and r"\toprule" in (folder / "table_full.tex").read_text()


def test_table_png_and_per_split_curves(error_study, tmp_path, monkeypatch):
    path, folder, _ = error_study
    png = folder / "table.png"
    assert png.read_bytes()[:8] == PNG and png.stat().st_size > 10_000
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > 800 and 200 < im.height < 1500
        pixels = np.asarray(im.convert("RGB"), dtype=float)
    assert pixels.std() > 20  # not blank
    green = np.array([int(figures.TABLE_COLORS["best"][i:i + 2], 16) for i in (1, 3, 5)])
    assert (np.abs(pixels - green).sum(axis=2) < 6).mean() > 0.02  # the best row is highlighted

    # The figure grows with the rows.
    _, snap = study_status(path, [], None)
    short = copy.copy(snap.table)
    short.rows = snap.table.rows[:1]
    with Image.open(figures.table_figure(short, "one row", tmp_path)) as im:
        one_row_height = im.height
    with Image.open(png) as im:
        assert im.height > one_row_height + 100

    # Past figures.PNG_ROWS variants: the best rows and the base's, ranked last here; table.md has them all.
    rows = [r for r in snap.table.rows if not r.info.is_base]
    base_row = next(r for r in snap.table.rows if r.info.is_base)
    many = copy.copy(snap.table)
    many.rows = [dataclasses.replace(rows[i % len(rows)], rank=i + 1,
                                     info=dataclasses.replace(rows[i % len(rows)].info, label=f"variant {i + 1}"))
                 for i in range(40)] + [dataclasses.replace(base_row, rank=41)]
    with Image.open(figures.table_figure(many, "41 variants", tmp_path)) as im:
        capped = np.asarray(im.convert("RGB"), dtype=float)
    monkeypatch.setattr(figures, "PNG_ROWS", 100)
    with Image.open(figures.table_figure(many, "41 variants", tmp_path)) as im:
        every_row = im.height
    monkeypatch.undo()
    row_px = (every_row - one_row_height) / 40  # 40 more rows than the one-row table
    assert abs((every_row - capped.shape[0]) / row_px - 10) < 1.5  # 31 of 41 rows: 10 fewer
    blue = np.array([int(figures.TABLE_COLORS["base"][i:i + 2], 16) for i in (1, 3, 5)])
    assert (np.abs(capped - blue).sum(axis=2) < 6).mean() > 0.005  # the base's row is there, past the 30

    # curves.png: one panel per split the runs logged, errors in percent, base dashed.
    drawn = []
    save = figures.save_figure
    monkeypatch.setattr(figures, "save_figure", lambda fig, p, **kw: (drawn.append(fig), save(fig, p, **kw)))
    opened, snap = study_status(path, [], None)
    assert figures.curves(opened.plan, snap.rows, snap.table, tmp_path) == tmp_path / "curves.png"
    axes = drawn[-1].axes
    assert [ax.get_ylabel() for ax in axes] == ["train error (%)", "val error (%)", "test error (%)"]
    assert "bands: ± 1 std" in drawn[-1].get_suptitle()
    val = axes[1]
    for line in val.get_lines():  # each line is the mean over seeds of 100 * (1 - val_acc) per epoch
        label = line.get_label().rsplit(" (n=", 1)[0]
        hists = [r["history"] for r in snap.rows if r["variant"] == label and r["status"] == "completed"]
        want = [100 * np.mean([1 - h[e]["val_acc"] for h in hists]) for e in range(2)]
        assert list(line.get_ydata()) == pytest.approx(want)
        assert line.get_linestyle() == ("--" if label == "base" else "-")
    assert {line.get_label().rsplit(" (n=", 1)[0] for line in val.get_lines()} == set(VARIANTS)
    # Runs that logged no test split per epoch: two panels.
    no_test = [{**r, "history": [{k: v for k, v in h.items() if not k.startswith("test_")} for h in r["history"]]}
               for r in snap.rows]
    figures.curves(opened.plan, no_test, snap.table, tmp_path)
    assert [ax.get_ylabel() for ax in drawn[-1].axes] == ["train error (%)", "val error (%)"]


def test_accuracy_style_and_the_list_form(tmp_path, base, capsys):  # noqa: F811
    # The old list form: accuracies stay accuracies, the study metric leads, the listed ones follow.
    path = write_study(tmp_path, file="acc", mode="grid", axes={"model.dropout": [0.0, 0.5]}, table=["test_acc", "val_loss"])
    code, out, err = run(capsys, "study", path)
    assert code == 0, err
    folder = tmp_path / "studies" / "acc"
    header = [c.strip() for c in (folder / "table.md").read_text().splitlines()[2].strip("|").split("|")]
    assert header[2] == "val acc (%)" and header[-2:] == ["test acc (%)", "val loss"]
    table = read_csv(folder / "table.csv")
    means = [float(r["val_acc_mean"]) for r in table]
    assert means == sorted(means, reverse=True)  # higher accuracy first
    rows = read_csv(folder / "results.csv")
    for r in table:
        accs = [float(x["val_acc"]) for x in rows if x["variant"] == r["variant"]]
        assert float(r["val_acc_mean"]) == pytest.approx(np.mean(accs))
    _, snap = study_status(path, [], None)
    assert to_markdown(snap.table, "x").count("\n| ") == 3  # header and two variants


@pytest.mark.parametrize("table, words", [
    ({"metric_style": "errors"}, ["table.metric_style", "did you mean 'error'", "got 'errors'"]),
    ({"metric_style": "percent"}, ["table.metric_style: use error (shows 1 - accuracy) or accuracy"]),
    ({"metric_styl": "error"}, ["table.metric_styl: unknown key", "did you mean 'table.metric_style'"]),
    ({"metrics": ["val_accuracy"]}, ["'val_accuracy' is not a run metric"]),
    ("error", ["table: give a list of metrics"]),
])
def test_bad_table_options_are_one_line(tmp_path, base, capsys, table, words):  # noqa: F811
    path = write_study(tmp_path, file="bad", mode="grid", axes={"model.dropout": [0.1]}, table=table)
    code, _, err = run(capsys, "study", path)
    assert code == 2 and err.count("\n") == 1, err
    for w in words:
        assert w in err
    assert not (tmp_path / "studies").exists()
