"""Benchmark: every preset in configs/, end to end on its workload's data layout, on this machine.

The workloads' own data are not here; bench/standins.py writes real images in their layouts
(mnist-original.mat from MNIST, a Kaggle npy/csv from Fashion-MNIST, a face-photo
train/dev/test tree and a Tiny-ImageNet tree from the CIFAR-10 JPEGs), and the CIFAR-10
presets read the shared CIFAR-10 JPEG zip. Each preset runs as a user runs it
(`cnnlab train configs/X.yaml data.path=... [budget overrides]`) in a fresh process.

What is measured per preset:
- `accuracy` presets train to a stated budget on the full stand-in and report val/test
  accuracy and seconds per epoch;
- `timing` presets (the 64-128 px nets that are GPU workloads) train one epoch on a slice,
  and every preset's training throughput is measured on synthetic batches of 128, from
  which the seconds per epoch of the full dataset follow.

    .venv/bin/python bench/presets.py [--only NAME ...] [--standins bench/out/standins]

Results are merged into bench/out/presets.json (one entry per preset) and printed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import standins  # noqa: E402

CIFAR = ["data.format=image_folder", f"data.path={standins.CIFAR_ZIP}"]

# name: (stand-in, overrides, kind, images in the real dataset's training split, budget in words)
PLANS: dict[str, tuple[str, list[str], str, int, str]] = {
    "mnist_lenet": ("mat", [], "accuracy", 60000, "the preset as it is (15 epochs)"),
    "fashion_mnist_npy_resnet": ("kaggle", ["train.epochs=6", "schedule.step_size=3"], "accuracy", 50000,
                                 "6 epochs, lr / 10 after epoch 3 (the preset: 30 epochs, / 10 every 10)"),
    "cifar10_small_vgg": ("cifar", [*CIFAR, "train.epochs=4"], "accuracy", 45000,
                          "4 epochs one-cycle (the preset: 15)"),
    "cifar10_resnet": ("cifar", [*CIFAR, "train.epochs=5"], "accuracy", 45000,
                       "5 epochs one-cycle (the preset: 30)"),
    "cifar10_vgg": ("cifar", [*CIFAR, "data.limit_train=2560", "train.epochs=1"], "timing", 45000,
                    "1 epoch on 2,560 images"),
    "faces_alexnet": ("faces", ["train.epochs=1"], "timing", 45000,
                      "1 epoch on a 2,000-image train/ dev/ test/ tree"),
    "tiny_imagenet_cnn": ("tiny", ["train.epochs=1", "data.limit_train=1000"], "timing", 100000,
                          "1 epoch on 1,000 images"),
    "tiny_imagenet_resnet": ("tiny", ["train.epochs=1", "data.limit_train=500"], "timing", 100000,
                             "1 epoch on 500 images"),
    # The write-ups as written (configs/*_as_written.yaml). "NAME+label" runs NAME with extra overrides.
    "mnist_lenet_as_written": ("mat", [], "accuracy", 600,
                               "the preset as it is: 600 train / 1,000 test, 2 epochs, batch 3, NumPy engine"),
    "cifar10_small_vgg_as_written": ("cifar", CIFAR, "accuracy", 50000, "the preset as it is: 20 epochs"),
    "cifar10_small_vgg_as_written+bn": ("cifar", [*CIFAR, "model.conv_bn=true", "model.fc_bn=true",
                                                  "model.bias=always"], "accuracy", 50000,
                                        "the preset with the write-up's BN net (section 1.3): 20 epochs"),
    "fashion_mnist_npy_resnet_as_written": ("kaggle", ["data.limit_train=5000", "train.epochs=2"], "accuracy", 25000,
                                            "20 min: 2 epochs on 5,000 of the 25,000 training images (224 px)"),
    "faces_alexnet_as_written": ("faces_sample", ["data.limit_train=640", "train.epochs=1"], "timing", 45000,
                                 "1 epoch on 640 images of a train_sample/ dev_sample/ test_sample/ tree"),
    "tiny_imagenet_cnn_as_written": ("tiny", ["data.limit_train=900", "train.epochs=1"], "timing", 90000,
                                     "1 epoch on 900 images"),
    "tiny_imagenet_resnet_as_written": ("tiny", ["data.limit_train=900", "train.epochs=1"], "timing", 90000,
                                        "1 epoch on 900 images"),
    # Fine-tuning presets: the cost of an epoch. The weights are a random-init resnet18 in timm's file layout
    # (this machine cannot download the real ones): the same tensors to load and train, so the same cost; the
    # accuracy they reach says nothing about pretrained weights and is not reported as such.
    "faces_finetune": ("faces", ["data.limit_train=640", "train.epochs=1", "model.pretrained=<weights>"], "timing",
                       45000, "1 epoch on 640 images at 224 px, the head alone (frozen backbone)"),
    "faces_finetune+unfrozen": ("faces", ["data.limit_train=640", "train.epochs=1", "train.freeze=null",
                                          "model.pretrained=<weights>"], "timing", 45000,
                                "1 epoch on 640 images at 224 px, every layer training (epochs 2 on)"),
    "kaggle_finetune": ("kaggle", ["data.limit_train=5000", "train.epochs=2", "model.pretrained=<weights>"], "timing",
                        50000, "2 epochs on 5,000 images at 28 px: the head alone, then every layer"),
}

INPUT = {"mat": (1, 28, 28), "kaggle": (1, 28, 28), "cifar": (3, 32, 32), "faces": (3, 128, 128),
         "tiny": (3, 64, 64)}
# The as-written nets see other sizes and class counts than the fast presets' stand-ins.
AS_WRITTEN_INPUT = {"fashion_mnist_npy_resnet_as_written": ((1, 224, 224), 10),
                    "faces_alexnet_as_written": ((3, 224, 224), 500),
                    "tiny_imagenet_cnn_as_written": ((3, 64, 64), 200),
                    "tiny_imagenet_resnet_as_written": ((3, 64, 64), 200),
                    "faces_finetune": ((3, 224, 224), 500), "kaggle_finetune": ((1, 28, 28), 10)}


def random_weights(base: Path) -> Path:
    """timm's resnet18 at random init, saved as the hub's model.safetensors is (the fine-tuning presets' stand-in)."""
    path = base / "resnet18-random.safetensors"
    if not path.exists():
        import timm
        import torch
        from safetensors.torch import save_file

        torch.manual_seed(0)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(timm.create_model("resnet18", num_classes=1000).state_dict(), str(path))
    return path


def build_standins(base: Path) -> dict[str, Path]:
    """The stand-in datasets, written once (full size where accuracy is measured, slices otherwise)."""
    paths = {"mat": base / "mnist-original.mat", "kaggle": base / "kaggle", "faces": base / "faces",
             "faces_sample": base / "faces_sample", "tiny": base / "tiny-imagenet-200", "cifar": standins.CIFAR_ZIP}
    if not paths["mat"].exists():
        standins.mnist_original_mat(paths["mat"])
    if not (paths["kaggle"] / "test_labels.npy").exists():
        standins.kaggle_npy_csv(paths["kaggle"])
    if not (paths["faces"] / "test").exists():
        standins.faces_folder(paths["faces"], train_per_class=200, dev_per_class=50, test_per_class=100)
    if not (paths["faces_sample"] / "test_sample").exists():
        standins.faces_folder(paths["faces_sample"], train_per_class=64, dev_per_class=10, test_per_class=10,
                              names=("train_sample", "dev_sample", "test_sample"))
    if not (paths["tiny"] / "words.txt").exists():
        standins.tiny_imagenet_folder(paths["tiny"], train_per_class=100, val_per_class=50, test_images=20)
    return paths


def train_throughput(name: str, shape: tuple[int, int, int], batch: int = 128, steps: int = 3,
                     classes: int = 10, overrides: list[str] | None = None) -> float:
    """Training images per second of the preset's model on synthetic batches (channels-last, fp32)."""
    import torch

    from cnnlab.models import build_model
    from cnnlab.resolve import load_config

    cfg = load_config(ROOT / "configs" / f"{name}.yaml", [o for o in overrides or [] if o.startswith("model.")])
    model = build_model(cfg.model, shape, classes).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, *shape).to(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,))

    def step() -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - start)


