"""Held-out probabilities: what a run's best checkpoint says about each validation image that was
carved from the training split (a fold of `cv: K`, or data.val_fraction), by that image's index in
the training split. The folds of one seed together give every training image a probability from a
model that never trained on it (out-of-fold), which `cnnlab data audit --labels` ranks with
cleanlab to find wrong labels. Written into a fold run (rundir.HELDOUT) when it finishes; computed
the same way for any other run reopened without one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.device import autocast
from cnnlab.reopen import OpenRun
from cnnlab.training.tta import with_tta


def heldout_predictions(opened: OpenRun, bundle: Any) -> dict[str, np.ndarray] | None:
    """index (int64), probs (float32, N x K) and labels (int64) of the bundle's validation images
    under the opened run's checkpoint, as its evaluation sees them (eval pipeline, the run's
    normalisation, test-time augmentation and mixed precision); None when the validation split is
    not carved from train (none, or the dataset's own)."""
    import torch

    if bundle.val is None or bundle.val_index is None or bundle.val.y is None:
        return None
    device = opened.device
    model = with_tta(opened.model(device=device), opened.cfg.train.tta)
    loader = opened.loader(bundle.val, device=device)
    amp = autocast(opened.cfg.train.amp, device)
    probs = []
    with torch.inference_mode():
        for x, _ in loader:
            with amp():
                logits = model(x)
            probs.append(torch.softmax(logits.float(), 1).cpu())
    return {"index": np.asarray(bundle.val_index, dtype=np.int64),
            "probs": torch.cat(probs).numpy().astype(np.float32),
            "labels": bundle.val.y.numpy().astype(np.int64)}


def write_heldout(session: Any, run: Any) -> bool:
    """heldout.npz of a finished run from its best checkpoint and the session's own data (nothing
    read again); False when the run has no carved validation split or no best checkpoint. Runs after
    training, so the run's metrics and checkpoints are what they were."""
    bundle = session.bundle
    # Only the folds of a cv study: every other run would pay an extra pass and a file for nothing
    # (`--labels RUN_DIR` computes a single run's the same way when it needs them).
    if session.cfg.data.folds is None or not run.writes or bundle.val_index is None or not run.has_checkpoint("best"):
        return False
    # The session's config and data: already resolved and read (OpenRun's fields, filled in).
    import torch

    opened = OpenRun(run, session.cfg, session.data_info(), "best", _bundle=bundle)
    with torch.random.fork_rng(devices=[]):  # building the network reseeds torch: leave the caller's stream alone
        held = heldout_predictions(opened, bundle)
    if held is None:
        return False
    run.write_heldout(held["index"], held["probs"], held["labels"])
    return True
