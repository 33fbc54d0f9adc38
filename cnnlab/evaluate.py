"""`cnnlab evaluate`: metrics of a trained run on one split, and its confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from cnnlab.device import autocast
from cnnlab.plots.confusion import plot_confusion
from cnnlab.reopen import open_run
from cnnlab.training.metrics import evaluate
from cnnlab.training.tta import with_tta


def evaluate_run(run_dir: Path, split: str | None = None, which: Literal["best", "last"] = "best") -> dict[str, Any]:
    """Evaluate the checkpoint on a split (default: test, else val); write PNG + JSON beside it."""
    opened = open_run(run_dir, which)
    cfg, info, run = opened.cfg, opened.info, opened.run
    model = opened.model()
    device = opened.device
    opened.bundle(device)  # read once, on the device the model runs on
    split, data = opened.split(split, labelled=True)
    # The run's deterministic ops (resize, center_crop) apply here as they did in training.
    loader = opened.loader(data, device=device)
    ev = evaluate(with_tta(model, cfg.train.tta), loader, opened.loss(), len(info["classes"]),
                  autocast(cfg.train.amp, device))
    epoch = opened.payload.get("epoch")
    png = run.confusion_png(split, which)
    plot_confusion(ev.confusion.numpy(), info["classes"], png,
                   f"{run.name}: {split}, {which} checkpoint (epoch {epoch if epoch is not None else '?'}), "
                   f"acc {ev.acc * 100:.2f}%")
    report = {
        "split": split, "checkpoint": which, "epoch": epoch, "samples": len(data),
        "loss": ev.loss, "acc": ev.acc, "top5": ev.top5,
        "per_class_acc": dict(zip(info["classes"], ev.per_class_acc)),
        "confusion": ev.confusion.tolist(), "figure": str(png),
    }
    run.write_eval(split, which, report)
    return report
