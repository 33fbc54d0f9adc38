"""`cnnlab evaluate`: metrics of a trained run on one split (with its calibration: ECE, NLL,
Brier, at the temperature `cnnlab calibrate` fitted, if any), its confusion matrix and its
reliability diagram."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from cnnlab.device import autocast
from cnnlab.plots.confusion import plot_confusion
from cnnlab.plots.reliability import plot_reliability
from cnnlab.reopen import open_run
from cnnlab.training.metrics import BINS, evaluate
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
    scorer, t = with_tta(model, cfg.train.tta), opened.temperature
    ev = evaluate(scorer, loader, opened.loss(), len(info["classes"]), autocast(cfg.train.amp, device), t)
    # Calibrated: the same split at T = 1 too, so the report can show before and after.
    raw = evaluate(scorer, loader, opened.loss(), len(info["classes"]), autocast(cfg.train.amp, device)) \
        if t != 1.0 else None
    epoch = opened.payload.get("epoch")
    png = run.confusion_png(split, which)
    plot_confusion(ev.confusion.numpy(), info["classes"], png,
                   f"{run.name}: {split}, {which} checkpoint (epoch {epoch if epoch is not None else '?'}), "
                   f"acc {ev.acc * 100:.2f}%")
    report = {
        "split": split, "checkpoint": which, "epoch": epoch, "samples": len(data),
        "loss": ev.loss, "acc": ev.acc, "top5": ev.top5,
        "ece": ev.ece, "nll": ev.nll, "brier": ev.brier, "temperature": t, "ece_bins": BINS, "ece_binning": "equal-width",
        "uncalibrated": None if raw is None else {"loss": raw.loss, "ece": raw.ece, "nll": raw.nll, "brier": raw.brier},
        "per_class_acc": dict(zip(info["classes"], ev.per_class_acc)),
        "confusion": ev.confusion.tolist(), "figure": str(png),
    }
    curves = {"T = 1": raw.__dict__, f"T = {t:.3g} (calibrated)": ev.__dict__} if raw is not None else \
        {"this checkpoint": ev.__dict__}
    reliability = run.reliability_png(split, which)
    plot_reliability(curves, reliability, f"{run.name}: {split}, {which} checkpoint, reliability")
    report["reliability_figure"] = str(reliability)
    run.write_eval(split, which, report)
    return report
