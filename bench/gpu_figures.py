"""Every GPU figure of cnnlab in one run (what `bash bench/gpu.sh` runs): bench/out/gpu.json and a
Markdown table for bench/RESULTS.md (bench/out/gpu.md).

Parts (each its own process, each with a time limit, so one failure costs only its own figure):
  1. the Fashion-MNIST preset end to end: time and test accuracy (bench/fashion_mnist_preset.py);
  2. the in-memory batched pipeline vs the same model fed by a DataLoader over per-image PIL
     transforms, one epoch each, same process (bench/data_pipeline.py; target >= 5x);
  3. CIFAR-10: configs/cifar10_fast.yaml vs airbench94, time to 94% (bench/cifar_airbench.py;
     target <= 1.5x);
  4. 8 small study runs sharing the GPU vs one after another (bench/study_workers.py; target < 0.5);
  5. DDP scaling, 2 processes vs 1 on the Fashion-MNIST preset: only with 2 GPUs or more.
--dry-run runs every part on the CPU for a few steps on small slices: it checks the script, not
the figures. A part whose data is missing is skipped with one line saying where it looked.
The full run is sized for one H200 and at most 8 minutes (the limits below add up to 480 s).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
LIMITS = {1: 50, 2: 80, 3: 170, 4: 150, 5: 30}  # seconds per part on the GPU: 480 in all, 8 minutes
DRY_LIMIT = 240


def find_fashion(data: Path | None) -> Path:
    for d in [data / "fashion-mnist" if data else None, BENCH / "data" / "fashion-mnist",
              Path(os.environ.get("CNNLAB_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))]:
        if d is not None and (d / "train-images-idx3-ubyte.gz").is_file():
            return d
    raise FileNotFoundError("Fashion-MNIST not found (looked in --data/fashion-mnist, bench/data/fashion-mnist, "
                            "/usr/share/datasets/fashion-mnist); run `bash bench/gpu.sh --pack fashion` and carry bench/data")


def run(cmd: list[str], limit: float, env: dict[str, str] | None = None) -> tuple[int, str, float]:
    start = time.perf_counter()
    full_env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                "PYTHONUNBUFFERED": "1", **(env or {})}
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=full_env, timeout=limit)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return 124, out + f"\ntimed out after {limit:.0f} s", time.perf_counter() - start
    return p.returncode, p.stdout + p.stderr, time.perf_counter() - start


def part1(out: Path, dry: bool, data: Path | None, limit: float) -> dict:
    fashion = find_fashion(data)
    extra = ["device=cpu", "train.epochs=1", "data.limit_train=512", "data.limit_test=256"] if dry else []
    code, log, wall = run([sys.executable, str(BENCH / "fashion_mnist_preset.py"), "--out", str(out / "part1.json"),
                           f"data.path={fashion}", *extra], limit)
    r = _result(code, log, out / "part1.json")
    if r["status"] == "ok":
        row = (f"| 1 | Fashion-MNIST preset ({r['test_acc_selected_epoch'] * 100:.2f}% test) | whole command "
               f"{r['wall_seconds_whole_command']:.1f} s, training {r['train_seconds']:.1f} s | - |")
        r["row"] = row
    return r


def part2(out: Path, dry: bool, data: Path | None, limit: float) -> dict:
    fashion = find_fashion(data)
    extra = ["--limit", "1024", "--repeats", "1", "--workers", "2"] if dry else ["--repeats", "2"]
    code, log, wall = run([sys.executable, str(BENCH / "data_pipeline.py"), "--data", str(fashion),
                           "--out", str(out / "part2.json"), *extra], limit)
    r = _result(code, log, out / "part2.json")
    if r["status"] == "ok":
        d = r["d_train_epoch_dataloader_s"]
        speed = f"{r['speedup_d_over_b']:.1f}x" if d else "n/a (no GPU)"
        r["row"] = (f"| 2 | epoch fed in memory vs DataLoader + PIL ({r['images']} images) | {r['b_train_epoch_s']:.2f} s vs "
                    f"{d:.2f} s | {speed} (target >= 5x) |" if d else
                    f"| 2 | epoch fed in memory ({r['images']} images) | {r['b_train_epoch_s']:.2f} s | {speed} |")
    return r


def part3(out: Path, dry: bool, data: Path | None, limit: float) -> dict:
    cmd = [sys.executable, str(BENCH / "cifar_airbench.py"), "--out", str(out / "part3.json")]
    cmd += (["--data", str(data)] if data else []) + (["--dry-run"] if dry else [])
    code, log, wall = run(cmd, limit)
    r = _result(code, log, out / "part3.json")
    if r["status"] == "ok":
        ab, t = r["airbench"], r["cnnlab_seconds_to_target"]
        ab_text = f"{ab['seconds']:.2f} s, {ab['test_acc'] * 100:.2f}%" if ab["status"] == "ok" else ab["reason"]
        ratio = f"{r['ratio_to_airbench']:.2f}x (target <= 1.5x)" if r["ratio_to_airbench"] else "n/a"
        best = max(acc for _, _, acc in r["cnnlab"]["timeline"])
        reached = f"{t:.1f} s to {r['target_acc'] * 100:.2f}%" if t is not None else f"not reached (best {best * 100:.2f}%)"
        r["row"] = f"| 3 | CIFAR-10: cifar10_fast vs airbench94 | cnnlab {reached}; airbench94: {ab_text} | {ratio} |"
    return r


def part4(out: Path, dry: bool, data: Path | None, limit: float) -> dict:
    fashion = find_fashion(data)
    cmd = [sys.executable, str(BENCH / "study_workers.py"), "--part", "gpu", "--out", str(out / "part4")]
    cmd += ["--scale", "tiny", "--device", "cpu"] if dry else []
    code, log, wall = run(cmd, limit, {"CNNLAB_FASHION_MNIST": str(fashion)})
    r = _result(code, log, out / "part4" / "results.json")
    if r["status"] == "ok":
        g = r["gpu"]
        n = max(int(k.removeprefix("gpu_workers")) for k in g if k.startswith("gpu_workers"))
        r["row"] = (f"| 4 | {n} study runs sharing the GPU vs one by one | {g[f'gpu_workers{n}']['wall_seconds']:.1f} s vs "
                    f"{g['gpu_workers1']['wall_seconds']:.1f} s | {g['ratio']:.2f} (target < 0.5) |")
    return r


def part5(out: Path, dry: bool, data: Path | None, limit: float) -> dict:
    import torch

    gpus = torch.cuda.device_count()
    if gpus < 2 and not dry:
        return {"status": "skipped", "reason": f"{gpus} GPU(s): 2 processes on one GPU is not a scaling figure"}
    fashion = find_fashion(data)
    common = [f"data.path={fashion}", f"train.out_dir={out / 'part5'}", "-q"]
    if dry:
        common += ["device=cpu", "train.epochs=1", "data.limit_train=512", "data.limit_test=256"]
    times = {}
    for n in (1, 2):
        code, log, wall = run([sys.executable, "-m", "cnnlab", "train", str(ROOT / "configs" / "fashion_mnist_cnn.yaml"),
                               *common, *(["--nproc", "2"] if n == 2 else [])], limit / 2)
        if code != 0:
            return {"status": "failed", "reason": log.strip().splitlines()[-1] if log.strip() else f"exit {code}"}
        run_dir = Path(log.strip().splitlines()[-1])
        summary = json.loads((run_dir / "summary.json").read_text())
        times[n] = {"train_seconds": summary["wall_seconds"], "test_acc": summary["test_acc"]}
    ratio = times[2]["train_seconds"] / times[1]["train_seconds"]
    return {"status": "ok", "times": times, "ratio": ratio,
            "row": f"| 5 | DDP 2 processes vs 1, Fashion-MNIST preset | {times[2]['train_seconds']:.1f} s vs "
                   f"{times[1]['train_seconds']:.1f} s | {ratio:.2f} |"}


def _result(code: int, log: str, path: Path) -> dict:
    if code != 0 or not path.is_file():
        tail = [line for line in log.strip().splitlines() if line.strip()][-3:]
        return {"status": "failed", "reason": f"exit {code}: " + " / ".join(tail)}
    return {"status": "ok", **json.loads(path.read_text())}


PARTS: dict[int, Callable[..., dict]] = {1: part1, 2: part2, 3: part3, 4: part4, 5: part5}


def machine() -> str:
    import torch

    gpu = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) or "no GPU"
    return f"{gpu}; {os.cpu_count()} CPU cores; torch {torch.__version__}; {platform.node()}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="every part for a few steps on the CPU")
    ap.add_argument("--parts", default="1,2,3,4,5", help="comma-separated part numbers")
    ap.add_argument("--data", type=Path, default=None, help="folder with fashion-mnist/ and cifar10-jpeg.zip or .npz")
    ap.add_argument("--out", type=Path, default=BENCH / "out")
    args = ap.parse_args(argv)
    parts = [int(p) for p in args.parts.split(",") if p.strip()]
    if any(p not in PARTS for p in parts):
        print(f"--parts: choose from {', '.join(map(str, PARTS))}", file=sys.stderr)
        return 2
    out = args.out / ("gpu-dry" if args.dry_run else "gpu")
    out.mkdir(parents=True, exist_ok=True)
    report_path = args.out / ("gpu-dry.json" if args.dry_run else "gpu.json")
    # Parts run in separate calls (the data of all of them does not travel at once) add up in one report.
    report = json.loads(report_path.read_text()) if report_path.is_file() else {"parts": {}}
    report.update({"machine": machine(), "dry_run": args.dry_run, "date": time.strftime("%Y-%m-%d %H:%M")})
    for p in parts:
        start = time.perf_counter()
        try:
            r = PARTS[p](out, args.dry_run, args.data, DRY_LIMIT if args.dry_run else LIMITS[p])
        except FileNotFoundError as e:
            r = {"status": "skipped", "reason": str(e)}
        r["part_seconds"] = round(time.perf_counter() - start, 1)
        report["parts"][str(p)] = r
        print(f"part {p}: {r['status']} in {r['part_seconds']:.0f} s" + (f": {r['reason']}" if "reason" in r else ""),
              flush=True)
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    table = ["| part | figure | measured | ratio |", "|--:|---|---|---|"]
    for p, r in sorted(report["parts"].items()):
        table.append(r.get("row") or f"| {p} | {r['status']} | {r.get('reason', '')} | |")
    md = report_path.with_suffix(".md")
    md.write_text(f"Machine: {report['machine']} ({report['date']}{', dry run on CPU' if args.dry_run else ''})\n\n"
                  + "\n".join(table) + "\n")
    print(md.read_text())
    print(report_path)
    return 0 if all(r["status"] != "failed" for r in report["parts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
