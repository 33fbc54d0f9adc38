"""Benchmark: how much `cnnlab study --workers N` gains over running the runs one by one.

Part 1 (CPU): a 12-run study (4 dropout values x 3 seeds, a small CNN on 20,000 Fashion-MNIST
training images, 2 epochs) with --workers 1 and then --workers 2. Target: workers 2 takes at most 0.9 of the
time of workers 1 on a 2-core machine (two one-thread processes train such a model at
680 images/s together, one two-thread process at 588, so about 0.86 is the limit).

Part 2 (GPU): 8 small runs sharing one GPU with --workers 8 against --workers 1.
Target: less than half the time.

Full scale takes about 3 minutes on a quiet 2-core machine (part 1) and a few minutes on
a GPU (part 2):

    python bench/study_workers.py                  # part 1, plus part 2 when CUDA is present
    python bench/study_workers.py --scale tiny     # a one-minute check that everything works
    python bench/study_workers.py --part gpu --device cpu --scale tiny   # part 2's code path on CPU

Results go to bench/out/study_workers/results.json and are printed as Markdown lines for
bench/RESULTS.md. Wall times include each command's start-up (Python, torch imports).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
FASHION = Path(os.environ.get("CNNLAB_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))

SCALES = {
    # train / test images of the slice, epochs, dropout values (variants), seeds
    "full": {"train": 20000, "test": 2000, "epochs": 2, "variants": [0.0, 0.1, 0.2, 0.3], "seeds": [0, 1, 2],
             "gpu_runs": 8, "gpu_train": 20000, "gpu_epochs": 3},
    "tiny": {"train": 600, "test": 200, "epochs": 1, "variants": [0.0, 0.3], "seeds": [0, 1],
             "gpu_runs": 4, "gpu_train": 600, "gpu_epochs": 1},
}


def read_idx(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4: 4 + 4 * ndim])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def write_slice(dest: Path, n_train: int, n_test: int) -> Path:
    """The first images of Fashion-MNIST as a new IDX folder (uncompressed)."""
    dest.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        for kind in ("images-idx3", "labels-idx1"):
            src = next(FASHION.glob(f"{split}-{kind}-ubyte*"))
            arr = read_idx(src)[:n]
            header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
            (dest / f"{split}-{kind}-ubyte").write_bytes(header + np.ascontiguousarray(arr).tobytes())
    return dest


def study_file(folder: Path, name: str, data: Path, epochs: int, variants: list[float], seeds: list[int],
               device: str) -> Path:
    base = {
        "name": name, "seed": 0, "device": device,
        "data": {"format": "idx", "path": str(data), "val_fraction": 0.2, "cache_dir": str(folder / "cache")},
        "model": {"name": "cnn", "channels": [16, 32], "norm": "batch"},
        "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
        "train": {"epochs": epochs, "batch_size": 128},
    }
    spec = {"name": name, "base": base, "mode": "grid", "axes": {"model.dropout": variants},
            "seeds": seeds, "out_dir": str(folder / "studies")}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_study(path: Path, workers: int) -> dict:
    """Run one study command from scratch; its wall time and the runs' own training seconds."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "cnnlab", "study", str(path), "--workers", str(workers)],
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{path.name} --workers {workers} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    folder = Path(proc.stdout.strip().splitlines()[-1])
    import csv

    rows = list(csv.DictReader((folder / "results.csv").open()))
    bad = [r for r in rows if r["status"] != "completed"]
    if bad:
        raise SystemExit(f"{len(bad)} runs did not complete: {bad[0]['reason']}")
    return {"workers": workers, "wall_seconds": round(wall, 2), "runs": len(rows),
            "train_seconds_sum": round(sum(float(r["wall_seconds"]) for r in rows), 2),
            "threads_per_run": sorted({int(r["threads"]) for r in rows}),
            "mean_val_acc": round(float(np.mean([float(r["val_acc"]) for r in rows])), 4)}


