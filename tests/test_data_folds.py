"""K-fold cross-validation splits (data.folds / data.fold) on a real MNIST slice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab.data.build import build_data
from cnnlab.errors import ConfigError, DataError
from cnnlab.resolve import resolve


def data_cfg(path, **extra):
    raw = {"data": {"format": "idx", "path": str(path), **extra}, "model": {"name": "cnn"}}
    return resolve(raw).data


def image_keys(x: torch.Tensor) -> list[bytes]:
    return [img.numpy().tobytes() for img in x]


def test_folds_partition_train_stratified_and_reproducible(mnist_small):
    vals, trains = [], []
    for fold in range(3):
        b = build_data(data_cfg(mnist_small, folds=3, fold=fold, limit_train=600), seed=7)
        assert b.val_source == "fold" and len(b.train) + len(b.val) == 600
        assert b.info()["sizes"]["test"] == 300  # the test split is untouched
        vals.append(set(image_keys(b.val.x)))
        trains.append(set(image_keys(b.train.x)))
        assert not vals[-1] & trains[-1]  # a fold never trains on its validation images
        # Stratified: every class keeps its share of the slice in each fold (within one image).
        want = torch.bincount(torch.cat([b.train.y, b.val.y]), minlength=10).numpy() / 3
        got = torch.bincount(b.val.y, minlength=10).numpy()
        assert np.all(np.abs(got - want) <= 1)
    # The three validation folds are disjoint and together cover the whole training slice.
    assert not (vals[0] & vals[1]) and not (vals[0] & vals[2]) and not (vals[1] & vals[2])
    assert sum(len(v) for v in vals) == 600
    # The same seed gives the same folds; another seed reshuffles them.
    again = build_data(data_cfg(mnist_small, folds=3, fold=1, limit_train=600), seed=7)
    assert set(image_keys(again.val.x)) == vals[1]
    other = build_data(data_cfg(mnist_small, folds=3, fold=1, limit_train=600), seed=8)
    assert set(image_keys(other.val.x)) != vals[1]


@pytest.mark.parametrize("extra, error, message", [
    ({"folds": 5}, ConfigError, "data.fold: data.fold and data.folds go together"),
    ({"fold": 0}, ConfigError, "data.fold: data.fold and data.folds go together"),
    ({"folds": 3, "fold": 3}, ConfigError, "data.fold: 3 is out of range for data.folds=3; use 0..2"),
    ({"folds": 500, "fold": 0, "limit_train": 600}, DataError, "cannot make 500 stratified folds"),
])
def test_bad_fold_settings_are_one_line_errors(mnist_small, extra, error, message):
    with pytest.raises(error, match=message) as info:
        build_data(data_cfg(mnist_small, **extra), seed=0)
    assert "\n" not in str(info.value)


def test_folds_below_two_rejected_by_the_schema(mnist_small):
    with pytest.raises(ConfigError, match="data.folds: Input should be greater than or equal to 2"):
        data_cfg(mnist_small, folds=1, fold=0)
