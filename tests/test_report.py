"""`cnnlab report RUN_DIR` and `cnnlab compare` on real runs (MNIST slices): every number on the
page checked against the run's own files, the Markdown variant, and bad input."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from conftest import write_config
from report_pages import parse, png_size, summary_value

from cnnlab.cli import main
from cnnlab.lease import new_lease

pytestmark = pytest.mark.slow  # end to end: real trainings and studies (the shared fixtures)


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def report(report_run) -> tuple[Path, str]:
    """The run's report, written once by the command (with the confusion matrix computed)."""
    for stale in report_run.glob("eval-*.json"):
        stale.unlink()
    assert main(["report", str(report_run)]) == 0
    path = report_run / "report.html"
    return path, path.read_text(encoding="utf-8")


def test_headline_numbers_equal_summary_json_and_come_first(report_run, report):
    path, text = report
    page = parse(text)
    summary = json.loads((report_run / "summary.json").read_text())
    values = {key: (value, shown) for key, value, shown, _ in page.values}
    for key in ("val_acc", "test_acc", "1-test_acc", "best.val_acc.value", "best.test_acc.value", "best_val_error",
                "best_test_error", "final.test_acc", "1-final.val_acc", "test_top5"):
        assert key in values, key
    for key, (value, shown) in values.items():
        expected = summary_value(summary, key)
        assert value == pytest.approx(expected, abs=1e-12), key
        assert shown == f"{expected * 100:.2f}%", key
    # The answer is the first thing after the title: the lead line, then the headline table.
    lead = f"Test accuracy {summary['test_acc'] * 100:.2f}% (error {(1 - summary['test_acc']) * 100:.2f}%) " \
           f"at epoch {summary['best_epoch']}"
    assert page.text.index(lead) < page.text.index("selected checkpoint") < page.text.index("Reproduce")
    assert list(page.tables)[0] == "headline"
    order = [page.ids.index(a) for a in ("headline", "reproduce", "data", "model", "curves", "evaluation", "analyses",
                                         "environment")]
    assert order == sorted(order)


def test_one_self_contained_file(report_run, report):
    path, text = report
    page = parse(text)
    assert "default-src 'none'" in page.csp and "img-src data:" in page.csp
    assert all(u.startswith(("data:image/png;base64,", "#")) for u in page.urls), [u[:60] for u in page.urls]
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:|//)", text) and "@import" not in text and "url(" not in text
    figures = [png_size(src) for src in page.images]
    analysis_pngs = sorted(report_run.glob("analysis/*/*.png"))
    # samples, curves, lr, confusion matrix, reliability diagram, and every analysis figure
    assert len(figures) == 5 + len(analysis_pngs) and all(w > 100 and h > 100 for w, h in figures)
    assert path.stat().st_size < 2_000_000


def test_sections_hold_the_runs_own_files(report_run, report):
    _, text = report
    page = parse(text)
    summary = json.loads((report_run / "summary.json").read_text())
    info = json.loads((report_run / "data.json").read_text())
    # reproduce: the command and config.yaml as written (folded; opened for printing)
    assert f"cnnlab train {(report_run / 'config.yaml').resolve()}" in page.text
    assert (report_run / "config.yaml").read_text() in page.pre
    assert "<details><summary>Resolved config (config.yaml)</summary>" in text
    # data: the per-class counts training recorded
    counts = next(t for t in page.tables.values() if t[0][:2] == ["class", "label"])
    assert [r[0] for r in counts[1:-1]] == info["classes"]
    for j, split in enumerate(info["class_counts"], start=2):
        assert [int(r[j].replace(",", "")) for r in counts[1:-1]] == info["class_counts"][split]
        assert int(counts[-1][j].replace(",", "")) == info["sizes"][split]
    # model: the parameter count training reported
    assert ["parameters", f"{summary['params']:,}"] in [r for t in page.tables.values() for r in t]
    # evaluation: computed because evaluate had not run; the per-class table is its confusion matrix
    ev = json.loads((report_run / "eval-test-best.json").read_text())
    assert ev["epoch"] == summary["best_epoch"]
    per_class = next(t for t in page.tables.values() if t[0][:3] == ["class", "images", "correct"])
    assert len(per_class) == 1 + len(ev["confusion"])
    for i, (row, (name, acc), conf) in enumerate(zip(per_class[1:], ev["per_class_acc"].items(), ev["confusion"])):
        assert row[:4] == [name, f"{sum(conf):,}", f"{conf[i]:,}", f"{acc * 100:.2f}%"]
    assert f"accuracy {ev['acc'] * 100:.2f}%" in page.text
    # analyses: each with its findings, every figure captioned
    for what in ("kernels", "errors"):
        assert f"analysis-{what}" in page.ids
        findings = json.loads((report_run / "analysis" / what / "report.json").read_text())["findings"]
        assert findings and all(html.unescape(f) in page.text or f in page.text for f in findings)
        for png in (report_run / "analysis" / what).glob("*.png"):
            assert any(png.name in c for c in page.captions), png.name
    # environment: versions and device as recorded
    for name, version in summary["versions"].items():
        assert [name, version] in page.tables[list(page.tables)[-1]]
    assert f"tensorboard --logdir {report_run / 'tb'}" in page.text


