"""Run directories written by cnnlab 0.1 (tests/fixtures/runs-0.1, made by make_old_runs.py
before the engine seam and the rundir contract) still evaluate, predict and resume.

Each was interrupted after epoch 1 of 2; resuming it must end where the same config trained
without interruption ended under the code that wrote it (expected-metrics.jsonl).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import read_idx

from cnnlab.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "runs-0.1"
RUNS = ["torch-ema-plateau", "scratch-lenet"]


def old_run(name: str, tmp_path: Path, data: Path) -> Path:
    """A copy of the fixture pointing at this machine's copy of its data."""
    run_dir = tmp_path / name
    shutil.copytree(FIXTURES / name, run_dir)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    cfg["data"]["path"] = str(data)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return run_dir


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("name", RUNS)
def test_old_run_evaluates_predicts_and_resumes(name, mnist_small, tmp_path, capsys):
    run_dir = old_run(name, tmp_path, mnist_small)
    before = rows(run_dir / "metrics.jsonl")

    assert main(["evaluate", str(run_dir), "--split", "test"]) == 0
    report = json.loads((run_dir / "eval-test-best.json").read_text())
    assert report["epoch"] == 1 and report["acc"] == pytest.approx(before[0]["test_acc"], abs=1e-9)

    x = read_idx(mnist_small / "t10k-images-idx3-ubyte.gz")
    np.save(tmp_path / "test.npy", x.reshape(len(x), 784))
    assert main(["predict", str(run_dir), str(tmp_path / "test.npy"), "--out", str(tmp_path / "sub.csv")]) == 0
    predicted = [int(r[1]) for r in list(csv.reader((tmp_path / "sub.csv").open()))[1:]]
    truth = read_idx(mnist_small / "t10k-labels-idx1-ubyte.gz")
    assert np.mean(np.asarray(predicted) == truth) == pytest.approx(report["acc"], abs=1e-9)

    capsys.readouterr()
    assert main(["resume", str(run_dir), "-q"]) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs"] == 2
    got, want = rows(run_dir / "metrics.jsonl"), rows(FIXTURES / name / "expected-metrics.jsonl")
    assert got[0] == before[0]  # the first epoch is kept as it was
    for key, value in want[1].items():  # the second one continues exactly (up to thread-count rounding)
        assert got[1][key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
