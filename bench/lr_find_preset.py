"""Benchmark: `cnnlab lr-find` on the Fashion-MNIST preset, as a user runs it.

Runs `cnnlab lr-find configs/fashion_mnist_cnn.yaml data.path=... --seeds 3 --out
bench/out/lr_find` in a fresh process, times the whole command and writes the seconds per
seed (each seed's own, from the command's JSON, and the whole command over the seeds), the
suggestions and the preset's lr to bench/out/lr_find_preset.json. Usage:

    .venv/bin/python bench/lr_find_preset.py [--seeds 3] [--data /usr/share/datasets/fashion-mnist] [KEY=VALUE ...]
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "fashion_mnist_cnn.yaml"))
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out-dir", default=str(ROOT / "bench" / "out" / "lr_find"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "lr_find_preset.json"))
    ap.add_argument("overrides", nargs="*", help="extra KEY=VALUE overrides")
    args = ap.parse_args()

    cmd = [sys.executable, "-m", "cnnlab", "lr-find", args.config, f"data.path={args.data}", *args.overrides,
           "--seeds", str(args.seeds), "--out", args.out_dir]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        return proc.returncode
    figure = Path(proc.stdout.strip().splitlines()[-1])
    report = json.loads(figure.with_suffix(".json").read_text())
    result = {
        "command": " ".join(["cnnlab", "lr-find", os.path.relpath(args.config, ROOT), f"data.path={args.data}",
                             *args.overrides, "--seeds", str(args.seeds), "--out", os.path.relpath(args.out_dir, ROOT)]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        # Other processes on the machine slow a run down: the 1-minute load average before and after.
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "wall_seconds_whole_command": round(wall, 1),
        "wall_seconds_per_seed": round(wall / args.seeds, 1),  # start-up and data loading included
        "seconds_per_seed": {str(s["seed"]): s["seconds"] for s in report["seeds"]},  # build + sweep of each
        "build_seconds_per_seed": {str(s["seed"]): s["build_seconds"] for s in report["seeds"]},  # data + model
        "cpu_seconds_per_seed": {str(s["seed"]): s["cpu_seconds"] for s in report["seeds"]},  # all threads
        "steps_per_seed": {str(s["seed"]): s["steps"] for s in report["seeds"]},
        "suggestions": report["suggestions"],
        "suggestion_median": report["suggestion"],
        "suggestion_range": report["range"],
        "lowest_loss_lr": {str(s["seed"]): s["lowest_loss_lr"] for s in report["seeds"]},
        "preset_lr": report["config_lr"],
        "preset_schedule": report["config_schedule"],
        "suggestion_over_preset_lr": round(report["suggestion"] / report["config_lr"], 3),
        "figure": os.path.relpath(figure, ROOT),
        "printed": proc.stdout.strip().splitlines()[:-1],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for line in result["printed"]:
        print(line)
    per_seed = ", ".join(f"{v:.1f}" for v in result["seconds_per_seed"].values())
    print(f"whole command {wall:.1f} s ({result['wall_seconds_per_seed']:.1f} s per seed; each seed's own: {per_seed} s); "
          f"median suggestion {report['suggestion']:.3g} vs the preset's lr {report['config_lr']:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
