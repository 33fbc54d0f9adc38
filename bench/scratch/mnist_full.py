"""Train the NumPy-engine LeNet on all 60,000 MNIST images; report test accuracy and wall time.

    PYTHONPATH=. python bench/scratch/mnist_full.py [--epochs 15] [--dropout 0.2] ...

Defaults are the tuned run: SGD with Nesterov momentum 0.9, lr 0.05 decayed x0.8 per epoch,
batch 64, dropout 0.2 (lenet's default 0.5 under-fits this small net a little: ~98.7%).
Training time counts every epoch (shuffling, forward, backward, updates) but not the data
loading or the per-epoch test evaluation, which is timed separately.

BLAS runs single-threaded by default: these matrices are small, so a second OpenBLAS thread
gains under 10% on an idle 2-core machine, but when anything else runs, a descheduled BLAS
thread stalls every call (epochs went from 7 s to 30-100 s). Pass --blas-threads 0 to keep
numpy's default.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from bench.scratch.stack import (
    MNIST_MEAN,
    MNIST_STD,
    evaluate,
    lenet,
    load_mnist,
    standardize,
    train_epoch,
)
from cnnlab.scratch import SGD, Adam
from cnnlab.scratch.threads import blas_threads
from cnnlab.training.schedule import SCHEDULES


def random_shift(batch: np.ndarray, rng: np.random.Generator, max_shift: int = 2) -> np.ndarray:
    """Translate each image by up to ``max_shift`` pixels (zero fill): cheap augmentation."""
    n, _, h, w = batch.shape
    pad = max_shift
    padded = np.pad(batch, ((0, 0), (0, 0), (pad, pad), (pad, pad)),
                    constant_values=batch.min())
    dy, dx = rng.integers(0, 2 * pad + 1, (2, n))
    # One gather for the whole batch: row/column index grids offset per sample.
    rows = (dy[:, None] + np.arange(h))[:, :, None]
    cols = (dx[:, None] + np.arange(w))[:, None, :]
    return padded[np.arange(n)[:, None, None], 0, rows, cols][:, None]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/work/shared/datasets/mnist")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--schedule", choices=["exp", "step", "none"], default="exp")
    parser.add_argument("--gamma", type=float, default=0.8)
    parser.add_argument("--step-size", type=int, default=4)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--augment", action="store_true", help="random +-2 pixel shifts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--blas-threads", type=int, default=1, help="0: numpy's default")
    parser.add_argument("--time-limit", type=float, default=600.0,
                        help="stop after the epoch that crosses this many training seconds")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)

    x_train, y_train = load_mnist(args.data, "train")
    x_test, y_test = load_mnist(args.data, "test")
    x_train, x_test = (standardize(x, MNIST_MEAN, MNIST_STD) for x in (x_train, x_test))
    rng = np.random.default_rng(args.seed)
    model = lenet(dropout=args.dropout, rng=rng)
    if args.optimizer == "sgd":
        optimizer = SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                        nesterov=args.momentum > 0, weight_decay=args.weight_decay)
    else:
        optimizer = Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    # cnnlab's own schedules (the ones `cnnlab train` uses), stepped once per epoch.
    section = {"exp": {"name": "exponential", "gamma": args.gamma},
               "step": {"name": "step", "step_size": args.step_size, "gamma": args.gamma},
               "none": {"name": "none"}}[args.schedule]
    scheduler = SCHEDULES.build(section, lr=args.lr, steps=args.epochs, steps_per_epoch=1)
    augment = random_shift if args.augment else None
    print(f"config: {vars(args)}")
    train_seconds, history = 0.0, []
    with blas_threads(args.blas_threads):
        for epoch in range(1, args.epochs + 1):
            start = time.perf_counter()
            stats = train_epoch(model, optimizer, x_train, y_train, args.batch_size, rng,
                                augment=augment)
            train_seconds += time.perf_counter() - start
            start = time.perf_counter()
            accuracy = evaluate(model, x_test, y_test)
            eval_seconds = time.perf_counter() - start
            history.append({"epoch": epoch, "lr": optimizer.lr, **stats,
                            "test_accuracy": accuracy, "train_seconds": train_seconds,
                            "eval_seconds": eval_seconds})
            print(f"epoch {epoch:2d}  lr {optimizer.lr:.5f}  loss {stats['loss']:.4f}  "
                  f"train acc {stats['accuracy']:.4f}  test acc {accuracy:.4f}  "
                  f"train time {train_seconds:6.1f}s  eval {eval_seconds:.2f}s", flush=True)
            scheduler.after_batch()  # one "step" per epoch: the epoch counts for the schedule
            scheduler.after_epoch({})
            optimizer.lr = scheduler.lr
            if train_seconds > args.time_limit:
                print(f"time limit reached after epoch {epoch}")
                break
    result = {"final_test_accuracy": history[-1]["test_accuracy"],
              "best_test_accuracy": max(h["test_accuracy"] for h in history),
              "train_seconds": train_seconds, "epochs": len(history),
              "numpy": np.__version__, "python": platform.python_version(),
              "config": vars(args), "history": history}
    print(f"final test accuracy {result['final_test_accuracy']:.4f} after {len(history)} epochs, "
          f"training wall time {train_seconds:.1f}s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    main()
