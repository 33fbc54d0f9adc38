"""Real data: a LeNet on the NumPy engine, trained on 2,000 MNIST images, learns; BLAS threads."""

from __future__ import annotations

import gzip
import time

import numpy as np
import pytest

from bench.scratch.stack import (
    MNIST_MEAN,
    MNIST_STD,
    evaluate,
    lenet,
    load_mnist,
    standardize,
    train_epoch,
)
from cnnlab.data.read.idx import read_idx
from cnnlab.errors import DataError
from cnnlab.scratch import Adam
from cnnlab.scratch.threads import blas_threads


def test_read_idx_roundtrip(tmp_path):
    data = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 0x08, 3]) + np.array([2, 3, 4], dtype=">u4").tobytes()
    with gzip.open(tmp_path / "x-idx3-ubyte.gz", "wb") as handle:
        handle.write(header + data.tobytes())
    np.testing.assert_array_equal(read_idx(tmp_path / "x-idx3-ubyte.gz"), data)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DataError):
        read_idx(tmp_path / "bad")


@pytest.mark.slow
def test_lenet_learns_mnist_subset(mnist_dir):
    x_train, y_train = load_mnist(mnist_dir, "train", limit=2000)
    x_test, y_test = load_mnist(mnist_dir, "test", limit=1000)
    assert x_train.shape == (2000, 1, 28, 28) and x_train.dtype == np.float32
    assert set(np.unique(y_train)) == set(range(10))
    x_train, x_test = (standardize(x, MNIST_MEAN, MNIST_STD) for x in (x_train, x_test))
    rng = np.random.default_rng(0)
    model = lenet(rng=rng)
    optimizer = Adam(model.parameters(), lr=4e-3)
    start = time.perf_counter()
    with blas_threads(1):  # robust timing on a busy machine, see cnnlab.scratch.threads
        for _ in range(2):
            stats = train_epoch(model, optimizer, x_train, y_train, batch_size=32, rng=rng)
        accuracy = evaluate(model, x_test, y_test)
    elapsed = time.perf_counter() - start
    assert stats["loss"] < 0.5
    assert accuracy > 0.85, f"test accuracy {accuracy:.3f} after 2 epochs on 2,000 images"
    assert elapsed < 20


def test_blas_threads_limits_and_restores():
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_counts():
        return [p["num_threads"] for p in threadpoolctl.threadpool_info()
                if p["user_api"] == "blas"]

    before = blas_counts()
    with blas_threads(1):
        assert all(n == 1 for n in blas_counts())
    assert blas_counts() == before
    with blas_threads(None):
        assert blas_counts() == before
