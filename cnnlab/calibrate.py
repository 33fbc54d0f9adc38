"""`cnnlab calibrate RUN`: temperature scaling (Guo et al. 2017) fitted on the validation split.

One scalar T > 0 divides the checkpoint's logits; it is chosen to minimise the negative
log-likelihood of the validation images (never the test split: the test numbers would stop being
an honest estimate). Accuracy is unchanged (argmax is), while the probabilities usually become
far better calibrated. T is stored in the run (calibration.json, per checkpoint, with the epoch
it was fitted on), and evaluate, predict, export and the report apply it from then on.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from cnnlab.device import autocast
from cnnlab.errors import UserError
from cnnlab.plots.reliability import plot_reliability
from cnnlab.reopen import open_run
from cnnlab.training.metrics import Calibration
from cnnlab.training.tta import with_tta


def calibrate_run(run_dir: Path, which: Literal["best", "last"] = "best") -> dict[str, Any]:
    """Fit, store and return {temperature, split, images, epoch, before, after}."""
    import torch
    from scipy.optimize import minimize_scalar

    opened = open_run(run_dir, which)
    cfg, run = opened.cfg, opened.run
    device = opened.device
    splits = opened.bundle(device).splits()
    val = splits.get("val")
    if val is None or val.y is None:
        raise UserError(f"{run.path}: calibrate fits its temperature on the validation split and this run has "
                        f"none (the test split is never used for fitting); train with data.val_fraction=0.1")
    model = with_tta(opened.model(), cfg.train.tta)
    logits, labels = [], []
    cast = autocast(cfg.train.amp, device)
    with torch.inference_mode():
        for x, y in opened.loader(val, device=device):
            with cast():
                out = model(x)
            logits.append(out.float().cpu())
            labels.append(y.cpu())
    z, y = torch.cat(logits).double(), torch.cat(labels)

    def nll(log_t: float) -> float:
        return float(torch.nn.functional.cross_entropy(z / math.exp(log_t), y))

    # NLL is convex in 1/T; a bounded search over log T (T from 1/50 to 50) finds its minimum.
    best = minimize_scalar(nll, bounds=(-math.log(50), math.log(50)), method="bounded", options={"xatol": 1e-5})
    t = math.exp(float(best.x))
    before, after = _measures(z, y, 1.0), _measures(z, y, t)
    entry = {"temperature": t, "split": "val", "images": len(y), "epoch": opened.payload.get("epoch"),
             "before": {k: before[k] for k in ("ece", "nll", "brier")},
             "after": {k: after[k] for k in ("ece", "nll", "brier")}}
    plot_reliability({"before (T = 1)": before, f"after (T = {t:.3g})": after}, run.reliability_png("val", which),
                     f"{run.name}: val, {which} checkpoint, temperature scaling")
    run.write_calibration(which, entry)
    return entry


def _measures(z: Any, y: Any, t: float) -> dict[str, Any]:
    calib = Calibration(z.device)
    calib.add(z / t, y)
    return calib.result()
