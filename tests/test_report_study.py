"""`cnnlab report STUDY_DIR` on real studies (MNIST slices): the table is the one `cnnlab study`
wrote, cell for cell; each run's section holds that run's own numbers; a search shows Optuna's
history and importances; a study whose file is gone still gets a report."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import write_config
from report_pages import parse, png_size

from cnnlab.cli import main
from cnnlab.reports.doc import slug

pytestmark = pytest.mark.slow  # end to end: real trainings and studies (the shared fixtures)


def report_of(folder: Path) -> str:
    assert main(["report", str(folder)]) == 0
    return (folder / "report.html").read_text(encoding="utf-8")


def table_md_rows(folder: Path) -> list[list[str]]:
    """table.md's table as cells, bold marks removed (the page sets them in <strong>)."""
    lines = [line for line in (folder / "table.md").read_text().splitlines() if line.startswith("|")]
    return [[c.strip().replace("**", "") for c in line.strip("|").split(" | ")] for i, line in enumerate(lines) if i != 1]


def test_the_table_is_table_md_and_every_run_has_its_own_numbers(report_study):
    page = parse(report_of(report_study))
    assert page.tables["study-table"] == table_md_rows(report_study)
    assert list(page.tables)[0] == "study-table"  # the answer first
    best = page.tables["study-table"][1]
    assert page.text.index(f"Best: {best[1]}, val error (%) {best[2]} (n = {best[6]}, 95% CI {best[3]})") \
        < page.text.index("Method.") < page.text.index("Figures")
    assert "Holm-corrected" in page.text and "paired t-test" in page.text

    results = list(csv.DictReader((report_study / "results.csv").open()))
    for r in results:
        anchor = "run-" + slug(Path(r["run"]).name)
        assert anchor in page.ids, anchor
        summary = json.loads((report_study / r["run"] / "summary.json").read_text())
        shown = {key: (value, text) for key, value, text, heading in page.values if heading == anchor}
        for key in ("val_acc", "test_acc"):
            assert shown[key][0] == summary[key] and shown[key][1] == f"{summary[key] * 100:.2f}%"
    # every variant links to its section, which lists its runs
    for variant in ("base", "model.dropout=0.5"):
        assert f"variant-{slug(variant)}" in page.ids and f"#variant-{slug(variant)}" in page.urls
    assert all(u.startswith(("data:image/png;base64,", "#")) for u in page.urls)
    # the study's figures (but table.png: the table is on the page), the per-variant panels, each run's curves
    study_pngs = [p for p in report_study.glob("*.png") if p.stem != "table"]
    assert len(page.images) == len(study_pngs) + 1 + len(results)
    assert all(min(png_size(src)) > 100 for src in page.images)
    for png in study_pngs:
        assert any(png.name in c for c in page.captions), png.name


def test_a_search_shows_optunas_history_and_importances(mnist_small, tmp_path):
    write_config(tmp_path / "base.yaml", {"format": "idx", "path": str(mnist_small), "limit_train": 160,
                                          "val_fraction": 0.25},
                 model={"name": "cnn", "channels": [4], "norm": "batch"}, train={"epochs": 1, "batch_size": 40})
    spec = {"base": "base.yaml", "out_dir": str(tmp_path / "studies"), "mode": "search", "seeds": [0],
            "search": {"n_trials": 3, "sampler": "random", "pruner": "none",
                       "params": {"optim.lr": {"low": 0.001, "high": 0.2, "log": True}}}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    assert main(["study", str(tmp_path / "s.yaml")]) == 0
    folder = tmp_path / "studies" / "s"
    page = parse(report_of(folder))
    assert page.tables["study-table"] == table_md_rows(folder)
    captions = " ".join(page.captions)
    assert "history.png" in captions and "importance.png" in captions and "Optuna" in captions
    assert len(page.tables["study-table"]) == 1 + 3


def test_a_large_study_embeds_the_best_ranked_curves_and_names_the_rest(report_study, tmp_path, monkeypatch):
    # A 160-cell grid embedded 160 curve figures (14.5 MB); the caps keep the best-ranked ones. Here the
    # caps are lowered to 1 so the fixture's 2 variants x 2 seeds cross them.
    from cnnlab.reports import study as study_report

    monkeypatch.setattr(study_report, "MAX_VARIANT_PANELS", 1)
    monkeypatch.setattr(study_report, "MAX_RUN_FIGURES", 1)
    copy = shutil.copytree(report_study, tmp_path / "large", ignore=shutil.ignore_patterns("report.html"))
    page = parse(report_of(copy))
    study_pngs = [p for p in copy.glob("*.png") if p.stem != "table"]
    assert len(page.images) == len(study_pngs) + 1 + 1
    best = page.tables["study-table"][1][1]
    assert any("for the 1 best-ranked of the 2 variants" in c for c in page.captions)
    results = list(csv.DictReader((copy / "results.csv").open()))
    assert results[0]["variant"] == best  # ranked: the embedded run is the best variant's first
    for r in results[1:]:
        assert f"Curves: {r['run']}/curves.png (not embedded)." in page.text
    assert f"{results[0]['run']}/curves.png (not embedded)" not in page.text


def test_a_study_whose_file_is_gone_still_gets_its_tables_and_runs(report_study, tmp_path):
    copy = shutil.copytree(report_study, tmp_path / "moved")
    meta = json.loads((copy / "study.json").read_text())
    (copy / "study.json").write_text(json.dumps({**meta, "study_file": str(tmp_path / "gone.yaml")}))
    page = parse(report_of(copy))
    assert "cannot be read back" in page.text and "gone.yaml" in page.text
    assert (copy / "table.md").read_text() in page.pre
    for run_dir in (copy / "runs").iterdir():
        assert "run-" + slug(run_dir.name) in page.ids


def test_a_damaged_study_json_is_one_line(report_study, tmp_path, capsys):
    copy = shutil.copytree(report_study, tmp_path / "bad", ignore=shutil.ignore_patterns("runs", "report.html"))
    (copy / "study.json").write_text("{")
    assert main(["report", str(copy)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"cnnlab: error: {copy / 'study.json'}: damaged JSON; "
                                                            "run the study again (`cnnlab study FILE`) to rewrite it"]
    assert not (copy / "report.html").exists()


def test_markdown_study_report(report_study, tmp_path):
    assert main(["report", str(report_study), "--format", "md", "--out", str(tmp_path / "s.md")]) == 0
    md = (tmp_path / "s.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| 1 | "))
    assert [c.strip().replace("**", "") for c in row.strip("|").split(" | ")][2:] == table_md_rows(report_study)[1][2:]
    assert (tmp_path / "s_files" / "curves.png").read_bytes() == (report_study / "curves.png").read_bytes()
