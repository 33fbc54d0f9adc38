"""Benchmark: the same 8-run study on this machine and through a single-node Slurm cluster.

The cluster is the test set's (tests/slurm_cluster.py: Debian's munged, slurmctld and slurmd
started on loopback; run as root, `make slurm` installs them). The study: 4 dropouts x 2 seeds of
a small CNN on the first 2,000 real MNIST training images (500 for validation) and 500 test
images, 4 epochs each. Local: `cnnlab study --workers 2` on 2 cores (one torch thread per worker).
Slurm: `cnnlab study --slurm --workers 2 --cpus-per-worker 1 --wait` (two one-CPU array tasks).
It checks that the two tables and every run's numbers are the same and reports the wall times and
the overhead per run, (Slurm - local) / 8, with where it goes: submitting (checks, sbatch), the
wait until the tasks start, and the workers' start.

    python bench/slurm_study.py                 # about 4 minutes on a quiet 2-core machine

Each is timed twice, in the order local, Slurm, Slurm, local, so that a load that drifts weighs on
both alike.

Results go to bench/out/slurm_study/results.json and are printed as Markdown lines for
bench/RESULTS.md.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
MNIST = Path(os.environ.get("CNNLAB_SHARED", ROOT.parent / "shared")) / "datasets" / "mnist"
NAME = "slurmbench"
COMPARED = ("status", "epochs", "best_epoch", "val_acc", "test_acc", "final_train_loss", "final_val_loss", "threads")


def write_study(folder: Path, data: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    base = {"name": "b", "seed": 0, "device": "cpu",
            "data": {"format": "idx", "path": str(data), "val_fraction": 0.25, "cache_dir": str(folder / "cache")},
            "model": {"name": "cnn", "channels": [8, 16], "norm": "batch"},
            "optim": {"name": "sgd", "lr": 0.02, "momentum": 0.9}, "train": {"epochs": 4, "batch_size": 32}}
    spec = {"name": NAME, "base": base, "mode": "grid", "axes": {"model.dropout": [0.0, 0.1, 0.2, 0.3]},
            "seeds": [0, 1], "out_dir": str(folder / "studies")}
    path = folder / f"{NAME}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def two_cores() -> None:
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:2])


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, preexec_fn=two_cores)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return wall, done.stdout


def rows(folder: Path) -> dict[str, dict[str, str]]:
    return {r["key"]: r for r in csv.DictReader((folder / "results.csv").open())}


def task_starts(folder: Path) -> list[datetime]:
    """When each array task's worker began (the batch script's first line in its log)."""
    starts = []
    for log in sorted((folder / "slurm" / "logs").glob("*.out")):
        m = re.search(r"attempt 1, on \S+ at (\S+ \S+)", log.read_text())
        if m:
            starts.append(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S"))
    return starts


def compare(a: Path, b: Path) -> tuple[bool, bool]:
    """(same table.md, same numbers for every run) of two study folders."""
    same_table = (a / "table.md").read_text() == (b / "table.md").read_text()
    ra, rb = rows(a), rows(b)
    same = sorted(ra) == sorted(rb) and all({m: ra[k][m] for m in COMPARED} == {m: rb[k][m] for m in COMPARED}
                                            for k in ra)
    return same_table, same


def main() -> None:
    import slurm_cluster
    from conftest import idx_slice

    out = ROOT / "bench" / "out" / "slurm_study"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    data = idx_slice(MNIST, out / "mnist-slice", 2000, 500)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    load_before = os.getloadavg()[0]
    walls: dict[str, list[float]] = {"local": [], "slurm": []}
    folders: dict[str, list[Path]] = {"local": [], "slurm": []}
    starts, submits = [], []
    with slurm_cluster.cluster(cpus=2) as slurm_env:
        senv = {**env, **slurm_env}
        # local, Slurm, Slurm, local: a load that drifts over the minutes weighs on both alike.
        for i, mode in enumerate(("local", "slurm", "slurm", "local")):
            study = write_study(out / f"{mode}{i}", data)
            cmd = [sys.executable, "-m", "cnnlab", "study", str(study), "--workers", "2"]
            if mode == "slurm":
                cmd += ["--slurm", "--cpus-per-worker", "1", "--wait"]
            print(f"{mode}: {' '.join(cmd[3:])} ...", flush=True)
            begun = datetime.now()
            wall, text = timed(cmd, senv if mode == "slurm" else env)
            folder = study.parent / "studies" / NAME
            walls[mode].append(wall)
            folders[mode].append(folder)
            print(f"  {wall:.1f} s", flush=True)
            if mode == "slurm":
                first = min(task_starts(folder))
                starts.append((first - begun).total_seconds())
        # The submission alone (checks, storage, sbatch, record), then cancelled.
        study = write_study(out / "submit-only", data)
        wall, _ = timed([sys.executable, "-m", "cnnlab", "study", str(study), "--slurm", "--workers", "2",
                         "--cpus-per-worker", "1"], senv)
        submits.append(wall)
        subprocess.run([sys.executable, "-m", "cnnlab", "study", str(study), "--cancel"], env=senv, capture_output=True)
    load_after = os.getloadavg()[0]
    checks = [compare(folders["local"][0], f) for f in folders["local"][1:] + folders["slurm"]]
    same_table, same_numbers = all(c[0] for c in checks), all(c[1] for c in checks)
    runs = len(rows(folders["slurm"][0]))
    mean = {m: sum(w) / len(w) for m, w in walls.items()}
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores", "runs": runs,
        "local_wall_s": [round(w, 1) for w in walls["local"]], "slurm_wall_s": [round(w, 1) for w in walls["slurm"]],
        "overhead_per_run_s": round((mean["slurm"] - mean["local"]) / runs, 2),
        "command_start_to_first_task_start_s": starts, "submit_command_s": round(submits[0], 1),
        "same_table": same_table, "same_numbers": same_numbers,
        "load_1min_before_after": [round(load_before, 1), round(load_after, 1)],
        "table": (folders["slurm"][0] / "table.md").read_text(),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "table"}, indent=2))
    print(result["table"])
    print(f"| {runs}-run study | local `--workers 2` | Slurm: 2 one-CPU tasks, `--wait` |\n| --- | ---: | ---: |\n"
          f"| wall time (two runs each) | {', '.join(f'{w:.1f}' for w in walls['local'])} s | "
          f"{', '.join(f'{w:.1f}' for w in walls['slurm'])} s |\n"
          f"| overhead per run | | {(mean['slurm'] - mean['local']) / runs:.2f} s |")
    if not (same_table and same_numbers):
        raise SystemExit("the studies' tables or numbers differ")


if __name__ == "__main__":
    main()
