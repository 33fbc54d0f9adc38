"""Where one analysis writes: RUN_DIR/analysis/<what>/, every file atomically, and what it cost."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.io import atomic_path, save_figure, write_json, write_text
from cnnlab.rundir import Run


class Outputs:
    """The files an analysis writes, and its cost (forward passes, seconds) for the summary."""

    def __init__(self, run: Run, what: str):
        self.run, self.what = run, what
        self.written: list[Path] = []
        self.forward_passes = 0  # images through the network, counted by the analysis
        self.started = time.perf_counter()

    def path(self, name: str) -> Path:
        path = self.run.analysis_file(self.what, name)
        self.written.append(path)
        return path

    def figure(self, fig: Any, name: str, **kwargs: Any) -> Path:
        import matplotlib.pyplot as plt

        path = self.path(name)
        save_figure(fig, path, **kwargs)
        plt.close(fig)
        return path

    def json(self, name: str, obj: Any) -> Path:
        path = self.path(name)
        write_json(path, obj)
        return path

    def csv(self, name: str, header: list[str], rows: list[list[Any]]) -> Path:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(header)
        w.writerows([[f"{v:.6g}" if isinstance(v, float) else v for v in r] for r in rows])
        path = self.path(name)
        write_text(path, buf.getvalue())
        return path

    def npz(self, stem: str, **arrays: np.ndarray) -> Path:
        path = self.path(stem + ".npz")
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
        return path

    def seconds(self) -> float:
        return time.perf_counter() - self.started
