"""Benchmark: what `cnnlab report` costs, for a run with a dozen figures and a 12-run study.

The subjects are made first, as a user would make them (their cost is not the measure):
  run    the Fashion-MNIST preset for 1 epoch on 10,000 training images (the full 10,000-image
         test split), then every analysis (kernels, features, errors, cam, and landscape on a
         small grid): 4 figures of the run's own + 10 of the analyses
  study  an ablation of a small CNN on 1,000 Fashion-MNIST images, 2 epochs: base, dropout 0.5,
         Adam, no BN, x seeds 0, 1, 2 = 12 runs
Then each report is written by its own `cnnlab report` process, timed around the whole
command (start-up included): the run twice, first computing the confusion matrix on the test
split (evaluate had not run), then with it cached; the study once; and both as Markdown.
File sizes and the number of inlined figures are read from what was written.

    python bench/report_cost.py [--quick] [--out bench/out/report_cost.json]

--quick: tiny subjects (600 images, one analysis, a 4-run study), to check the script.
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

import yaml

ROOT = Path(__file__).resolve().parents[1]
FASHION = Path(os.environ.get("CNNLAB_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
ANALYSES = {"kernels": [], "features": [], "errors": [], "cam": [],
            "landscape": ["--grid", "7", "--steps", "21", "--images", "512"]}


def cnnlab(*args: object, cwd: Path = ROOT) -> tuple[str, float]:
    start = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "cnnlab", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    if p.returncode != 0:
        raise SystemExit(f"cnnlab {' '.join(map(str, args))} failed:\n{p.stderr}")
    return p.stdout.strip().splitlines()[-1], time.perf_counter() - start


def make_run(work: Path, quick: bool) -> Path:
    n = 600 if quick else 10_000
    line, _ = cnnlab("train", ROOT / "configs" / "fashion_mnist_cnn.yaml", f"data.path={FASHION}", "train.epochs=1",
                     f"data.limit_train={n}", f"train.out_dir={work / 'runs'}", "-q")
    run = Path(line)
    for what, options in ANALYSES.items():
        if quick and what != "kernels":
            continue
        cnnlab("analyze", run, what, *options)
    return run


def make_study(work: Path, quick: bool) -> Path:
    base = {"name": "report-bench", "seed": 0, "device": "cpu",
            "data": {"format": "idx", "path": str(FASHION), "limit_train": 1000, "limit_test": 1000, "val_fraction": 0.2},
            "model": {"name": "cnn", "channels": [8, 16], "norm": "batch"},
            "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9}, "train": {"epochs": 2, "batch_size": 50}}
    axes = {"model.dropout": [0.0, 0.5]} if quick else {
        "model.dropout": [0.0, 0.5], "optimizer": {"adam": {"optim.name": "adam", "optim.lr": 0.003}},
        "model.norm": ["batch", "none"]}
    (work / "base.yaml").write_text(yaml.safe_dump(base))
    study = {"base": "base.yaml", "out_dir": str(work / "studies"), "mode": "ablation",
             "seeds": [0, 1] if quick else [0, 1, 2], "axes": axes}
    (work / "ablation.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    line, _ = cnnlab("study", work / "ablation.yaml")
    return Path(line)


def measure(target: Path, work: Path, name: str) -> dict:
    html, seconds = cnnlab("report", target, "--out", work / f"{name}.html")
    text = Path(html).read_text(encoding="utf-8")
    md, md_seconds = cnnlab("report", target, "--format", "md", "--out", work / f"{name}.md")
    files = list((work / f"{name}_files").iterdir())
    return {"seconds": round(seconds, 2), "bytes": len(text.encode()), "figures": text.count("<img "),
            "md_seconds": round(md_seconds, 2), "md_bytes": Path(md).stat().st_size + sum(f.stat().st_size for f in files),
            "md_figures": len(files)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "report_cost")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "report_cost.json")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    run, study = make_run(args.work, args.quick), make_study(args.work, args.quick)
    setup = time.perf_counter() - start
    for stale in run.glob("eval-*.json"):  # the first report computes the confusion matrix, as for a fresh run
        stale.unlink()
    first = measure(run, args.work, "run")  # computes the evaluation
    cached = measure(run, args.work, "run-again")  # evaluation cached in the run
    result = {
        "quick": args.quick, "machine": f"{platform.machine()}, {os.cpu_count()} cores", "setup_seconds": round(setup, 1),
        "run": {"dir": str(run), "first": first, "cached": cached,
                "test_images": json.loads((run / "data.json").read_text())["sizes"].get("test")},
        "study": {"dir": str(study), "runs": len(list((study / "runs").iterdir())), **measure(study, args.work, "study")},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
