"""IDX reader on real MNIST / Fashion-MNIST slices, and its refusals."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest
from conftest import MNIST, read_idx, write_idx

from cnnlab.config import DataConfig
from cnnlab.data.build import build_data, read_raw
from cnnlab.errors import DataError


def data(path, **kw):
    return DataConfig(format="idx", path=str(path), **kw)


def test_reads_the_real_mnist_files():
    raw = read_raw(data(MNIST))
    assert raw.train.x.shape == (60000, 1, 28, 28) and raw.test.x.shape == (10000, 1, 28, 28)
    assert raw.train.x.dtype.is_floating_point is False
    assert raw.classes == [str(i) for i in range(10)] and raw.label_values == list(range(10))
    expected = read_idx(MNIST / "train-labels-idx1-ubyte.gz")
    assert np.array_equal(raw.train.y.numpy(), expected)
    # The known class balance of MNIST's training set.
    assert np.bincount(raw.train.y.numpy()).tolist()[:3] == [5923, 6742, 5958]


def test_uncompressed_files_read_the_same(fashion_small, mnist_small):
    raw = read_raw(data(fashion_small))
    assert len(raw.train) == 1200 and len(raw.test) == 300
    assert raw.train.x.shape[1:] == (1, 28, 28)


def test_limit_split_and_stats(mnist_small):
    b = build_data(data(mnist_small, limit_train=1000, val_fraction=0.2), seed=3)
    assert len(b.train) == 800 and len(b.val) == 200 and len(b.test) == 300
    assert b.val_source == "split"
    # Stratified: each class keeps (almost exactly) its share in validation.
    full = np.bincount(np.concatenate([b.train.y.numpy(), b.val.y.numpy()]), minlength=10)
    every = np.bincount(read_idx(mnist_small / "train-labels-idx1-ubyte.gz"), minlength=10)
    assert np.all(np.abs(full - every * 1000 / 1200) <= 1)  # limit_train: a stratified 1,000 of 1,200
    val = np.bincount(b.val.y.numpy(), minlength=10)
    assert np.all(np.abs(val - full * 0.2) <= 1)
    # Seeded: the same seed gives the same split, another seed another one.
    again = build_data(data(mnist_small, limit_train=1000, val_fraction=0.2), seed=3)
    other = build_data(data(mnist_small, limit_train=1000, val_fraction=0.2), seed=4)
    assert (b.val.x == again.val.x).all() and not (b.val.x == other.val.x).all()
    # Statistics come from the training split only, scaled to [0, 1].
    x = b.train.x.numpy().astype(np.float64) / 255
    assert b.mean[0] == pytest.approx(x.mean(), rel=1e-9)
    assert b.std[0] == pytest.approx(x.std(), rel=1e-6)


def test_missing_truncated_and_corrupt_files(tmp_path, mnist_small):
    d = tmp_path / "m"
    shutil.copytree(mnist_small, d)
    (d / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing train-labels-idx1-ubyte"):
        read_raw(data(d))

    shutil.copy(mnist_small / "train-labels-idx1-ubyte.gz", d)
    raw = gzip.decompress((d / "train-images-idx3-ubyte.gz").read_bytes())
    (d / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: file is truncated"):
        read_raw(data(d))

    good = (mnist_small / "train-images-idx3-ubyte.gz").read_bytes()
    (d / "train-images-idx3-ubyte.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="cannot decompress"):
        read_raw(data(d))

    (d / "train-images-idx3-ubyte.gz").write_bytes(b"hello, not an idx file at all")
    with pytest.raises(DataError, match="not an IDX file"):
        read_raw(data(d))


def test_label_count_and_range_checks(tmp_path, mnist_small):
    d = tmp_path / "m"
    shutil.copytree(mnist_small, d)
    labels = read_idx(mnist_small / "train-labels-idx1-ubyte.gz").copy()
    write_idx(d / "train-labels-idx1-ubyte.gz", labels[:-5])
    with pytest.raises(DataError, match="1195 labels but train-images-idx3-ubyte.gz holds 1200 images"):
        read_raw(data(d))
    labels[7] = 12
    write_idx(d / "train-labels-idx1-ubyte.gz", labels)
    with pytest.raises(DataError, match="label 12 at row 7 is outside the class range 0..9"):
        read_raw(data(d, num_classes=10))
    # Without a declared class count, a test label beyond the training classes is refused.
    labels[7] = 3
    write_idx(d / "train-labels-idx1-ubyte.gz", labels)
    test = read_idx(mnist_small / "t10k-labels-idx1-ubyte.gz").copy()
    test[0] = 10
    write_idx(d / "t10k-labels-idx1-ubyte.gz", test)
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: label 10 at row 0"):
        read_raw(data(d))


def test_path_that_is_not_a_folder(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(DataError, match="expected a folder"):
        read_raw(data(f))
    with pytest.raises(DataError, match="does not exist"):
        read_raw(data(tmp_path / "nope"))
