"""Benchmark: flipped labels on MNIST found from 5-fold out-of-fold probabilities and cleanlab.

Writes an IDX copy of the first N real MNIST training images (and 2,000 test images) with a
known, seeded fraction of the training labels flipped to another class; runs a `cv: 5` study of
the mnist_lenet preset's network and optimizer (a few epochs) on it with `cnnlab study`, whose
fold runs keep their held-out probabilities (heldout.npz); then `audit_labels` ranks the likely
wrong labels, and the flipped positions score it: precision and recall of the set cleanlab
flags, and of its first k for k = the number flipped. Writes bench/out/audit_labels.json.
Usage:

    .venv/bin/python bench/audit_labels.py [--n 20000] [--flip 0.05] [--folds 5] [--epochs 5]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import platform
import struct
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
MNIST = Path(os.environ.get("CNNLAB_SHARED", ROOT.parent / "shared")) / "datasets" / "mnist"


def read_idx(path: Path) -> np.ndarray:
    from cnnlab.data.read.idx import read_idx as read

    return read(path)


def write_idx(path: Path, arr: np.ndarray) -> None:
    """An IDX file (ubyte) as the MNIST files are: magic, dimensions, the bytes; gzip."""
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes())


def planted(dest: Path, n: int, flip: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The flipped copy in `dest`: (flipped positions, the true labels of the copy's train split)."""
    dest.mkdir(parents=True, exist_ok=True)
    x = read_idx(MNIST / "train-images-idx3-ubyte.gz")[:n]
    y = read_idx(MNIST / "train-labels-idx1-ubyte.gz")[:n].astype(np.int64)
    rng = np.random.default_rng(seed)
    where = np.sort(rng.choice(n, round(flip * n), replace=False))
    given = y.copy()
    given[where] = (y[where] + rng.integers(1, 10, len(where))) % 10  # always another class
    write_idx(dest / "train-images-idx3-ubyte.gz", x)
    write_idx(dest / "train-labels-idx1-ubyte.gz", given)
    write_idx(dest / "t10k-images-idx3-ubyte.gz", read_idx(MNIST / "t10k-images-idx3-ubyte.gz")[:2000])
    write_idx(dest / "t10k-labels-idx1-ubyte.gz", read_idx(MNIST / "t10k-labels-idx1-ubyte.gz")[:2000])
    return where, y


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000, help="training images")
    ap.add_argument("--flip", type=float, default=0.05, help="fraction of training labels flipped")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--work", default=str(ROOT / "bench" / "out" / "audit_labels"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "audit_labels.json"))
    args = ap.parse_args()

    from cnnlab.audit.labels import LABELS_CSV, audit_labels
    from cnnlab.cli import main as cnnlab
    from cnnlab.resolve import load_config

    work = Path(args.work)
    where, true = planted(work / "mnist", args.n, args.flip, seed=7)
    preset = yaml.safe_load((ROOT / "configs" / "mnist_lenet.yaml").read_text())
    base = {**preset, "name": "labels", "device": "cpu",
            "data": {"format": "idx", "path": str(work / "mnist")},
            "train": {**preset["train"], "epochs": args.epochs, "out_dir": str(work / "runs")}}
    (work / "base.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    study = work / "study.yaml"
    study.write_text(yaml.safe_dump({"name": f"labels-{stamp}", "base": "base.yaml", "mode": "grid",
                                     "axes": {"model.dropout": [0.2]}, "seeds": [0], "cv": args.folds,
                                     "out_dir": str(work / "studies")}, sort_keys=False))
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    assert cnnlab(["study", str(study)]) == 0
    study_seconds = time.perf_counter() - start
    folder = work / "studies" / f"labels-{stamp}"
    start = time.perf_counter()
    summary = audit_labels(load_config(work / "base.yaml"), folder, work / "audit")
    audit_seconds = time.perf_counter() - start

    rows = list(csv.DictReader((work / "audit" / LABELS_CSV).open()))
    found = [int(r["index"]) for r in rows]
    flipped = set(where.tolist())
    hits = len(set(found) & flipped)
    k = len(flipped)
    top_hits = len(set(found[:k]) & flipped)
    suggested_right = sum(r["suggested_label"] == str(true[int(r["index"])]) for r in rows
                          if int(r["index"]) in flipped)
    val_accs = [json.loads((Path(r) / "summary.json").read_text())["val_acc"] for r in summary["runs"]]
    result = {
        "command": "python bench/audit_labels.py " + " ".join(f"--{k} {v}" for k, v in
                                                               (("n", args.n), ("flip", args.flip),
                                                                ("folds", args.folds), ("epochs", args.epochs))),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared with other work)",
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "training_images": args.n, "flipped": k, "folds": args.folds, "epochs": args.epochs,
        "model": "lenet (configs/mnist_lenet.yaml: BN, dropout 0.2, SGD nesterov 0.05, exponential 0.8)",
        "fold_val_acc_on_given_labels": [round(a, 4) for a in val_accs],
        "images_with_oof_probabilities": summary["images_with_heldout_probabilities"],
        "flagged": len(found), "flagged_and_flipped": hits,
        "precision": round(hits / max(1, len(found)), 4), "recall": round(hits / k, 4),
        "precision_recall_at_k_flipped": round(top_hits / k, 4),
        "flipped_flagged_whose_suggestion_is_the_true_label": round(suggested_right / max(1, hits), 4),
        "study_seconds": round(study_seconds, 1), "audit_seconds": round(audit_seconds, 1),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