def run_preset(name: str, data: Path, overrides: list[str], out_dir: Path) -> dict:
    cmd = [sys.executable, "-m", "cnnlab", "train", str(ROOT / "configs" / f"{name}.yaml"), "-q",
           f"data.path={data}", f"train.out_dir={out_dir}", *overrides]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{name}: cnnlab train failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    run_dir = Path(proc.stdout.strip().splitlines()[-1])
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    info = json.loads((run_dir / "data.json").read_text())
    return {"run_dir": str(run_dir), "wall_seconds_whole_command": round(wall, 1),
            "train_seconds": summary["wall_seconds"],
            "seconds_per_epoch": round(sum(r["seconds"] for r in rows) / len(rows), 1),
            "epochs": len(rows), "best_epoch": summary["best_epoch"], "params": summary["params"],
            "val_acc": summary.get("val_acc"), "test_acc": summary.get("test_acc"),
            "val_top5": summary.get("val_top5"), "test_top5": summary.get("test_top5"), "last_epoch": rows[-1],
            **{k: summary.get(k) for k in ("best_train_error", "best_train_error_epoch", "best_test_error",
                                           "best_test_error_epoch")},
            "split_sizes": info.get("sizes")}


def kaggle_submission_accuracy(run_dir: str, kaggle: Path) -> float:
    """`cnnlab predict RUN test.npy` as a Kaggle user runs it, scored against the held-back labels."""
    out = Path(run_dir) / "submission.csv"
    subprocess.run([sys.executable, "-m", "cnnlab", "predict", run_dir, str(kaggle / "test.npy"), "--out", str(out)],
                   check=True, capture_output=True, cwd=ROOT)
    with out.open() as f:
        rows = list(csv.DictReader(f))
    truth = np.load(kaggle / "test_labels.npy", allow_pickle=False)
    pred = np.array([int(r["label"]) for r in sorted(rows, key=lambda r: int(r["image_id"]))])
    return float((pred == truth).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=None, help="preset names (default: all)")
    ap.add_argument("--standins", type=Path, default=ROOT / "bench" / "out" / "standins")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "presets.json")
    args = ap.parse_args()

    paths = build_standins(args.standins)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    for name in args.only or PLANS:
        key, overrides, kind, full_train, budget = PLANS[name]
        overrides = [o.replace("<weights>", str(random_weights(args.standins))) for o in overrides]
        preset = name.split("+")[0]
        entry = {"kind": kind, "budget": budget,
                 "command": f"cnnlab train configs/{preset}.yaml data.path=<{key} stand-in> " + " ".join(
                     o for o in overrides if not o.startswith("data.path="))}
        entry.update(run_preset(preset, paths[key], overrides, ROOT / "bench" / "out" / "runs"))
        if preset.startswith("fashion_mnist_npy_resnet"):
            entry["submission_test_acc"] = kaggle_submission_accuracy(entry["run_dir"], paths["kaggle"])
        shape, classes = AS_WRITTEN_INPUT.get(preset, (INPUT.get(key, (3, 128, 128)), 10))
        rate = train_throughput(preset, shape, classes=classes, overrides=overrides)
        entry["train_images_per_s_synthetic"] = round(rate, 1)
        entry["est_train_seconds_per_full_epoch"] = round(full_train / rate)
        entry["full_train_images"] = full_train
        entry["machine"] = f"{os.cpu_count()} cores"
        results[name] = entry
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1))
        tmp.replace(args.out)
        print(json.dumps({name: {k: v for k, v in entry.items() if k != "last_epoch"}}, indent=1), flush=True)


if __name__ == "__main__":
    main()
