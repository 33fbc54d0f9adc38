"""`cnnlab evaluate`: metrics of a trained run on one split, and its confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from cnnlab.data.augment import build_pipeline
from cnnlab.data.build import build_data
from cnnlab.data.loading import make_loader
from cnnlab.device import autocast
from cnnlab.errors import UserError
from cnnlab.inference import load_run_model, model_device
from cnnlab.plots.confusion import plot_confusion
from cnnlab.rundir import Run
from cnnlab.training.losses import build_loss
from cnnlab.training.metrics import evaluate
from cnnlab.training.tta import with_tta


def evaluate_run(run_dir: Path, split: str | None = None, which: Literal["best", "last"] = "best") -> dict[str, Any]:
    """Evaluate the checkpoint on a split (default: test, else val); write PNG + JSON beside it."""
    run = Run(run_dir)
    cfg, info, model, ckpt = load_run_model(run, which)
    device = model_device(model)
    bundle = build_data(cfg.data, cfg.seed, device)
    if bundle.classes != info["classes"]:
        raise UserError(f"{cfg.data.path}: the dataset's classes changed since this run was trained")
    splits = bundle.splits()
    split = split or ("test" if "test" in splits else "val" if "val" in splits else "train")
    if split not in splits:
        raise UserError(f"--split {split}: this dataset has no {split} split (it has: {', '.join(splits)})")
    # The run's deterministic ops (resize, center_crop) apply here as they did in training.
    pipeline = build_pipeline(cfg.augment, bundle.image_shape, len(info["classes"]))
    if list(pipeline.input_shape) != info["input_shape"]:
        raise UserError(f"{cfg.data.path}: images now reach the model as {list(pipeline.input_shape)} "
                        f"but {run.name} was trained on {info['input_shape']} (C, H, W)")
    loader = make_loader(splits[split], pipeline, cfg.train.eval_batch_size, device, bundle.scale, info["mean"],
                         info["std"], workers=cfg.data.workers)
    loss_fn = build_loss(cfg.loss, len(info["classes"]), (info.get("class_counts") or {}).get("train"))
    ev = evaluate(with_tta(model, cfg.train.tta), loader, loss_fn, len(info["classes"]), autocast(cfg.train.amp, device))
    png = run.confusion_png(split, which)
    plot_confusion(ev.confusion.numpy(), info["classes"], png,
                   f"{run.name}: {split}, {which} checkpoint (epoch {ckpt.get('epoch', '?')}), acc {ev.acc * 100:.2f}%")
    report = {
        "split": split, "checkpoint": which, "epoch": ckpt.get("epoch"), "samples": len(splits[split]),
        "loss": ev.loss, "acc": ev.acc, "top5": ev.top5,
        "per_class_acc": dict(zip(info["classes"], ev.per_class_acc)),
        "confusion": ev.confusion.tolist(), "figure": str(png),
    }
    run.write_eval(split, which, report)
    return report
