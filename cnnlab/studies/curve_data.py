"""A learning curve's data, checked before anything runs (`build_plan` calls it): the split the
study metric is measured on exists, and every size fits the smallest class of the training split
the nested subsets are drawn from. It reads the dataset as a run would (its first seed's)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cnnlab.errors import ConfigError
from cnnlab.studies.spec import SIZE_KEYS, epoch_metric, size_key

if TYPE_CHECKING:
    from cnnlab.studies.plan import Plan

def check_data(plan: Plan) -> None:
    """Before anything runs: the metric's split exists, and every size fits the smallest class of the
    training split the subsets are drawn from (read as the first seed's run would read it)."""
    from cnnlab.data.build import build_data

    study = plan.study
    where = str(study.path)
    key = size_key(study)
    split = epoch_metric(study.spec.metric).split("_")[0]
    seen: set[str] = set()
    for v in plan.variants:
        overrides = {k: val for k, val in v.overrides.items() if k not in SIZE_KEYS}
        cfg = plan.run_config(overrides, plan.seeds[0], plan.folds[0], "check")
        data = cfg.data.model_copy(update={"train_per_class": None, "train_fraction": None})
        text = data.model_dump_json()
        if text in seen:
            continue
        seen.add(text)
        bundle = build_data(data, cfg.seed)
        if getattr(bundle, split) is None:
            hint = ("set data.val_fraction > 0 (a validation split carved before the subsets: the same images for "
                    "every size) or cv: K, or use a test_ metric") if split == "val" else \
                "set data.test_fraction (a held-out test split) or use a val_ metric"
            raise ConfigError(f"{where}: mode: learning_curve measures {study.spec.metric} on the {split} split, but "
                              f"{data.path or data.format} has no {split} split to measure on; {hint}")
        if key != SIZE_KEYS[0]:
            continue
        counts = np.bincount(bundle.train.y.numpy(), minlength=len(bundle.classes))
        present = np.flatnonzero(counts)
        smallest = int(present[np.argmin(counts[present])])
        largest = max(study.sizes)
        if largest > counts[smallest]:
            carved = {"split": " after the validation split (data.val_fraction)",
                      "fold": " after the validation fold (cv)"}.get(bundle.val_source, "")
            raise ConfigError(f"{where}: sizes: {largest} images per class is more than class {smallest} "
                              f"('{bundle.classes[smallest]}') has: {int(counts[smallest])} training images{carved} "
                              f"(seed {cfg.seed}); keep sizes at or below {int(counts[smallest])}")
