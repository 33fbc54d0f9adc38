"""examples/ runs as written: the CIFAR write-up's own nn.Module through imports:, a dataset
function over a folder of images with a CSV of labels, a focal-loss file, a CSV-logging
callback, and examples/quickstart.ipynb executed top to bottom in a Jupyter kernel (nbclient +
ipykernel), its outputs checked. Real data: CIFAR-10 JPEGs, Fashion-MNIST."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FASHION, ROOT

EXAMPLES = ROOT / "examples"


def cnnlab(*args: str) -> str:
    """The command, in this process (the examples' files are imported here as a new process would)."""
    import contextlib
    import io

    from cnnlab.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    assert code == 0, err.getvalue()[-3000:]
    return out.getvalue()


def last_line(out: str) -> Path:
    return Path(out.strip().splitlines()[-1])


@pytest.mark.slow
def test_the_cifar_write_ups_own_net_trains_through_imports(cifar_zip_small, tmp_path):
    config = EXAMPLES / "cifar_small_net" / "train.yaml"
    summary = cnnlab("model", "summary", config, "--input", "3x32x32", "--classes", "10")
    assert "285,162 trainable" in summary  # the write-up's count: the same net as the built-in small_vgg preset
    out = cnnlab("train", config, f"data.path={cifar_zip_small}", "train.epochs=2", f"train.out_dir={tmp_path}",
                 "-q")
    run = last_line(out)
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "completed" and s["params"] == 285_162 and s["test_acc"] > 0.12  # 360 images, 2 epochs
    assert json.loads((run / "code.json").read_text())["files"][0]["path"] == str(EXAMPLES / "cifar_small_net" / "nets.py")


@pytest.mark.slow
def test_a_dataset_function_over_a_folder_with_a_csv(cifar_zip_small, tmp_path):
    folder = tmp_path / "cifar_csv"
    subprocess.run([sys.executable, str(EXAMPLES / "folder_with_csv" / "make_sample.py"), str(folder), "--zip",
                    str(cifar_zip_small), "--train", "30", "--test", "10"], check=True, capture_output=True)
    rows = list(csv.DictReader((folder / "labels.csv").open()))
    assert len(rows) == 400 and {r["split"] for r in rows} == {"train", "test"}
    out = cnnlab("train", EXAMPLES / "folder_with_csv" / "train.yaml", f"data.path={folder}", "train.epochs=2",
                 f"train.out_dir={tmp_path / 'runs'}", "-q")
    run = last_line(out)
    info = json.loads((run / "data.json").read_text())
    assert info["sizes"] == {"train": 270, "val": 30, "test": 100}
    assert info["classes"] == sorted({r["label"] for r in rows})  # class names from the CSV
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_the_focal_loss_and_csv_logger_examples(tmp_path):
    out = cnnlab("train", EXAMPLES / "focal_loss" / "train.yaml", f"data.path={FASHION}", "data.limit_train=2000",
                 "data.limit_test=1000", "train.epochs=2", f"train.out_dir={tmp_path}", "-q")
    s = json.loads((last_line(out) / "summary.json").read_text())
    assert s["status"] == "completed" and s["test_acc"] > 0.6  # measured 0.72 (2,000 images, 2 epochs)
    out = cnnlab("train", EXAMPLES / "csv_logger" / "train.yaml", f"data.path={FASHION}", "data.limit_train=1000",
                 "data.limit_test=500", "train.epochs=2", f"train.out_dir={tmp_path}", "-q")
    run = last_line(out)
    log = list(csv.DictReader((run / "log.csv").open()))
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [float(r["train_loss"]) for r in log] == pytest.approx([m["train_loss"] for m in metrics])
    steps = (run / "steps_lr.csv").read_text().splitlines()
    assert len(steps) == 2 * 8 and float(steps[0].split(",")[2]) < float(steps[3].split(",")[2])  # one-cycle warms up


@pytest.mark.slow
def test_the_quickstart_notebook_runs_top_to_bottom(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(EXAMPLES / "quickstart.ipynb", as_version=4)
    os.environ["CNNLAB_QUICKSTART_OUT"] = str(tmp_path / "runs")  # the kernel inherits it
    os.environ["CNNLAB_QUICKSTART_IMAGES"] = "1500"  # a smaller slice than the notebook's 3,000: CI time
    os.environ["CNNLAB_FASHION_MNIST"] = str(FASHION)
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(EXAMPLES)}}).execute()
    finally:
        os.environ.pop("CNNLAB_QUICKSTART_OUT")
        os.environ.pop("CNNLAB_QUICKSTART_IMAGES")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(o.output_type != "error" for c in code for o in c.outputs)
    results = json.loads(code[-1].outputs[-1].text)
    assert results["train_test_acc"] > 0.4 and results["mine_test_acc"] > 0.25  # 1,500 images, 2 epochs (chance: 0.1)
    assert results["evaluate_acc"] == results["train_test_acc"] and results["predictions"] == 8
    assert results["focal_status"] == "completed" and results["study_variants"] == 3
    run_cell = code[1].outputs
    html = next(o.data["text/html"] for o in run_cell if o.output_type == "execute_result")
    assert "cnnlab run" in html and "data:image/png;base64," in html  # the Run shows itself with its curves
    plot = next(o for o in code[3].outputs if "data" in o and "image/png" in o.data)
    assert len(plot.data["image/png"]) > 10_000
    assert (tmp_path / "runs" / "quickstart_dropout" / "table.csv").is_file()