def part_cpu(out: Path, scale: dict) -> dict:
    data = write_slice(out / "fashion-slice", scale["train"], scale["test"])
    results = {}
    for workers in (1, 2):
        name = f"workers{workers}"
        path = study_file(out, name, data, scale["epochs"], scale["variants"], scale["seeds"], "cpu")
        print(f"part 1: {len(scale['variants']) * len(scale['seeds'])} runs with --workers {workers} ...", flush=True)
        results[name] = run_study(path, workers)
        print(f"  {results[name]}", flush=True)
    ratio = results["workers2"]["wall_seconds"] / results["workers1"]["wall_seconds"]
    return {**results, "ratio": round(ratio, 3), "target": "<= 0.9", "met": ratio <= 0.9}


def part_gpu(out: Path, scale: dict, device: str) -> dict:
    n = scale["gpu_runs"]
    data = write_slice(out / "fashion-slice-gpu", scale["gpu_train"], scale["test"])
    variants = [round(0.05 * i, 2) for i in range(n)]  # n small runs, one seed each
    results = {}
    for workers in (1, n):
        name = f"gpu_workers{workers}"
        path = study_file(out, name, data, scale["gpu_epochs"], variants, [0], device)
        print(f"part 2: {n} runs on {device} with --workers {workers} ...", flush=True)
        results[name] = run_study(path, workers)
        print(f"  {results[name]}", flush=True)
    ratio = results[f"gpu_workers{n}"]["wall_seconds"] / results["gpu_workers1"]["wall_seconds"]
    return {**results, "ratio": round(ratio, 3), "target": "< 0.5", "met": ratio < 0.5}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=sorted(SCALES), default="full")
    ap.add_argument("--part", choices=["all", "cpu", "gpu"], default="all")
    ap.add_argument("--device", default="cuda", help="device of part 2 (cuda; cpu only to test this script)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "study_workers")
    args = ap.parse_args()
    import shutil

    import torch

    if args.out.exists():
        shutil.rmtree(args.out)  # every measurement starts from empty studies
    args.out.mkdir(parents=True)
    scale = SCALES[args.scale]
    report: dict = {"scale": args.scale, "host": platform.node(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M")}
    lines = []
    if args.part in ("all", "cpu"):
        report["cpu"] = r = part_cpu(args.out, scale)
        lines.append(f"| study --workers 2 vs 1, {r['workers1']['runs']} runs (Fashion-MNIST slice, {report['cpus']} cores) "
                     f"| {r['workers2']['wall_seconds']:.1f} s vs {r['workers1']['wall_seconds']:.1f} s "
                     f"| ratio {r['ratio']:.3f} (target <= 0.9: {'met' if r['met'] else 'NOT met'}) |")
    has_gpu = torch.cuda.is_available()
    if args.part == "gpu" or (args.part == "all" and has_gpu):
        if args.device == "cuda" and not has_gpu:
            raise SystemExit("part 2 needs a CUDA GPU (or --device cpu to test the script)")
        report["gpu"] = r = part_gpu(args.out, scale, args.device)
        n = scale["gpu_runs"]
        gpu = torch.cuda.get_device_name(0) if has_gpu and args.device == "cuda" else args.device
        lines.append(f"| {n} runs sharing one GPU ({gpu}): --workers {n} vs 1 "
                     f"| {r[f'gpu_workers{n}']['wall_seconds']:.1f} s vs {r['gpu_workers1']['wall_seconds']:.1f} s "
                     f"| ratio {r['ratio']:.3f} (target < 0.5: {'met' if r['met'] else 'NOT met'}) |")
    elif args.part == "all":
        report["gpu"] = "skipped: no CUDA GPU"
    (args.out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nscale {args.scale}, {report['date']}, {report['host']}, torch {report['torch']}")
    print("\n".join(lines))
    print(f"\n{args.out / 'results.json'}")


if __name__ == "__main__":
    main()
