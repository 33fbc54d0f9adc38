"""Calibration wherever a model is scored: ECE (15 equal-width bins), NLL and Brier per epoch and in
`cnnlab evaluate`; `cnnlab calibrate` fits a temperature on the validation split, and evaluate,
predict, export and the report apply it; study tables rank by ECE like any metric."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import write_config

from cnnlab.cli import main
from cnnlab.training.metrics import BINS, Calibration


def reference_measures(logits: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """ECE, NLL and Brier written out plainly, the textbook way."""
    z = logits - logits.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    nll = float(-np.log(p[np.arange(len(y)), y]).mean())
    brier = float(((p - np.eye(p.shape[1])[y]) ** 2).sum(1).mean())
    conf, hit = p.max(1), p.argmax(1) == y
    ece = 0.0
    for lo, hi in zip(np.linspace(0, 1, BINS + 1)[:-1], np.linspace(0, 1, BINS + 1)[1:]):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            ece += inside.mean() * abs(hit[inside].mean() - conf[inside].mean())
    return ece, nll, brier


def test_the_measures_match_their_definitions_over_batches(rng):
    logits = rng.normal(0, 3, (777, 10))
    y = rng.integers(0, 10, 777)
    calib = Calibration(torch.device("cpu"))
    for part in np.array_split(np.arange(777), 5):  # batches of different sizes
        calib.add(torch.from_numpy(logits[part]).float(), torch.from_numpy(y[part]))
    r = calib.result()
    ece, nll, brier = reference_measures(logits.astype(np.float32).astype(np.float64), y)
    assert r["ece"] == pytest.approx(ece, abs=1e-9) and r["nll"] == pytest.approx(nll, rel=1e-9)
    assert r["brier"] == pytest.approx(brier, rel=1e-9)
    assert sum(r["bins"]["images"]) == 777 and len(r["bins"]["images"]) == BINS


def test_a_certain_and_right_model_has_zero_ece_and_a_confident_wrong_one_nearly_one():
    y = torch.arange(6) % 3
    right = torch.nn.functional.one_hot(y, 3).float() * 100
    c = Calibration(torch.device("cpu"))
    c.add(right, y)
    assert c.result()["ece"] == pytest.approx(0.0, abs=1e-12)
    assert c.result()["bins"]["images"][-1] == 6  # confidence 1 lands in the last bin
    wrong = Calibration(torch.device("cpu"))
    wrong.add(right, (y + 1) % 3)
    assert wrong.result()["ece"] == pytest.approx(1.0, abs=1e-9) and wrong.result()["brier"] == pytest.approx(2.0)


@pytest.fixture(scope="module")
def run(tmp_path_factory, mnist_small):
    """A small CNN, 3 epochs on 600 real MNIST images (150 for validation, 300 test): over-confident enough
    that a temperature matters."""
    folder = tmp_path_factory.mktemp("calibration")
    cfg = write_config(folder / "c.yaml", {"format": "idx", "path": str(mnist_small), "limit_train": 600,
                                           "val_fraction": 0.25},
                       model={"name": "cnn", "channels": [8, 16], "norm": "batch"},
                       optim={"name": "adam", "lr": 0.01}, train={"epochs": 3, "batch_size": 50})
    assert main(["train", str(cfg), "-q"]) == 0
    return next((folder / "runs").iterdir())


def test_every_epoch_logs_the_ece_of_each_split_and_the_summary_keeps_its_best(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(0.0 <= r["val_ece"] <= 1.0 and 0.0 <= r["test_ece"] <= 1.0 for r in rows)
    best = json.loads((run / "summary.json").read_text())["best"]["val_ece"]
    assert best["value"] == min(r["val_ece"] for r in rows)


def test_calibrate_fits_on_val_and_evaluate_predict_export_and_report_apply_it(run, capsys, tmp_path):
    from cnnlab import Run

    assert main(["evaluate", str(run), "--split", "test"]) == 0
    before = json.loads((run / "eval-test-best.json").read_text())
    assert before["temperature"] == 1.0 and before["uncalibrated"] is None and before["ece_binning"] == "equal-width"
    assert "ECE" in capsys.readouterr().out and (run / "reliability-test-best.png").is_file()
    probs_before = Run(run).predict(np.zeros((3, 28, 28), np.uint8))

    assert main(["calibrate", str(run)]) == 0
    out = capsys.readouterr().out
    stored = json.loads((run / "calibration.json").read_text())["best"]
    t = stored["temperature"]
    assert stored["split"] == "val" and stored["images"] == 150 and t > 0 and abs(t - 1) > 0.01
    assert stored["after"]["nll"] <= stored["before"]["nll"] - 1e-6  # the fit lowers the val NLL
    assert f"temperature {t:.4g}" in out and (run / "reliability-val-best.png").is_file()

    # The temperature is the minimiser of the val NLL: nudging it either way does worse.
    opened_logits = _val_logits(run)
    nll = lambda temp: float(torch.nn.functional.cross_entropy(opened_logits[0] / temp, opened_logits[1]))
    assert nll(t) <= min(nll(t * 1.05), nll(t / 1.05))

    assert main(["evaluate", str(run), "--split", "test"]) == 0
    after = json.loads((run / "eval-test-best.json").read_text())
    assert after["temperature"] == pytest.approx(t) and after["acc"] == before["acc"]  # argmax unchanged
    assert after["uncalibrated"]["ece"] == pytest.approx(before["ece"]) and after["nll"] != before["nll"]

    probs_after = Run(run).predict(np.zeros((3, 28, 28), np.uint8))
    assert list(probs_after["label"]) == list(probs_before["label"])
    p0, p1 = probs_before["probability"].to_numpy(), probs_after["probability"].to_numpy()
    assert (p1 < p0).all() if t > 1 else (p1 > p0).all()  # a softer (or sharper) top probability

    assert main(["export", str(run), "--format", "onnx"]) == 0
    sidecar = json.loads(next((run / "export").glob("*.json")).read_text())
    assert sidecar["folded_in"]["temperature"] == pytest.approx(t) and sidecar["parity"]["agree"] > 0

    report = tmp_path / "r.md"
    assert main(["report", str(run), "--format", "md", "--out", str(report)]) == 0
    text = report.read_text()
    assert "Calibration" in text and "before (T = 1)" in text and f"after (T = {t:.3g})" in text


def _val_logits(run):
    from cnnlab.reopen import open_run

    opened = open_run(run, "best")
    model = opened.model()
    _, val = opened.split("val", labelled=True)
    zs, ys = [], []
    with torch.inference_mode():
        for x, y in opened.loader(val):
            zs.append(model(x).double())
            ys.append(y)
    return torch.cat(zs), torch.cat(ys)


def test_calibrate_without_a_validation_split_is_refused_with_the_fix(tmp_path, mnist_small, capsys):
    cfg = write_config(tmp_path / "c.yaml", {"format": "idx", "path": str(mnist_small), "limit_train": 200,
                                             "val_fraction": 0.0},
                       model={"name": "cnn", "channels": [4]}, train={"epochs": 1, "batch_size": 50})
    assert main(["train", str(cfg), "-q"]) == 0
    run = next((tmp_path / "runs").iterdir())
    capsys.readouterr()
    assert main(["calibrate", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.val_fraction=0.1" in err[0] and "test split is never used" in err[0]
    assert not (run / "calibration.json").exists()


def test_a_study_ranks_by_ece(tmp_path):
    from cnnlab.studies.execute import make_row
    from cnnlab.studies.spec import load_study
    from cnnlab.training.logged import metric_mode

    base = {"data": {"format": "idx", "path": "x"}, "model": {"name": "cnn"}}
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps({"base": base, "mode": "ablation", "axes": {"model.dropout": [0.0, 0.5]},
                                "metric": "val_ece", "table": ["test_ece", "best_val_ece"]}))
    study = load_study(path)
    assert study.direction == "minimize" and metric_mode("val_ece") == "min"
    assert study.table_metrics == ["val_ece", "test_ece", "best_val_ece"]
    history = [{"epoch": 1, "val_acc": 0.5, "val_ece": 0.2, "test_ece": 0.3},
               {"epoch": 2, "val_acc": 0.6, "val_ece": 0.1, "test_ece": 0.25}]
    summary = {"status": "completed", "epochs": 2, "best_epoch": 2,
               "best": {"val_ece": {"value": 0.1, "epoch": 2}}}
    row = make_row(summary, history)
    assert row["val_ece"] == 0.1 and row["test_ece"] == 0.25 and row["best_val_ece"] == 0.1
