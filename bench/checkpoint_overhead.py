"""Benchmark: the cost of in-epoch checkpoints (`train.checkpoint_every`) for every preset.

For each preset in configs/ the real torch engine is built (the preset's model, optimizer,
loss, EMA if any) for the workload's input size and class count, trained for a few steps
on random batches of the preset's batch size (so the optimizer holds its momentum/moment
buffers, as in a real last.pt), then last.pt is written through the run directory (the
atomic write a run makes) several times. Reported: checkpoint size, seconds per save
(median), seconds per training step, and the share of training time that saving every
N steps costs, save / (N x step + save).

    .venv/bin/python bench/checkpoint_overhead.py [--only NAME ...] [--every 100]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The workloads' input shapes and class counts (what each preset trains on).
PRESETS = {
    "fashion_mnist_cnn": ((1, 28, 28), 10),
    "mnist_lenet": ((1, 28, 28), 10),
    "fashion_mnist_npy_resnet": ((1, 28, 28), 10),
    "cifar10_resnet": ((3, 32, 32), 10),
    "cifar10_small_vgg": ((3, 32, 32), 10),
    "cifar10_vgg": ((3, 32, 32), 10),
    "faces_alexnet": ((3, 128, 128), 500),
    "tiny_imagenet_cnn": ((3, 64, 64), 200),
    "tiny_imagenet_resnet": ((3, 64, 64), 200),
}


def measure(name: str, every: int, saves: int = 5, steps: int = 3) -> dict:
    import torch

    from cnnlab import device as devices
    from cnnlab.models import build_model
    from cnnlab.resolve import load_config
    from cnnlab.rundir import Run
    from cnnlab.training.losses import LOSSES
    from cnnlab.training.torch_engine import TorchEngine

    shape, classes = PRESETS[name]
    cfg = load_config(ROOT / "configs" / f"{name}.yaml", ["device=cpu"])
    dev = torch.device("cpu")
    model = build_model(cfg.model, shape, classes)
    engine = TorchEngine(cfg, model, dev, LOSSES.build(cfg.loss, num_classes=classes),
                         devices.autocast(cfg.train.amp, dev))
    batch = cfg.train.batch_size
    x, y = torch.randn(batch, *shape), torch.randint(0, classes, (batch,))
    engine.train_step(x, y)  # warm-up; the optimizer's buffers exist from here on
    start = time.perf_counter()
    for _ in range(steps):
        engine.train_step(x, y)
    step_s = (time.perf_counter() - start) / steps
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(Path(tmp))
        for _ in range(saves):
            start = time.perf_counter()
            run.write_checkpoint("last", {**engine.state(), "partial": {"epoch": 1, "step": every}}, "torch")
            times.append(time.perf_counter() - start)
        size = run.checkpoint_path("last").stat().st_size
    save_s = statistics.median(times)
    return {"preset": name, "params": sum(p.numel() for p in model.parameters()), "batch": batch,
            "mib": round(size / 2**20, 1), "save_s": round(save_s, 4), "step_s": round(step_s, 4),
            "every": every, "share": round(save_s / (every * step_s + save_s), 5)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=list(PRESETS))
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "checkpoint_overhead.json")
    args = ap.parse_args()
    rows = []
    print("| preset | params | batch | last.pt | s per save | s per step (CPU) | share of training, every "
          f"{args.every} steps |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in args.only:
        r = measure(name, args.every)
        rows.append(r)
        print(f"| `{name}` | {r['params'] / 1e6:.2f}M | {r['batch']} | {r['mib']} MiB | {r['save_s']:.3f} | "
              f"{r['step_s']:.3f} | {r['share'] * 100:.2f}% |", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
