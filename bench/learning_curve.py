"""A learning curve of the small VGG on CIFAR-10 (configs/cifar10_small_vgg_as_written.yaml: the write-up's
net, 285,162 parameters, Adam 1e-3, no augmentation, 20 epochs), and its power-law fit checked against a
size it did not see (issue 24, bench/RESULTS.md).

`cnnlab study` runs `mode: learning_curve` over --sizes images per class (nested, seeded, stratified
subsets of the training split, drawn after a 10% validation split) for --seeds seeds; the study writes
learning_curve.md / .json / .png. Then --check-size images per class are trained with the same seeds
(`cnnlab train`, the same validation images), and the study's fit's prediction there (an extrapolation
it never saw) is compared with what they measure; the curve is also fitted again without its largest
size, and that fit's prediction at the largest size compared with the study's own measurement.

    python bench/learning_curve.py                      # CIFAR-10 JPEG zip, 5 sizes x 3 seeds
    python bench/learning_curve.py --tiny               # MNIST, a minute: checks the script end to end

The run is CPU-bound: --epochs, --limit-val and --limit-test keep it within minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cnnlab.studies.learning_curve import fit_power_law  # noqa: E402

CIFAR = ROOT.parent / "shared" / "datasets" / "cifar10" / "cifar10-jpeg.zip"
MNIST = ROOT.parent / "shared" / "datasets" / "mnist"


def study_spec(args: argparse.Namespace, out: Path) -> dict:
    """The study file: the preset as base, the data and budget as overrides."""
    if args.tiny:
        base = {"name": "tiny", "seed": 0, "device": "cpu",
                "data": {"format": "idx", "path": str(MNIST), "limit_train": 3000, "val_fraction": 0.2},
                "model": {"name": "cnn", "channels": [4], "norm": "batch"},
                "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
                "train": {"epochs": 1, "batch_size": 32}}
        overrides = {"data.limit_test": 500}
    else:
        base = str(ROOT / "configs" / "cifar10_small_vgg_as_written.yaml")
        overrides = {"data.format": "image_folder", "data.path": str(args.data), "data.val_fraction": 0.1,
                     "data.limit_val": args.limit_val, "data.limit_test": args.limit_test, "train.epochs": args.epochs,
                     "device": "cpu"}
    return {"name": args.name, "base": base, "mode": "learning_curve", "sizes": args.sizes, "seeds": args.seeds,
            "overrides": overrides, "metric": "val_acc", "table": ["val_acc", "test_acc"],
            **({"target": args.target} if args.target is not None else {}), "out_dir": str(out / "studies")}


def train_check_size(study: Path, args: argparse.Namespace) -> list[float]:
    """--check-size images per class, one `cnnlab train` per seed with the study's base and overrides:
    the val errors the fit is checked against."""
    from cnnlab.studies.spec import load_study, yaml_value

    s = load_study(study)
    cfg = args.out / "check_base.yaml"
    cfg.write_text(yaml.safe_dump({**s.base_raw, "name": "check"}, sort_keys=False))
    errors = []
    for seed in args.seeds:
        out = args.out / "check" / f"n{args.check_size}_s{seed}"  # one run directory inside: reused on a rerun
        done = [d for d in out.glob("*/summary.json")] if out.is_dir() else []
        if not done:
            p = subprocess.run([sys.executable, "-m", "cnnlab", "train", str(cfg), f"seed={seed}",
                                f"data.train_per_class={yaml_value(args.check_size)}", f"train.out_dir={out}", "-q"],
                               check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                               capture_output=True, text=True)
            done = [Path(p.stdout.strip().splitlines()[-1]) / "summary.json"]
        errors.append(1 - json.loads(done[0].read_text())["val_acc"])
    return errors


def unseen_check(folder: Path, size: int, errors: list[float]) -> dict:
    """The study's fit at a size it never saw, against the mean and 95% CI measured there."""
    from scipy import stats

    from cnnlab.studies.learning_curve import Fit

    saved = json.loads((folder / "learning_curve.json").read_text())["curves"][0]["fit"]
    fit = Fit(np.array(list(saved["params"].values())), np.array(saved["cov"]), saved["dof"], saved["points"], saved["note"])
    lo, hi = fit.band([size])
    mean, half = float(np.mean(errors)), float(stats.t.ppf(0.975, len(errors) - 1) * np.std(errors, ddof=1)
                                               / math.sqrt(len(errors)))
    predicted = float(fit.predict([size])[0])
    return {"size": size, "predicted_error": predicted, "predicted_band": [float(lo[0]), float(hi[0])],
            "measured_errors": errors, "measured_error": mean, "measured_ci": [mean - half, mean + half],
            "measured_inside_band": bool(lo[0] <= mean <= hi[0]),
            "prediction_inside_measured_ci": bool(mean - half <= predicted <= mean + half)}


