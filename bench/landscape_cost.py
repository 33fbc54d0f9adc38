"""Benchmark: the cost of `cnnlab analyze RUN landscape` for a CIFAR-10 ResNet-20.

Trains (or takes, with --run) a ResNet-20 run of configs/cifar10_resnet.yaml on the CIFAR-10
JPEG copy with a short budget: one epoch of the full training split (train.epochs=1; the
cost of a point does not depend on how well trained the weights are). When this was
measured data.limit_train kept the first N images, and the zip's first 5,000 are all one
class (a run scoring 100% val, 10% test); limits are stratified now, but the figure stands
as measured, on the full split. Then it times the
real command in a subprocess, start-up included:

    cnnlab analyze RUN landscape --grid 21 --images 2048   (--steps 51, the default)

which evaluates the init->final line (51 + 2 points), the random direction (51) and the
21 x 21 grid (441), each on the same 2,048 training images. Printed and written to
bench/out/landscape_cost.json: wall seconds, the analysis's own seconds per part, forward
passes, seconds per point and the machine.

    .venv/bin/python bench/landscape_cost.py [--run RUN_DIR] [--grid 21] [--images 2048]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [str(ROOT / ".venv" / "bin" / "python"), "-m", "cnnlab"]
DATA = "/work/shared/datasets/cifar10/cifar10-jpeg.zip"
BUDGET = ["data.format=image_folder", f"data.path={DATA}", "train.epochs=1"]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def train_run(folder: Path) -> tuple[Path, float | None]:
    """A finished run in `folder` (trained now unless one is there), and its training seconds."""
    done = sorted(p.parent for p in folder.glob("*/best.pt"))
    if done:
        return done[-1], None
    start = time.perf_counter()
    cmd = [*CLI, "train", str(ROOT / "configs" / "cifar10_resnet.yaml"), *BUDGET, f"train.out_dir={folder}", "-q"]
    subprocess.run(cmd, check=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    return sorted(p.parent for p in folder.glob("*/best.pt"))[-1], seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="an existing run directory (default: train one)")
    ap.add_argument("--grid", type=int, default=21)
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=51)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "landscape_cost.json")
    args = ap.parse_args()

    train_seconds = None
    if args.run is None:
        args.run, train_seconds = train_run(ROOT / "bench" / "out" / "landscape_runs")
    options = ["--grid", str(args.grid), "--images", str(args.images), "--steps", str(args.steps)]
    cmd = [*CLI, "analyze", str(args.run), "landscape", *options]
    print("$", " ".join(cmd[2:]), flush=True)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    sys.stdout.write(done.stdout)
    if done.returncode:
        sys.stderr.write(done.stderr)
        raise SystemExit(done.returncode)
    report = json.loads((args.run / "analysis" / "landscape" / "report.json").read_text())
    points = report["forward_passes"] // args.images
    result = {
        "command": "cnnlab analyze RUN landscape " + " ".join(options),
        "run": str(args.run),
        "trained_with": "configs/cifar10_resnet.yaml " + " ".join(BUDGET),
        "train_seconds": None if train_seconds is None else round(train_seconds, 1),
        "wall_seconds": round(wall, 1),
        "analysis_seconds": report["seconds"],
        "forward_passes": report["forward_passes"],
        "points": points,
        "seconds_per_point": round(report["seconds"] / points, 3),
        "findings": report["findings"],
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{wall:.1f} s wall ({report['seconds']:.1f} s in the analysis), {report['forward_passes']:,} forward "
          f"passes, {points} points, {result['seconds_per_point']:.2f} s a point -> {args.out}")


if __name__ == "__main__":
    main()
