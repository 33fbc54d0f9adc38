"""Where a LeNet training step spends its time: forward and backward of each layer.

    PYTHONPATH=. python bench/scratch/layer_profile.py [--batch 64] [--steps 200]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np

from bench.scratch.stack import MNIST_MEAN, MNIST_STD, lenet, load_mnist, standardize
from cnnlab.scratch import SGD, SoftmaxCrossEntropy


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/work/shared/datasets/mnist")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args(argv)
    x, y = load_mnist(args.data, "train", limit=100 * args.batch)
    x = standardize(x, MNIST_MEAN, MNIST_STD)
    model = lenet(rng=np.random.default_rng(0))
    loss_fn, optimizer = SoftmaxCrossEntropy(), SGD(model.parameters(), lr=0.01, momentum=0.9)
    totals: dict[str, float] = defaultdict(float)
    warmup = 20
    for step in range(args.steps + warmup):
        # Real, changing batches: a model overfitting one batch drives gradients into
        # float32 denormals, which are many times slower on x86 and would skew the profile.
        start = (step % 100) * args.batch
        xb, yb = x[start:start + args.batch], y[start:start + args.batch]
        timings = []
        h = xb
        for index, layer in enumerate(model.layers):
            t = time.perf_counter()
            h = layer.forward(h)
            timings.append((f"{index} {type(layer).__name__} forward", time.perf_counter() - t))
        t = time.perf_counter()
        loss_fn.forward(h, yb)
        grad = loss_fn.backward().astype(h.dtype)
        timings.append(("loss", time.perf_counter() - t))
        for index in range(len(model.layers) - 1, -1, -1):
            layer = model.layers[index]
            t = time.perf_counter()
            if index == 0:
                layer.backward_params_only(grad)
            else:
                grad = layer.backward(grad)
            timings.append((f"{index} {type(layer).__name__} backward", time.perf_counter() - t))
        t = time.perf_counter()
        optimizer.step()
        timings.append(("optimizer", time.perf_counter() - t))
        if step >= warmup:
            for name, seconds in timings:
                totals[name] += seconds
    total = sum(totals.values())
    print(f"batch {args.batch}, mean over {args.steps} steps")
    for name, seconds in totals.items():
        ms = 1e3 * seconds / args.steps
        print(f"  {name:<28} {ms:7.3f} ms  {100 * seconds / total:5.1f}%")
    print(f"  {'total':<28} {1e3 * total / args.steps:7.3f} ms")


if __name__ == "__main__":
    main()
