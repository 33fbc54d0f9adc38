"""Benchmark: the Fashion-MNIST preset, end to end, as a user runs it.

Runs `cnnlab train configs/fashion_mnist_cnn.yaml` in a fresh process, times the whole
command (start-up, data loading, training, evaluation, writing the run directory) and
reports the test accuracy of the selected (best-by-validation) epoch, plus when each
epoch finished. Usage:

    .venv/bin/python bench/fashion_mnist_preset.py [--out bench/out/fashion_mnist_preset.json] [KEY=VALUE ...]
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
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "fashion_mnist_preset.json"))
    ap.add_argument("overrides", nargs="*", help="extra KEY=VALUE overrides")
    args = ap.parse_args()

    out_dir = ROOT / "bench" / "out" / "runs"
    cmd = [sys.executable, "-m", "cnnlab", "train", args.config, f"train.out_dir={out_dir}", *args.overrides]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        return proc.returncode
    run_dir = Path(proc.stdout.strip().splitlines()[-1])
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    elapsed, timeline = 0.0, []
    for r in rows:
        elapsed += r["seconds"]
        timeline.append({"epoch": r["epoch"], "train_seconds_so_far": round(elapsed, 1),
                         "val_acc": r.get("val_acc"), "test_acc": r.get("test_acc")})
    result = {
        "command": " ".join(["cnnlab", "train", os.path.relpath(args.config, ROOT), *args.overrides]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {summary['device']}",
        "wall_seconds_whole_command": round(wall, 1),
        "train_seconds": summary["wall_seconds"],
        "test_acc_selected_epoch": summary["test_acc"],
        "best_epoch": summary["best_epoch"],
        "params": summary["params"],
        "timeline": timeline,
        "run_dir": str(run_dir),
        "versions": summary["versions"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for t in timeline:
        val = f"val {t['val_acc'] * 100:.2f}%  " if t["val_acc"] is not None else ""
        print(f"epoch {t['epoch']:>2}  {t['train_seconds_so_far']:>7.1f}s  {val}test {t['test_acc'] * 100:.2f}%")
    print(f"whole command {wall:.1f}s; test accuracy {summary['test_acc'] * 100:.2f}% (epoch {summary['best_epoch']}, selected by {summary['selected_by']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
