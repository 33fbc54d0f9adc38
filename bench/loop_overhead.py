"""The training loop's own cost: cnnlab's epoch (Trainer._train_epoch: the step, the epoch's sums,
the divergence guard, callbacks' dispatch, the progress bar's bookkeeping) against the bare loop a
student writes around the same model, optimizer, loss and batches.

    PYTHONPATH=. python bench/loop_overhead.py --json bench/out/loop_overhead.json
    PYTHONPATH=. python bench/loop_overhead.py --limit 2000 --rounds 1 --json /tmp/lo.json   # a quick check

Both sides train the same network from the session `cnnlab train CONFIG` builds, on the same
in-memory batches (augmented and normalised on the way, as in a run); the bare loop is

    for x, y in loader: opt.zero_grad(); loss = loss_fn(model(x), y); loss.backward(); opt.step()
                        total += loss.item() * len(y); correct += (out.argmax(1) == y).sum().item()

An epoch of each, alternated for `--rounds` rounds after one warm-up epoch of each; the medians and
their ratio are printed and written as JSON. Target: the ratio within the run-to-run spread (the
issue's "epoch time equal to the bare loop").
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from cnnlab.io import write_json
from cnnlab.resolve import load_config
from cnnlab.rundir import Run
from cnnlab.training.progress import Reporter
from cnnlab.training.session import build_session

ROOT = Path(__file__).resolve().parent.parent


def bare_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss_fn: torch.nn.Module, loader) -> dict:
    model.train()
    total, correct, seen = 0.0, 0, 0
    for x, y in loader.batches():
        optimizer.zero_grad(set_to_none=True)
        out = model(x)
        loss = loss_fn(out, y)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(y)
        correct += (out.argmax(1) == y).sum().item()
        seen += len(y)
    return {"train_loss": total / seen, "train_acc": correct / seen}


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "fashion_mnist_cnn.yaml"))
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--limit", type=int, default=20000, help="training images (default 20,000)")
    ap.add_argument("--rounds", type=int, default=5, help="alternated epochs of each side")
    ap.add_argument("--json", required=True, help="file to write")
    args = ap.parse_args()

    cfg = load_config(args.config, [f"data.path={args.data}", f"data.limit_train={args.limit}",
                                    "schedule.name=none", f"train.epochs={2 * args.rounds + 2}"])
    session = build_session(cfg)
    engine, loader = session.engine, session.train_loader
    # The bare loop drives the engine's own model and optimizer with the engine's loss.
    model, optimizer, loss_fn = engine.model, engine.optimizer, engine.loss_fn
    cnnlab_s, bare_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        trainer = session.trainer(Run(Path(tmp)), Reporter(cfg.train.epochs, len(loader), quiet=True), [])
        epoch = 0
        for round_ in range(args.rounds + 1):  # round 0 warms both up and is not counted
            epoch += 1
            a = timed(lambda e=epoch: trainer._train_epoch(e))
            b = timed(lambda: bare_epoch(model, optimizer, loss_fn, loader))
            if round_:
                cnnlab_s.append(a)
                bare_s.append(b)
            print(f"round {round_}: cnnlab {a:.2f} s, bare {b:.2f} s", flush=True)
    med_a, med_b = statistics.median(cnnlab_s), statistics.median(bare_s)
    result = {"config": args.config, "images": len(session.bundle.train), "batch_size": cfg.train.batch_size,
              "device": str(session.device), "cpu": platform.processor() or platform.machine(),
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "channels_last": session.notes, "cnnlab_epoch_s": cnnlab_s, "bare_epoch_s": bare_s,
              "cnnlab_median_s": med_a, "bare_median_s": med_b, "ratio": med_a / med_b}
    print(f"{result['images']} images, batch {cfg.train.batch_size}, {result['threads']} threads: "
          f"cnnlab {med_a:.2f} s, bare {med_b:.2f} s per epoch (medians of {args.rounds}), ratio {med_a / med_b:.3f}")
    write_json(args.json, result)
    print(args.json)


if __name__ == "__main__":
    main()
