"""LeNet training-step time: NumPy engine vs PyTorch (CPU) vs a loop-design baseline.

    PYTHONPATH=. python bench/scratch/step_time.py [--rounds 5] [--steps 40]

All contenders train the same architecture on the same MNIST batches with SGD + momentum.
Each measurement runs in its own fresh process: torch's OpenMP workers keep spinning for a
while after each op, and inside one process they would steal the 2 cores from numpy's BLAS
threads (measured: 10-50x slower engine steps right after torch ran). Rounds alternate the
contenders, so a noisy neighbour slows all of them alike; medians over rounds are reported.
Also reported: classifying the 10,000 test images, and peak numpy memory (tracemalloc) of a
batch-256 training step and of convolution forwards at growing batch sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from bench.scratch.stack import (
    MNIST_MEAN,
    MNIST_STD,
    lenet,
    load_mnist,
    predict,
    standardize,
    train_step,
)
from cnnlab.scratch import SGD, SoftmaxCrossEntropy
from cnnlab.scratch.layers import conv
from cnnlab.scratch.threads import blas_threads

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from loop_baseline import loop_version  # noqa: E402


def load(data: str, split: str, limit: int | None = None):
    x, y = load_mnist(data, split, limit=limit)
    return standardize(x, MNIST_MEAN, MNIST_STD), y


# --- workers: one measurement per process ------------------------------------------------------
def worker_engine(x, y, batch: int, steps: int, loop: bool = False) -> list[float]:
    """ms per step of the engine (or the loop design) over consecutive batches."""
    model = lenet(rng=np.random.default_rng(0))
    if loop:
        model = loop_version(model)
    loss_fn, optimizer = SoftmaxCrossEntropy(), SGD(model.parameters(), lr=0.01, momentum=0.9)
    data = [(x[i:i + batch], y[i:i + batch]) for i in range(0, batch * (steps + 3), batch)]
    for xb, yb in data[:3]:  # warm-up
        train_step(model, loss_fn, optimizer, xb, yb)
    times = []
    for xb, yb in data[3:]:
        start = time.perf_counter()
        train_step(model, loss_fn, optimizer, xb, yb)
        times.append(1e3 * (time.perf_counter() - start))
    return times


def worker_torch(x, y, batch: int, steps: int) -> list[float]:
    """ms per step of the same network in torch (default threads), same initial weights."""
    import torch
    nn = torch.nn
    model = lenet(rng=np.random.default_rng(0))
    ref = nn.Sequential(nn.Conv2d(1, 6, 5), nn.BatchNorm2d(6), nn.ReLU(), nn.Dropout(0.5),
                        nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(256, 10))
    ref.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    optimizer = torch.optim.SGD(ref.parameters(), lr=0.01, momentum=0.9)
    data = [(torch.from_numpy(x[i:i + batch]), torch.from_numpy(y[i:i + batch]))
            for i in range(0, batch * (steps + 3), batch)]
    times = []
    for index, (xb, yb) in enumerate(data):
        start = time.perf_counter()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(ref(xb), yb).backward()
        optimizer.step()
        if index >= 3:
            times.append(1e3 * (time.perf_counter() - start))
    return times


def worker_inference(data: str, loop_subset: int) -> dict:
    """Seconds to classify the 10,000 test images; the loop design on a subset only."""
    x_test, _ = load(data, "test")
    model = lenet(rng=np.random.default_rng(0))
    predict(model, x_test[:1000])  # warm-up
    start = time.perf_counter()
    predict(model, x_test, batch_size=1000)
    engine_s = time.perf_counter() - start
    loop_model = loop_version(model)
    start = time.perf_counter()
    predict(loop_model, x_test[:loop_subset], batch_size=250)
    loop_s = time.perf_counter() - start
    return {"engine_s": engine_s, "loop_subset": loop_subset, "loop_subset_s": loop_s,
            "loop_extrapolated_s": loop_s * len(x_test) / loop_subset}


def peak_mib(fn) -> float:
    """Peak traced allocation (numpy registers its buffers with tracemalloc) during fn, MiB."""
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def worker_memory(data: str) -> dict:
    """Peak memory of a batch-256 step; conv forwards and predict() at growing batch sizes."""
    x, y = load(data, "train", limit=4096)
    model = lenet(rng=np.random.default_rng(0))
    loss_fn, optimizer = SoftmaxCrossEntropy(), SGD(model.parameters(), lr=0.01, momentum=0.9)
    train_step(model, loss_fn, optimizer, x[:256], y[:256])
    result = {"step256_mib": peak_mib(lambda: train_step(model, loss_fn, optimizer, x[:256],
                                                         y[:256])),
              "budget_mib": conv.COLUMN_BUDGET_BYTES / 2**20, "conv_rows": []}
    layer = model[0]  # conv1: 25 column rows per output pixel, the biggest column matrix
    default = conv.COLUMN_BUDGET_BYTES
    for batch in (256, 1024, 4096, 16384):
        xb = np.ascontiguousarray(np.resize(x, (batch, *x.shape[1:])))
        # The input exists before tracing starts; the output is allocated inside and is needed.
        out_mib = batch * 6 * 24 * 24 * 4 / 2**20
        row = {"batch": batch, "out_mib": out_mib, "cols_mib": 25 * batch * 576 * 4 / 2**20}
        for label, budget in (("chunked", default), ("unbounded", 2**62)):
            conv.COLUMN_BUDGET_BYTES = budget
            row[label] = peak_mib(lambda xb=xb: layer.forward(xb, training=False)) - out_mib
        conv.COLUMN_BUDGET_BYTES = default
        result["conv_rows"].append(row)
    x_test, _ = load(data, "test")
    result["predict10k_mib"] = peak_mib(lambda: predict(model, x_test, 1000)) - \
        x_test.nbytes / 2**20
    return result


def run_worker(kind: str, **options) -> object:
    """Run one measurement in a fresh interpreter and return its JSON result."""
    args = [sys.executable, __file__, "--worker", kind]
    for key, value in options.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    env = {**os.environ, "PYTHONPATH": str(HERE.parents[1])}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/work/shared/datasets/mnist")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per round")
    parser.add_argument("--loop-steps", type=int, default=4)
    parser.add_argument("--loop-subset", type=int, default=500)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=64, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker is not None:
        if args.worker in ("engine", "engine1", "loop", "torch"):
            x, y = load(args.data, "train", limit=args.batch * (args.steps + 3))
        if args.worker == "engine":
            out = worker_engine(x, y, args.batch, args.steps)
        elif args.worker == "engine1":
            with blas_threads(1):
                out = worker_engine(x, y, args.batch, args.steps)
        elif args.worker == "loop":
            out = worker_engine(x, y, args.batch, args.steps, loop=True)
        elif args.worker == "torch":
            out = worker_torch(x, y, args.batch, args.steps)
        elif args.worker == "inference":
            out = worker_inference(args.data, args.loop_subset)
        else:
            out = worker_memory(args.data)
        print(json.dumps(out))
        return

    import torch  # only for the version line; the workers import it themselves
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, numpy {np.__version__}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)")
    print(f"load average before: {os.getloadavg()}")
    contenders = {"engine": "engine (numpy default BLAS threads)",
                  "engine1": "engine (1 BLAS thread)", "torch": "torch (default threads)",
                  "loop": "loop design"}
    summary = {}
    for batch in (32, 64):
        per_round: dict[str, list[float]] = {k: [] for k in contenders}
        for r in range(args.rounds):
            for kind in contenders:
                if kind == "loop" and r >= 2:  # ~50x slower: two short rounds are plenty
                    continue
                steps = args.loop_steps if kind == "loop" else args.steps
                times = run_worker(kind, data=args.data, batch=batch, steps=steps)
                per_round[kind].append(statistics.median(times))
        summary[batch] = {k: statistics.median(v) for k, v in per_round.items()}
        print(f"\nbatch {batch}: median ms/step (per-round medians)")
        for kind, label in contenders.items():
            print(f"  {label:<38} {summary[batch][kind]:8.2f}   "
                  f"{[round(v, 2) for v in per_round[kind]]}")
        s = summary[batch]
        print(f"  engine/torch {s['engine'] / s['torch']:.2f}  "
              f"engine(1 thread)/torch {s['engine1'] / s['torch']:.2f}  "
              f"loop/engine {s['loop'] / s['engine']:.1f}x")

    inf = run_worker("inference", data=args.data, loop_subset=args.loop_subset)
    print(f"\nclassify 10,000 test images (eval mode, batches of 1000): engine "
          f"{inf['engine_s']:.2f} s; loop design {inf['loop_subset_s']:.2f} s for "
          f"{inf['loop_subset']} images, extrapolated to {inf['loop_extrapolated_s']:.0f} s "
          f"for 10,000 ({inf['loop_extrapolated_s'] / inf['engine_s']:.0f}x slower)")

    mem = run_worker("memory", data=args.data)
    print(f"\npeak traced memory of one batch-256 training step: {mem['step256_mib']:.1f} MiB")
    print(f"predict() over the 10,000 test images, peak beyond the data: "
          f"{mem['predict10k_mib']:.1f} MiB")
    print(f"conv1 forward (eval): peak working memory beyond its output, MiB (column budget "
          f"{mem['budget_mib']:.0f} MiB)")
    print(f"  {'batch':>6} {'output':>8} {'full cols':>9} {'chunked':>8} {'unbounded':>9}")
    for row in mem["conv_rows"]:
        print(f"  {row['batch']:>6} {row['out_mib']:8.1f} {row['cols_mib']:9.1f} "
              f"{row['chunked']:8.1f} {row['unbounded']:9.1f}")
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