def held_out_check(folder: Path) -> dict:
    """Fit without the largest size; its prediction there against the measured mean and 95% CI."""
    curve = json.loads((folder / "learning_curve.json").read_text())
    rows = [r for r in _csv(folder / "results.csv") if r["status"] in ("completed", "early_stopped")]
    sizes = sorted(curve["sizes"])
    largest = sizes[-1]
    size_of = {r["variant"]: int(r["variant"].split("=")[1].split("/")[0]) for r in rows}
    x = np.array([size_of[r["variant"]] for r in rows], dtype=float)
    y = np.array([1 - float(r["val_acc"]) for r in rows])
    fit = fit_power_law(list(x[x < largest]), list(y[x < largest]))
    lo, hi = fit.band([largest])
    measured = next(p for p in curve["curves"][0]["points"] if p["size"] == largest)
    predicted = float(fit.predict([largest])[0])
    return {"fit_sizes": sizes[:-1], "fit": fit.to_json(), "held_out_size": largest, "predicted_error": predicted,
            "predicted_band": [float(lo[0]), float(hi[0])], "measured_error": measured["mean"],
            "measured_ci": measured["ci"], "n": measured["n"],
            "measured_inside_band": bool(lo[0] <= measured["mean"] <= hi[0]),
            "prediction_inside_measured_ci": bool(measured["ci"][0] is not None
                                                  and measured["ci"][0] <= predicted <= measured["ci"][1])}


def _csv(path: Path) -> list[dict]:
    import csv

    return list(csv.DictReader(path.open()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=CIFAR, help="the CIFAR-10 JPEG zip (image_folder)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100, 200, 400], help="images per class")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--check-size", type=int, default=800, help="images per class the fit is checked at (0: none)")
    ap.add_argument("--limit-val", type=int, default=2000)
    ap.add_argument("--limit-test", type=int, default=1000)
    ap.add_argument("--target", type=float, default=None, help="val accuracy to reach (default: the study's)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--name", default="cifar10_small_vgg_learning_curve")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "learning_curve")
    ap.add_argument("--tiny", action="store_true", help="MNIST, a tiny CNN, 1 epoch: a check of the script")
    args = ap.parse_args()
    if args.tiny:
        args.sizes, args.seeds, args.name, args.check_size = [5, 10, 20, 40], [0, 1], "tiny_learning_curve", 80
    args.out.mkdir(parents=True, exist_ok=True)
    study = args.out / f"{args.name}.yaml"
    study.write_text(yaml.safe_dump(study_spec(args, args.out), sort_keys=False))
    start = time.monotonic()
    cmd = [sys.executable, "-m", "cnnlab", "study", str(study), "--workers", str(args.workers)]
    subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.monotonic() - start
    folder = args.out / "studies" / args.name
    check = held_out_check(folder)
    start = time.monotonic()
    unseen = unseen_check(folder, args.check_size, train_check_size(study, args)) if args.check_size else None
    check_wall = time.monotonic() - start
    curve = json.loads((folder / "learning_curve.json").read_text())
    result = {"command": " ".join(["python", "bench/learning_curve.py", *sys.argv[1:]]), "wall_seconds": round(wall, 1),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "sizes": args.sizes, "seeds": args.seeds, "epochs": None if args.tiny else args.epochs,
              "points": curve["curves"][0]["points"], "fit": curve["curves"][0]["fit"], "answers": curve["answers"],
              "held_out": check, "unseen": unseen, "check_wall_seconds": round(check_wall, 1)}
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "points"}, indent=2))
    k = 100
    m = check
    print(f"\nfit on {m['fit_sizes']} predicts {m['predicted_error'] * k:.2f}% val error at {m['held_out_size']}/class "
          f"(95% band {m['predicted_band'][0] * k:.2f}-{m['predicted_band'][1] * k:.2f}); measured "
          f"{m['measured_error'] * k:.2f}% (95% CI {_pct(m['measured_ci'][0])}-{_pct(m['measured_ci'][1])}, "
          f"n={m['n']}); wall {wall / 60:.1f} min")
    if unseen:
        u = unseen
        print(f"the study's fit predicts {u['predicted_error'] * k:.2f}% at {u['size']}/class (95% band "
              f"{u['predicted_band'][0] * k:.2f}-{u['predicted_band'][1] * k:.2f}); measured {u['measured_error'] * k:.2f}% "
              f"(95% CI {_pct(u['measured_ci'][0])}-{_pct(u['measured_ci'][1])}); {check_wall / 60:.1f} min")


def _pct(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v * 100:.2f}"


if __name__ == "__main__":
    main()
