"""CPU figure of distributed training: the Fashion-MNIST preset (configs/fashion_mnist_cnn.yaml)
trained by 2 gloo processes of 1 thread each (`cnnlab train --nproc 2`) against 1 process of 2
threads, same global batch (128) and seed; per-epoch time ratio and the metric differences;
then the export parity numbers (ONNX through onnxruntime, TorchScript) of both runs.

The preset normalises with BatchNorm, which in 2 processes sees each process's 64 images (no
SyncBatchNorm on the CPU): the metrics differ by that, not only by rounding (the tests hold a
model without BatchNorm to 1%). On 2 cores the two processes compete with each other and with
anything else running; `uptime` is recorded before and after.

    PYTHONPATH=. python bench/ddp_cpu.py [--epochs 2] [--out bench/out/ddp_cpu.json]
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


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def cnnlab(*args: str, threads: int) -> tuple[list[str], float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "cnnlab", *args], capture_output=True, text=True, env=env, cwd=ROOT)
    if p.returncode != 0:
        raise SystemExit(f"cnnlab {' '.join(args)} failed:\n{p.stderr[-2000:]}")
    return p.stdout.strip().splitlines(), time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "ddp_cpu.json")
    args = ap.parse_args()
    runs = args.out.parent / "ddp_cpu_runs"
    common = ["train", "configs/fashion_mnist_cnn.yaml", f"data.path={args.data}", f"train.epochs={args.epochs}",
              f"train.out_dir={runs}", "-q"]
    report: dict = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                    "uptime_before": uptime(), "epochs": args.epochs}
    results = {}
    for name, extra, threads in (("1 process x 2 threads", ["train.threads=2"], 2),
                                 ("2 processes x 1 thread", ["--nproc", "2"], 1)):
        out, wall = cnnlab(*common, *extra, threads=threads)
        run = Path(out[-1])
        history = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        results[name] = {"run": str(run), "wall_seconds": round(wall, 1),
                         "epoch_seconds": [round(h["seconds"], 1) for h in history],
                         "test_acc": [h["test_acc"] for h in history], "test_loss": [h["test_loss"] for h in history],
                         "train_loss": [h["train_loss"] for h in history]}
        print(name, results[name], flush=True)
    one, two = results["1 process x 2 threads"], results["2 processes x 1 thread"]
    report["runs"] = results
    report["epoch_time_ratio_2proc_over_1proc"] = [round(b / a, 3) for a, b in zip(one["epoch_seconds"], two["epoch_seconds"])]
    report["test_acc_difference"] = [round(b - a, 4) for a, b in zip(one["test_acc"], two["test_acc"])]
    report["test_loss_difference"] = [round(b - a, 4) for a, b in zip(one["test_loss"], two["test_loss"])]
    parity = {}
    for name, r in results.items():
        for fmt in ("onnx", "torchscript"):
            out, wall = cnnlab("export", r["run"], "--format", fmt, threads=2)
            info = json.loads(Path(out[-1]).with_name(Path(out[-1]).name.split(".")[0] + f".{fmt}.json").read_text())
            parity[f"{name}, {fmt}"] = {**info["parity"], "export_seconds": round(wall, 1)}
    report["export_parity"] = parity
    report["uptime_after"] = uptime()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=2))
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
