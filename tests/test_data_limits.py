"""data.limit_train / limit_val / limit_test: seeded subsets with the split's class proportions,
not the first N of a class-sorted file (where 50 CIFAR-10 images are all airplanes)."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.config import DataConfig
from cnnlab.data.build import build_data
from cnnlab.errors import DataError


def bundle(path, seed=0, **kw):
    return build_data(DataConfig(format="image_folder", path=str(path), val_fraction=0.0, **kw), seed)


def counts(split) -> list[int]:
    return np.bincount(split.y.numpy(), minlength=10).tolist()


def test_limits_keep_every_class_in_proportion(cifar_zip_small):
    b = bundle(cifar_zip_small, limit_train=50, limit_test=20)
    assert counts(b.train) == [5] * 10 and counts(b.test) == [2] * 10
    first = bundle(cifar_zip_small, limit_train=50, limit_mode="first")
    assert counts(first.train) == [40, 10] + [0] * 8  # the zip is sorted by class
    few = bundle(cifar_zip_small, limit_train=7)
    assert sorted(counts(few.train)) == [0, 0, 0] + [1] * 7  # fewer than the classes: one each, no more


def test_the_same_seed_gives_the_same_subset(cifar_zip_small):
    a = bundle(cifar_zip_small, limit_train=30, seed=3)
    b = bundle(cifar_zip_small, limit_train=30, seed=3, in_memory=False)
    c = bundle(cifar_zip_small, limit_train=30, seed=4)
    assert a.train.ids == b.train.ids  # in memory and file-backed alike (resume and studies rebuild it)
    assert a.train.ids != c.train.ids and counts(a.train) == counts(c.train) == [3] * 10


def test_a_validation_limit_and_limits_larger_than_the_split(cifar_zip_small):
    b = build_data(DataConfig(format="image_folder", path=str(cifar_zip_small), val_fraction=0.25, limit_val=20), 0)
    assert counts(b.val) == [2] * 10 and len(b.train) == 300
    with pytest.raises(DataError, match=r"data.limit_test: 500 is more than the 100 images of the split"):
        bundle(cifar_zip_small, limit_test=500)
