"""Schedules inside real training runs: the plateau stepped every N batches on the running
training loss (the faces write-up's loop) against torch's ReduceLROnPlateau fed the run's
own per-step losses, and its window surviving a SIGTERM mid-window and resume."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import MNIST, ROOT, write_config
from torch.optim import lr_scheduler

pytestmark = pytest.mark.slow
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
EVERY, LR = 5, 0.05


def config(tmp_path: Path, name: str, **train) -> Path:
    data = {"format": "idx", "path": str(MNIST), "limit_train": 2000, "limit_test": 200, "val_fraction": 0.1}
    return write_config(tmp_path / name / "c.yaml", data, model={"channels": [8, 16]},
                        optim={"name": "sgd", "lr": LR},
                        schedule={"name": "plateau", "monitor": "train_loss", "every": EVERY, "patience": 0,
                                  "factor": 0.7, "threshold": 0.05},
                        train={"epochs": 3, "batch_size": 32, "threads": 1, **train})


def metrics(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(x).items() if k != "seconds"}
            for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def train(cfg: Path) -> Path:
    r = subprocess.run([sys.executable, "-m", "cnnlab", "train", str(cfg), "-q"], capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr
    return next((cfg.parent / "runs").iterdir())


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    return train(config(tmp_path_factory.mktemp("whole"), "a"))


def test_the_lr_follows_torchs_plateau_stepped_on_every_5_batches(whole):
    with open(whole / "steps.csv") as f:
        rows = list(csv.DictReader(f))
    per_epoch: dict[int, list[float]] = {}
    for r in rows:
        per_epoch.setdefault(int(r["epoch"]), []).append(float(r["train_loss"]))
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    sched = lr_scheduler.ReduceLROnPlateau(opt, "min", factor=0.7, patience=0, threshold=0.05)
    starts = []
    for epoch in sorted(per_epoch):
        starts.append(opt.param_groups[0]["lr"])
        running = 0.0
        for i, loss in enumerate(per_epoch[epoch]):
            running += loss
            if i % EVERY == EVERY - 1:
                sched.step(running / EVERY)
                running = 0.0
    logged = [m["lr"] for m in metrics(whole)]
    assert logged == pytest.approx(starts, rel=1e-6)
    assert logged[-1] < logged[1] < LR  # it did reduce, within the first epoch and after


def test_a_sigterm_mid_window_resumes_with_the_same_lrs(whole, tmp_path):
    cfg = config(tmp_path, "b", checkpoint_every=7)  # 7 is not a multiple of 5: the window is half full
    proc = subprocess.Popen([sys.executable, "-m", "cnnlab", "train", str(cfg), "-q"], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list((tmp_path / "b").glob("runs/*/last.pt")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    run_dir = next((tmp_path / "b" / "runs").iterdir())
    r = subprocess.run([sys.executable, "-m", "cnnlab", "resume", str(run_dir), "-q"], capture_output=True, text=True,
                       env=ENV)
    assert r.returncode == 0, r.stderr
    assert metrics(run_dir) == metrics(whole)