def test_markdown_has_the_pngs_beside_it(report_run, tmp_path, capsys):
    code, out, err = run(capsys, "report", report_run, "--format", "md", "--out", tmp_path / "write-up.md")
    assert code == 0, err
    md = (tmp_path / "write-up.md").read_text()
    assert out.strip().splitlines()[-1] == str(tmp_path / "write-up.md")
    linked = re.findall(r"!\[[^\]]*\]\((write-up_files/[^)]+)\)", md)
    assert sorted(linked) == sorted(f"write-up_files/{p.name}" for p in (tmp_path / "write-up_files").iterdir())
    assert (tmp_path / "write-up_files" / "curves.png").read_bytes() == (report_run / "curves.png").read_bytes()
    summary = json.loads((report_run / "summary.json").read_text())
    assert f"| test accuracy | {summary['test_acc'] * 100:.2f}% |" in md


def test_compare_shows_only_differing_keys_and_each_runs_numbers(report_run, mnist_small, tmp_path, capsys):
    cfg = write_config(tmp_path / "other.yaml", {"format": "idx", "path": str(mnist_small), "limit_train": 400,
                                                 "val_fraction": 0.25},
                       model={"name": "cnn", "channels": [4, 8], "norm": "batch"}, optim={"lr": 0.02},
                       train={"epochs": 1, "batch_size": 50})
    code, out, err = run(capsys, "train", cfg, "-q")
    assert code == 0, err
    other = Path(out.strip().splitlines()[-1])
    code, out, err = run(capsys, "compare", report_run, other, "--out", tmp_path / "cmp.html")
    assert code == 0, err
    page = parse((tmp_path / "cmp.html").read_text())
    diff = page.tables["table-1"]
    assert [r[0] for r in diff[1:]] == ["optim.lr", "train.epochs", "train.out_dir", "train.tensorboard"]
    assert diff[1][1:] == ["0.05", "0.02"]
    metrics = page.tables["compare"]
    for col, run_dir in enumerate((report_run, other), start=1):
        s = json.loads((run_dir / "summary.json").read_text())
        row = next(r for r in metrics if r[0] == "test accuracy (selected epoch)")
        assert row[col] == f"{s['test_acc'] * 100:.2f}%"
    assert len(page.images) == 1 and png_size(page.images[0])[0] > 500


def test_not_a_run_nor_a_study_is_one_line(tmp_path, capsys):
    (tmp_path / "stuff").mkdir()
    code, out, err = run(capsys, "report", tmp_path / "stuff")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "neither a run directory" in err and "Traceback" not in err
    assert list((tmp_path / "stuff").iterdir()) == []
    code, _, err = run(capsys, "compare", tmp_path / "stuff", tmp_path)
    assert code == 2 and "not a run directory" in err
    assert not (Path.cwd() / "compare.html").exists()


def test_damaged_summary_is_one_line_and_writes_nothing(report_run, tmp_path, capsys):
    copy = shutil.copytree(report_run, tmp_path / "run", ignore=shutil.ignore_patterns("report.html", "tb", "*.pt"))
    (copy / "report.html").write_text("the previous report")
    (copy / "summary.json").write_text('{"status": "completed", "val_acc": 0.8')  # cut off mid-write
    code, out, err = run(capsys, "report", copy)
    assert code == 2 and err.strip().splitlines() == [f"cnnlab: error: {copy / 'summary.json'}: damaged JSON"]
    assert (copy / "report.html").read_text() == "the previous report"
    assert not [p for p in copy.iterdir() if p.name.startswith(".report")]  # no temporary left behind
    code, _, err = run(capsys, "report", report_run, "--out", tmp_path)  # a folder as the output file
    assert code == 2 and "is a folder" in err


def test_a_run_in_progress_says_so_at_the_top(report_run, tmp_path, capsys):
    copy = shutil.copytree(report_run, tmp_path / "live", ignore=shutil.ignore_patterns("report.html", "eval-*",
                                                                                        "confusion-*", "tb"))
    summary = json.loads((copy / "summary.json").read_text())
    (copy / "summary.json").write_text(json.dumps({**summary, "status": "running", "epochs": 1}))
    (copy / "lock.json").write_text(json.dumps(new_lease()))  # held by this (live) process
    code, out, err = run(capsys, "report", copy)
    assert code == 0, err
    page = parse((copy / "report.html").read_text())
    top = page.text[page.text.index(copy.name):]
    assert top.index("In progress") < top.index("selected checkpoint")
    assert f"1 of {summary['epochs_planned']} epochs done, pid {os.getpid()}" in page.text
    assert not list(copy.glob("eval-*.json"))  # nothing computed from a checkpoint that is still changing
    # The same folder once its process is gone: died, and how to continue it.
    (copy / "lock.json").write_text(json.dumps({**new_lease(), "pid": 2**22 + 12345}))
    assert run(capsys, "report", copy)[0] == 0
    text = parse((copy / "report.html").read_text()).text
    assert "process died" in text and f"cnnlab resume {copy}" in text
