"""MATLAB files: mnist-original.mat written from the real MNIST IDX files, and course-style layouts."""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.io
from conftest import MNIST, cifar_arrays, read_idx

from cnnlab.config import DataConfig
from cnnlab.data.build import build_data, read_raw
from cnnlab.errors import DataError


def data(path, **kw):
    return DataConfig(format="mat", path=str(path), **kw)


@pytest.fixture(scope="module")
def mnist_arrays():
    x = np.concatenate([read_idx(MNIST / "train-images-idx3-ubyte.gz"), read_idx(MNIST / "t10k-images-idx3-ubyte.gz")])
    y = np.concatenate([read_idx(MNIST / "train-labels-idx1-ubyte.gz"), read_idx(MNIST / "t10k-labels-idx1-ubyte.gz")])
    return x, y


@pytest.fixture(scope="module")
def mnist_original(tmp_path_factory, mnist_arrays):
    """mnist-original.mat as mldata.org served it: data 784 x 70000 uint8 (a column per image), label 1 x 70000 double."""
    x, y = mnist_arrays
    path = tmp_path_factory.mktemp("mat") / "mnist-original.mat"
    ordering = np.empty((1, 2), dtype=object)
    ordering[0, 0], ordering[0, 1] = "label", "data"
    scipy.io.savemat(path, {"data": x.reshape(70000, 784).T, "label": y.astype(np.float64)[None, :],
                            "mldata_descr_ordering": ordering}, format="5")
    return path


def test_mnist_original_reads_back_the_idx_arrays(mnist_original, mnist_arrays):
    x, y = mnist_arrays
    raw = read_raw(data(mnist_original, test_from=60000))
    assert raw.train.x.shape == (60000, 1, 28, 28) and raw.test.x.shape == (10000, 1, 28, 28)
    assert raw.train.x.dtype.is_floating_point is False
    assert np.array_equal(raw.train.x[:, 0].numpy(), x[:60000]) and np.array_equal(raw.test.x[:, 0].numpy(), x[60000:])
    assert np.array_equal(raw.train.y.numpy(), y[:60000]) and np.array_equal(raw.test.y.numpy(), y[60000:])
    assert raw.classes == [str(i) for i in range(10)] and raw.label_values == list(range(10))
    assert raw.test.ids[0] == "60000" and "one image per column" in raw.notes[0]
    whole = read_raw(data(mnist_original))
    assert len(whole.train) == 70000 and whole.test is None and any("data.test_from" in n for n in whole.notes)
    with pytest.raises(DataError, match="data.test_from: 70000 must be between 1 and 69999"):
        read_raw(data(mnist_original, test_from=70000))


def test_rows_column_major_pixels_and_separate_test_variables(tmp_path, mnist_arrays):
    x, y = mnist_arrays
    # A course file: N x 784 rows, each image flattened by MATLAB (down the columns), labels N x 1.
    flat = lambda a: a.transpose(0, 2, 1).reshape(len(a), 784)  # noqa: E731
    path = tmp_path / "course.mat"
    scipy.io.savemat(path, {"X_train": flat(x[:500]).astype(np.float64) / 255, "y_train": y[:500, None].astype(np.float64),
                            "X_test": flat(x[60000:60100]).astype(np.float64) / 255, "y_test": y[60000:60100, None]})
    opts = dict(data_var="X_train", label_var="y_train", test_data_var="X_test", test_label_var="y_test", pixel_order="column")
    raw = read_raw(data(path, **opts))
    assert raw.train.x.shape == (500, 1, 28, 28) and raw.train.x.dtype.is_floating_point
    assert np.allclose(raw.train.x[:, 0].numpy() * 255, x[:500], atol=1e-3)
    assert np.allclose(raw.test.x[:, 0].numpy() * 255, x[60000:60100], atol=1e-3)
    assert np.array_equal(raw.test.y.numpy(), y[60000:60100]) and "one image per row" in raw.notes[0]
    # Read in row order instead, every image comes out transposed.
    wrong = read_raw(data(path, **{**opts, "pixel_order": "row"}))
    assert np.allclose(wrong.train.x[:, 0].numpy() * 255, x[:500].transpose(0, 2, 1), atol=1e-3)
    b = build_data(data(path, **opts, val_fraction=0.2), seed=0)
    assert len(b.train) == 400 and len(b.val) == 100 and b.scale == 1.0  # values already in 0..1

    with pytest.raises(DataError, match=r"no variable 'X_tst'; the file holds X_train \(500x784 double\), "
                                        r"y_train \(500x1 double\), X_test .*set data.data_var"):
        read_raw(data(path, **{**opts, "test_data_var": "X_tst"}))
    with pytest.raises(DataError, match="set both"):
        read_raw(data(path, data_var="X_train", label_var="y_train", test_data_var="X_test"))


