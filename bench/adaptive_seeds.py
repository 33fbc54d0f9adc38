"""Adaptive seeds (issue 24, bench/RESULTS.md): a study with one clear and one close difference from the
base, run with `seeds: {min, max, precision}`, against the fixed number of seeds that reaches the same
precision.

The study (MNIST, a small CNN, a short run each) has the base, a close variant (a little dropout) and a
clearly worse one (a hundredth of the learning rate). Each variant runs the pilot seeds, then as many as
Stein's rule asks for (adaptive.py). From the spread of every variant's runs (and of its paired
difference from the base) the script then works out the fixed count a plain `seeds: [0, ..., n-1]`
study needs for its ordinary t CIs (means and differences) to be as narrow: every variant runs that
many there, so it is the noisiest one's count times the number of variants.

    python bench/adaptive_seeds.py                 # about 10 minutes on 2 cores
    python bench/adaptive_seeds.py --tiny          # a check of the script
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "datasets" / "mnist"


def fixed_count(values: list[float], precision: float, cap: int = 1000) -> int:
    """The smallest n whose ordinary 95% t CI half-width, with this spread, is at most `precision`."""
    sd = float(np.std(values, ddof=1))
    for n in range(2, cap):
        if stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n) <= precision:
            return n
    return cap


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--min", type=int, default=4)
    ap.add_argument("--max", type=int, default=16)
    ap.add_argument("--precision", type=float, default=0.01)
    ap.add_argument("--train", type=int, default=4000, help="training images (data.limit_train)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "adaptive_seeds")
    ap.add_argument("--tiny", action="store_true")
    args = ap.parse_args()
    if args.tiny:
        args.min, args.max, args.train, args.epochs, args.workers = 2, 3, 300, 1, 1
    name = "tiny_adaptive" if args.tiny else "adaptive_seeds"
    args.out.mkdir(parents=True, exist_ok=True)
    spec = {
        "name": name,
        "base": {"name": "adaptive", "seed": 0, "device": "cpu",
                 "data": {"format": "idx", "path": str(MNIST), "limit_train": args.train, "val_fraction": 0.25,
                          "limit_test": 1000},
                 "model": {"name": "cnn", "channels": [8, 16], "norm": "batch"},
                 "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
                 "train": {"epochs": args.epochs, "batch_size": 64}},
        "mode": "ablation",
        "axes": {"close": {"dropout_0.1": {"model.dropout": 0.1}}, "clear": {"lr_0.0005": {"optim.lr": 0.0005}}},
        "seeds": {"min": args.min, "max": args.max, "precision": args.precision},
        "metric": "val_acc", "table": ["val_acc"], "out_dir": str(args.out / "studies"),
    }
    study = args.out / f"{name}.yaml"
    study.write_text(yaml.safe_dump(spec, sort_keys=False))
    shutil.rmtree(args.out / "studies" / name, ignore_errors=True)  # a fresh study: each run measures anew
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "cnnlab", "study", str(study), "--workers", str(args.workers)], check=True,
                   cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.monotonic() - start
    folder = args.out / "studies" / name
    values: dict[str, dict[int, float]] = {}
    for r in csv.DictReader((folder / "results.csv").open()):
        if r["status"] == "completed":
            values.setdefault(r["variant"], {})[int(r["seed"])] = float(r["val_acc"])
    table = {r["variant"]: r for r in csv.DictReader((folder / "table.csv").open())}
    base = values["base"]
    per = {}
    for label, v in values.items():
        need = fixed_count(list(v.values()), args.precision)
        row = table[label]
        entry = {"adaptive_seeds": len(v), "stopped": row["seeds"], "mean": float(row["val_acc_mean"]),
                 "ci": [float(row["val_acc_ci_low"] or "nan"), float(row["val_acc_ci_high"] or "nan")],
                 "fixed_for_mean": need}
        if label != "base":
            d = [v[s] - base[s] for s in v if s in base]
            entry |= {"diff": float(row["val_acc_diff"]), "p": float(row["val_acc_p"] or "nan"),
                      "p_holm": float(row["val_acc_p_holm"] or "nan"),
                      "fixed_for_difference": fixed_count(d, args.precision)}
        per[label] = entry
    fixed = max(max(e["fixed_for_mean"], e.get("fixed_for_difference", 0)) for e in per.values())
    result = {"command": " ".join(["python", "bench/adaptive_seeds.py", *sys.argv[1:]]), "wall_seconds": round(wall, 1),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "rule": {"min": args.min, "max": args.max, "precision": args.precision}, "variants": per,
              "adaptive_runs": sum(e["adaptive_seeds"] for e in per.values()),
              "fixed_seeds_needed": fixed, "fixed_runs": fixed * len(per)}
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
