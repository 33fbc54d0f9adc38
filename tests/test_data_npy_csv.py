"""Kaggle-layout reader (train.npy + train.csv) on real Fashion-MNIST rows."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import FASHION, read_idx

from cnnlab.config import DataConfig
from cnnlab.data.build import read_raw
from cnnlab.errors import DataError


def data(path, **kw):
    return DataConfig(format="npy_csv", path=str(path), **kw)


def test_rows_are_matched_by_image_id(kaggle_dir):
    raw = read_raw(data(kaggle_dir))
    y = read_idx(FASHION / "train-labels-idx1-ubyte.gz")[:1500]
    x = read_idx(FASHION / "train-images-idx3-ubyte.gz")[:1500]
    assert raw.train.x.shape == (1500, 1, 28, 28)
    assert np.array_equal(raw.train.x[:, 0].numpy(), x)
    assert np.array_equal(raw.train.y.numpy(), y)  # csv rows were shuffled; labels follow image_id
    assert raw.label_values == list(range(10))
    assert raw.test is None and any("test.npy" in n for n in raw.notes)


def copy(kaggle_dir, tmp_path):
    d = tmp_path / "k"
    shutil.copytree(kaggle_dir, d)
    return d


def test_csv_length_disagreeing_with_array(kaggle_dir, tmp_path):
    d = copy(kaggle_dir, tmp_path)
    lines = (d / "train.csv").read_text().splitlines()
    (d / "train.csv").write_text("\n".join(lines[:-10]) + "\n")
    with pytest.raises(DataError, match="train.csv: 1490 labelled rows but train.npy holds 1500 images"):
        read_raw(data(d))


def test_bad_ids_labels_and_columns(kaggle_dir, tmp_path):
    d = copy(kaggle_dir, tmp_path)
    lines = (d / "train.csv").read_text().splitlines()
    bad = lines.copy()
    bad[1] = "99999,3"
    (d / "train.csv").write_text("\n".join(bad) + "\n")
    with pytest.raises(DataError, match="image_id 99999 is not a row of train.npy"):
        read_raw(data(d))
    bad = lines.copy()
    bad[5] = bad[5].split(",")[0] + ",12"
    (d / "train.csv").write_text("\n".join(bad) + "\n")
    with pytest.raises(DataError, match="label 12 at row .* outside the class range 0..9"):
        read_raw(data(d, num_classes=10))
    (d / "train.csv").write_text("id,target\n" + "\n".join(lines[1:]) + "\n")
    with pytest.raises(DataError, match="no column 'image_id'"):
        read_raw(data(d))
    assert len(read_raw(data(d, id_column="id", label_column="target")).train) == 1500


def test_named_labels_and_image_shapes(kaggle_dir, tmp_path):
    d = copy(kaggle_dir, tmp_path)
    names = ["top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
    rows = [line.split(",") for line in (d / "train.csv").read_text().splitlines()[1:]]
    (d / "train.csv").write_text("image_id,label\n" + "".join(f"{i},{names[int(c)]}\n" for i, c in rows))
    raw = read_raw(data(d))
    assert raw.classes == sorted(names) and raw.label_values == sorted(names)
    # N x H x W arrays and N x H x W x C arrays are read too.
    x = np.load(d / "train.npy").reshape(1500, 28, 28)
    np.save(d / "train.npy", x)
    assert read_raw(data(d)).train.x.shape == (1500, 1, 28, 28)
    np.save(d / "train.npy", np.repeat(x[..., None], 3, axis=3))
    assert read_raw(data(d)).train.x.shape == (1500, 3, 28, 28)


def test_unreadable_arrays(kaggle_dir, tmp_path):
    d = copy(kaggle_dir, tmp_path)
    good = (d / "train.npy").read_bytes()
    (d / "train.npy").write_bytes(good[: len(good) - 5000])
    with pytest.raises(DataError, match=r"train.npy: its header declares \(1500, 784\) uint8 .* it is truncated or damaged"):
        read_raw(data(d))
    np.save(d / "train.npy", np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="does not unpickle"):
        read_raw(data(d))
    np.save(d / "train.npy", np.zeros((1500, 700), np.uint8))
    with pytest.raises(DataError, match="700 values are not a square image; set data.image_shape"):
        read_raw(data(d))
    (d / "train.npy").unlink()
    with pytest.raises(DataError, match="train.npy: file not found"):
        read_raw(data(d))