def test_colour_images_as_4d_array_and_as_flat_planes(tmp_path):
    arrays = cifar_arrays(6, 0)["train"]
    x, y = arrays[0], arrays[1]  # 60 real CIFAR-10 images, N x 32 x 32 x 3
    path = tmp_path / "svhn_like.mat"
    # SVHN's layout: X is 32 x 32 x 3 x N, y is N x 1; and CIFAR's MATLAB layout: N x 3072 planes.
    scipy.io.savemat(path, {"X": x.transpose(1, 2, 3, 0), "y": y[:, None].astype(np.uint8),
                            "planes": x.transpose(0, 3, 1, 2).reshape(60, 3072), "labels": y[:, None]})
    raw = read_raw(data(path, data_var="X", label_var="y"))
    assert raw.train.x.shape == (60, 3, 32, 32) and np.array_equal(raw.train.x.numpy(), x.transpose(0, 3, 1, 2))
    raw = read_raw(data(path, data_var="planes", label_var="labels", image_shape=[3, 32, 32]))
    assert np.array_equal(raw.train.x.numpy(), x.transpose(0, 3, 1, 2)) and np.array_equal(raw.train.y.numpy(), y)
    with pytest.raises(DataError, match=r"data.image_shape: applies to flat image vectors, but 'X' .* is already 32x32x3"):
        read_raw(data(path, data_var="X", label_var="y", image_shape=[3, 32, 32]))
    with pytest.raises(DataError, match="vectors of 3072 values do not fit data.image_shape"):
        read_raw(data(path, data_var="planes", label_var="labels", image_shape=[1, 32, 32]))


def test_bad_files_and_shapes(tmp_path):
    path = tmp_path / "m.mat"
    scipy.io.savemat(path, {"data": np.zeros((784, 20), np.uint8), "label": np.arange(19.0)[None],
                            "sq": np.zeros((4, 4)), "l4": np.arange(4.0), "half": np.full(20, 0.5)})
    with pytest.raises(DataError, match=r"'data' is 784x20 but 'label' holds 19 labels"):
        read_raw(data(path))
    with pytest.raises(DataError, match="set data.orientation"):
        read_raw(data(path, data_var="sq", label_var="l4"))
    with pytest.raises(DataError, match=r"m.mat:half: label 0.5 at position 0 is not a whole number"):
        read_raw(data(path, label_var="half"))
    # A v7.3 file is HDF5 behind a MATLAB header; scipy cannot read it.
    v73 = tmp_path / "v73.mat"
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    v73.write_bytes(header.ljust(116, b" ") + b"\0" * 8 + b"\x00\x02IM" + b"\x89HDF\r\n\x1a\n" + b"\0" * 400)
    with pytest.raises(DataError, match=r"v73.mat: a MATLAB v7.3 \(HDF5\) file.*'-v7'"):
        read_raw(data(v73))
    junk = tmp_path / "junk.mat"
    junk.write_bytes(b"hello" * 100)
    with pytest.raises(DataError, match="junk.mat: not a readable .mat file"):
        read_raw(data(junk))


def test_inspect_shows_the_mat_file(mnist_original, tmp_path, capsys):
    from conftest import write_config

    from cnnlab.cli import main

    cfg = write_config(tmp_path / "c.yaml", {"format": "mat", "path": str(mnist_original), "test_from": 60000})
    assert main(["data", "inspect", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "train 54000, val 6000, test 10000" in out and "1x28x28" in out
    assert "'data' (784x70000) read as one image per column, pixels in row order" in out
    assert re.search(r"\n\s*1\s+1\s+1\s+6068\s+674\s+1135\s*\n", out)  # MNIST's 1s: 6,742 train, 1,135 test


def test_shuffle_before_the_fixed_split_takes_600_and_1000_as_the_write_up(mnist_original, mnist_arrays):
    # The NumPy-LeNet write-up: shuffle all 70,000 images, train on the first 600, test on the next 1,000.
    x, y = mnist_arrays
    cfg = data(mnist_original, test_from=600, shuffle=True, val_fraction=0.0, limit_test=1000, limit_mode="first",
               normalize=False)
    b = build_data(cfg, seed=5)
    assert len(b.train) == 600 and len(b.test) == 1000
    rows = [int(i) for i in b.train.ids] + [int(i) for i in b.test.ids]
    assert len(set(rows)) == 1600 and max(rows) > 60000  # drawn from the whole file, test images included
    assert np.array_equal(b.train.x[:, 0].numpy(), x[[int(i) for i in b.train.ids]])  # ids name the original rows
    assert np.array_equal(b.test.y.numpy(), y[[int(i) for i in b.test.ids]])
    assert np.bincount(b.train.y.numpy()).min() > 35  # a random draw: every digit about 60 times
    again = build_data(cfg, seed=5)
    assert again.train.ids == b.train.ids and again.test.ids == b.test.ids  # the same on resume
    assert build_data(cfg, seed=6).train.ids != b.train.ids
    assert any("shuffled (seed 5)" in n for n in b.notes)


def test_shuffle_without_a_split_point_is_refused(mnist_original):
    from cnnlab.errors import ConfigError
    with pytest.raises(ConfigError, match=r"^data.shuffle: .*set data.test_from"):
        build_data(data(mnist_original, shuffle=True), seed=0)
