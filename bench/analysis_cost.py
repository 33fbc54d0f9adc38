"""Benchmark: the cost of every `cnnlab analyze` analysis on two CIFAR-10 presets.

Each preset is trained for a stated budget on the shared CIFAR-10 JPEG zip (45,000 train /
5,000 val / 10,000 test), as a user would (`cnnlab train configs/X.yaml data.format=...
train.epochs=1`), unless `--run PRESET=RUN_DIR` names a run already trained. Then every
analysis runs as its own `cnnlab analyze RUN WHAT [options]` process; its report.json gives
the images pushed through the network and the seconds inside the analysis, and the wall
time of the whole command (start-up, loading the data) is measured around it.

    .venv/bin/python bench/analysis_cost.py [--only cifar10_resnet] [--run cifar10_resnet=runs/...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ROOT.parent / "shared" / "datasets" / "cifar10" / "cifar10-jpeg.zip"
BUDGET = ["train.epochs=1"]  # one epoch of the preset's own schedule, the whole training split
ANALYSES = {
    "kernels": [],
    "features": [],
    "errors": [],
    "cam": [],
    "landscape": [],  # the defaults: 2,048 train images, 51 points per line, a 21 x 21 grid
}
SMALLER_LANDSCAPE = {"cifar10_small_vgg": ["--grid", "11", "--images", "1024"]}  # 4.7M parameters: a coarser grid


def cnnlab(*args: str) -> tuple[str, float]:
    start = time.perf_counter()
    p = subprocess.run([str(ROOT / ".venv" / "bin" / "cnnlab"), *args], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    if p.returncode != 0:
        raise SystemExit(f"cnnlab {' '.join(args)} failed:\n{p.stderr}")
    return p.stdout.strip().splitlines()[-1], time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=["cifar10_resnet", "cifar10_small_vgg"])
    ap.add_argument("--run", nargs="*", default=[], help="PRESET=RUN_DIR of a run already trained")
    ap.add_argument("--skip", nargs="*", default=[], help="analyses not to run (e.g. landscape, measured by bench/landscape_cost.py)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "analysis_cost.json")
    args = ap.parse_args()
    given = dict(item.split("=", 1) for item in args.run)
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    for preset in args.only:
        entry: dict = {**results.get(preset, {}), "budget": " ".join(BUDGET)}
        if preset in given:
            run = Path(given[preset])
        else:
            line, seconds = cnnlab("train", f"configs/{preset}.yaml", "data.format=image_folder", f"data.path={CIFAR}",
                                   *BUDGET, "train.out_dir=bench/out/analysis_runs", "-q")
            run, entry["train_seconds"] = Path(line), round(seconds, 1)
        summary = json.loads((run / "summary.json").read_text())
        entry.update(run=str(run), test_acc=summary.get("test_acc"), params=summary.get("params"))
        for what, options in ANALYSES.items():
            if what in args.skip:
                continue
            extra = SMALLER_LANDSCAPE.get(preset, []) if what == "landscape" else []
            _, wall = cnnlab("analyze", str(run), what, *options, *extra)
            report = json.loads((run / "analysis" / what / "report.json").read_text())
            entry[what] = {"options": report["options"], "forward_passes": report["forward_passes"],
                           "analysis_seconds": report["seconds"], "wall_seconds": round(wall, 1)}
            print(f"{preset:18s} {what:10s} {report['forward_passes']:>10,} images  {report['seconds']:8.1f} s "
                  f"in the analysis, {wall:8.1f} s the whole command", flush=True)
        results[preset] = entry
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
