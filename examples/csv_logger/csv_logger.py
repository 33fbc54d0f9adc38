"""A callback of one's own: every epoch's metrics appended to a CSV file as the run goes, and the
learning rate of every step to another (cnnlab.Callback's hooks, see cnnlab/callbacks.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import cnnlab


class CSVLogger(cnnlab.Callback):
    """Append each epoch's metrics (and, with steps: true, each step's loss and lr) to CSV files in the run."""

    def __init__(self, file: str = "log.csv", steps: bool = False):
        self.file, self.steps = file, steps
        self.folder: Path | None = None

    def on_run_start(self, run: cnnlab.RunContext) -> None:
        self.folder = run.path if run.writes else None  # one process writes in a distributed run

    def on_epoch_end(self, epoch: int, metrics: dict) -> None:
        if self.folder is None:
            return
        path = self.folder / self.file
        new = not path.exists()
        with path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(metrics))
            if new:
                w.writeheader()
            w.writerow(metrics)

    def on_step_end(self, step: int, loss: float, lr: float) -> None:
        if self.steps and self.folder is not None:
            with (self.folder / "steps_lr.csv").open("a") as f:
                f.write(f"{step},{loss:.6g},{lr:.6g}\n")
