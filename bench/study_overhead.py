"""Benchmark (issue 24): how much of a study's wall time goes to what surrounds its runs.

The figure: a study's wall time over (the sum of its runs' own training time / workers). A run's
own time is its summary.json `wall_seconds`: the seconds of its epochs, each from the epoch's
first step to the end of its evaluation of every split (what bench/RESULTS.md's "runs' own times"
added up); the rest (start-up, reading the data, figures, checkpoints and other files, the
study's storage and tables) is overhead. Goal: at most 1.25 for the MNIST grid with --workers 2.

    python bench/study_overhead.py                       # the 160-run MNIST grid, --workers 2
    python bench/study_overhead.py --cells 40            # its first 40 cells (lr 0.001 and 0.01 x dropout 0.2 and 0.3)
    python bench/study_overhead.py --cells 40 --baseline # the same with the runs' sharing off (before issue 24)
    python bench/study_overhead.py --study fashion       # the Fashion-MNIST ablation (2 runs), reduced to a CPU budget

Each study runs as a user runs it (`cnnlab study FILE data.path=... --workers 2`, a fresh folder
under bench/out/study_overhead/) on the stand-ins bench/presets.py builds (mnist-original.mat from
the MNIST IDX files; the Kaggle npy/csv layout from Fashion-MNIST). The load average is sampled
every 5 s while it runs: on a shared machine other processes slow both sides of the ratio, but
not equally. `--baseline` runs the same command with training/runner.py's `shared` switched off
in every worker process (a sitecustomize.py on PYTHONPATH), which is how every study ran before.
Results go to bench/out/study_overhead/results.json (one entry per label) and are printed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import standins  # noqa: E402

OUT = ROOT / "bench" / "out" / "study_overhead"
STANDINS = ROOT / "bench" / "out" / "standins"
STUDIES = {
    "mnist": (ROOT / "configs" / "studies" / "mnist_lenet_as_written.yaml", []),
    # ResNet-18 at 224 px is a GPU job (40 epochs of 25,000 images): on the CPU, 1 epoch of 600 images.
    "fashion": (ROOT / "configs" / "studies" / "fashion_mnist_npy_resnet_as_written.yaml",
                ["data.limit_train=600", "train.epochs=1"]),
}
BASELINE = """\
# bench/study_overhead.py --baseline: every run built and drawn on its own, as before issue 24.
import cnnlab.training.runner as runner

_train, _resume = runner.train, runner.resume
runner.train = lambda *a, shared=False, **k: _train(*a, **k)
runner.resume = lambda *a, shared=False, **k: _resume(*a, **k)
"""


def data_path(study: str) -> Path:
    if study == "mnist":
        path = STANDINS / "mnist-original.mat"
        if not path.exists():
            standins.mnist_original_mat(path)
        return path
    path = STANDINS / "kaggle"
    if not (path / "test_labels.npy").exists():
        standins.kaggle_npy_csv(path)
    return path


def study_file(study: str, cells: int | None, folder: Path) -> Path:
    """The study file itself, or a copy cut to its first `cells` cells (leading values of the first axes)."""
    path, _ = STUDIES[study]
    if cells is None:
        return path
    spec = yaml.safe_load(path.read_text())
    spec["base"] = str((path.parent / spec["base"]).resolve())
    total = 1
    for values in spec["axes"].values():
        total *= len(values)
    for keep in (2, 1):  # the last values of the leading axes dropped, each axis first kept at 2 values
        for values in spec["axes"].values():
            while total > cells and len(values) > keep and total // len(values) * (len(values) - 1) >= cells:
                total = total // len(values) * (len(values) - 1)
                values.pop()
    if total != cells:
        raise SystemExit(f"--cells {cells}: the grid cuts to {total} cells; choose a product of leading axis sizes")
    cut = folder / path.name
    cut.write_text(yaml.safe_dump(spec, sort_keys=False))
    return cut


class LoadSampler(threading.Thread):
    """The 1-minute load average every `every` seconds until stopped."""

    def __init__(self, every: float = 5.0):
        super().__init__(daemon=True)
        self.every, self.samples, self.done = every, [], threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.samples.append(os.getloadavg()[0])
            self.done.wait(self.every)


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return f"{os.cpu_count()} cores, {model}; Python {platform.python_version()}"


def measure(study: str, cells: int | None, workers: int, baseline: bool) -> dict:
    label = f"{study}{'' if cells is None else f'-{cells}'}-w{workers}{'-baseline' if baseline else ''}"
    folder = OUT / label
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    path = study_file(study, cells, folder)
    overrides = [f"data.path={data_path(study)}", *STUDIES[study][1]]
    env = dict(os.environ)
    if baseline:
        (folder / "site").mkdir()
        (folder / "site" / "sitecustomize.py").write_text(BASELINE)
        env["PYTHONPATH"] = str(folder / "site") + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "cnnlab", "study", str(path), *overrides, "--workers", str(workers)]
    load = LoadSampler()
    load.start()
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True)
    wall = time.monotonic() - start
    load.done.set()
    if proc.returncode != 0:
        raise SystemExit(f"{label}: cnnlab study failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    results = Path(proc.stdout.strip().splitlines()[-1]) / "results.csv"
    rows = list(csv.DictReader((folder / results).open()))
    own = sum(float(r["wall_seconds"]) for r in rows if r["wall_seconds"])
    entry = {
        "command": "cnnlab study " + " ".join(str(c) for c in cmd[4:]).replace(str(ROOT) + "/", ""),
        "baseline": baseline, "runs": len(rows), "completed": sum(r["status"] == "completed" for r in rows),
        "wall_s": round(wall, 1), "runs_own_s": round(own, 1), "ideal_s": round(own / workers, 1),
        "ratio": round(wall / (own / workers), 3),
        "load_avg_1min": {"min": min(load.samples), "mean": round(sum(load.samples) / len(load.samples), 2),
                          "max": max(load.samples)},
        "uptime_after": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    store = OUT / "results.json"
    everything = json.loads(store.read_text()) if store.exists() else {}
    everything[label] = entry
    store.write_text(json.dumps(everything, indent=1))
    return {label: entry}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", choices=sorted(STUDIES), default="mnist")
    ap.add_argument("--cells", type=int, default=None, help="the first N cells of the grid (default: all)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--baseline", action="store_true", help="the runs' sharing off, as before issue 24")
    args = ap.parse_args()
    print(json.dumps(measure(args.study, args.cells, args.workers, args.baseline), indent=1), flush=True)


if __name__ == "__main__":
    main()
