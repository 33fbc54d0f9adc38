"""Pixel CSVs in the Kaggle digit-recognizer layout, written from real MNIST; predict on an unlabelled CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import FASHION, MNIST, read_idx, write_config

from cnnlab.cli import main
from cnnlab.config import DataConfig
from cnnlab.data.build import read_raw
from cnnlab.errors import DataError

HEADER = "label," + ",".join(f"pixel{i}" for i in range(784))


def rows(x: np.ndarray, y: np.ndarray | None = None) -> str:
    body = x.reshape(len(x), -1)
    if y is not None:
        body = np.hstack([np.asarray(y).reshape(-1, 1), body])
    return "\n".join(",".join(map(str, r)) for r in body.tolist()) + "\n"


@pytest.fixture(scope="module")
def mnist():
    x = read_idx(MNIST / "train-images-idx3-ubyte.gz")[:2000]
    y = read_idx(MNIST / "train-labels-idx1-ubyte.gz")[:2000]
    return x, y


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory, mnist) -> Path:
    """digit-recognizer/: train.csv (1,700 labelled rows), test.csv (300 unlabelled), test_labelled.csv."""
    x, y = mnist
    d = tmp_path_factory.mktemp("digit-recognizer")
    (d / "train.csv").write_text(HEADER + "\n" + rows(x[:1700], y[:1700]))
    (d / "test.csv").write_text(HEADER.split(",", 1)[1] + "\n" + rows(x[1700:]))
    (d / "test_labelled.csv").write_text(HEADER + "\n" + rows(x[1700:], y[1700:]))
    return d


def data(path, **kw):
    return DataConfig(format="csv_pixels", path=str(path), **kw)


def test_reads_the_kaggle_layout(kaggle, mnist):
    x, y = mnist
    raw = read_raw(data(kaggle))
    assert raw.train.x.shape == (1700, 1, 28, 28) and raw.train.x.dtype.is_floating_point is False
    assert np.array_equal(raw.train.x[:, 0].numpy(), x[:1700]) and np.array_equal(raw.train.y.numpy(), y[:1700])
    assert raw.classes == [str(i) for i in range(10)] and raw.test is None
    assert any("test.csv is unlabelled: predict on it with `cnnlab predict RUN" in n for n in raw.notes)
    raw = read_raw(data(kaggle / "train.csv", test_file="test_labelled.csv"))  # the file itself as path
    assert np.array_equal(raw.test.x[:, 0].numpy(), x[1700:]) and np.array_equal(raw.test.y.numpy(), y[1700:])
    with pytest.raises(DataError, match="test.csv: no 'label' column, so it cannot be the test split"):
        read_raw(data(kaggle, test_file="test.csv"))


def test_named_labels_other_columns_and_float_pixels(tmp_path):
    x = read_idx(FASHION / "t10k-images-idx3-ubyte.gz")[:300]
    y = read_idx(FASHION / "t10k-labels-idx1-ubyte.gz")[:300]
    names = np.array(["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"])
    # Label last, an id column first, pixels as floats in 0..1.
    body = [f"{i}," + ",".join(f"{v / 255:.6f}" for v in img) + f",{names[c]}" for i, (img, c) in enumerate(zip(x.reshape(300, -1), y))]
    f = tmp_path / "fashion.csv"
    f.write_text("id," + ",".join(f"p{i}" for i in range(784)) + ",class\n" + "\n".join(body) + "\n")
    raw = read_raw(data(f, label_column="class", ignore_columns=["id"]))
    assert raw.classes == sorted(names.tolist()) and raw.label_values == raw.classes
    assert [raw.classes[i] for i in raw.train.y] == names[y].tolist()
    assert raw.train.x.dtype.is_floating_point and np.allclose(raw.train.x[:, 0].numpy() * 255, x, atol=1e-3)
    with pytest.raises(DataError, match="rows of 785 values are not a square image"):
        read_raw(data(f, label_column="class"))  # the id column counted as a pixel
    with pytest.raises(DataError, match="no 'label' column in the header; set data.label_column"):
        read_raw(data(f))


@pytest.mark.parametrize("edit, message", [
    (lambda lines: lines.__setitem__(6, lines[6] + ",0"), r"line 7: 786 columns, but the header has 785"),
    (lambda lines: lines.__setitem__(9, lines[9].rsplit(",", 1)[0]), r"line 10: 784 columns, but the header has 785"),
    (lambda lines: lines.__setitem__(12, lines[12].replace(",0,", ",zero,", 1)), r"line 13, column \d+: 'zero' is not a number"),
    (lambda lines: lines.__setitem__(4, "," + lines[4].split(",", 1)[1]), r"line 5: empty 'label' value"),
    (lambda lines: lines.__setitem__(3, "11" + lines[3][1:]), r"line 4: label 11 is outside the class range 0..9"),
])
def test_bad_rows_name_the_line(tmp_path, mnist, edit, message):
    x, y = mnist
    lines = (HEADER + "\n" + rows(x[:20], y[:20])).splitlines()
    lines.insert(2, "")  # an empty line is skipped, and still counted in line numbers
    edit(lines)
    f = tmp_path / "train.csv"
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message):
        read_raw(data(f, num_classes=10))


@pytest.mark.slow
def test_full_size_digit_recognizer_file(tmp_path, mnist):
    """42,000 x 785, the size of Kaggle's train.csv (real MNIST rows, repeated)."""
    x, y = mnist
    block = rows(x, y)
    (tmp_path / "train.csv").write_text(HEADER + "\n" + block * 21)
    raw = read_raw(data(tmp_path))
    assert raw.train.x.shape == (42000, 1, 28, 28) and raw.train.x.dtype.is_floating_point is False
    assert np.array_equal(raw.train.x[41999, 0].numpy(), x[-1]) and np.array_equal(raw.train.y[:2000].numpy(), y)


@pytest.mark.slow
def test_train_then_predict_an_unlabelled_csv(kaggle, mnist, tmp_path, capsys):
    cfg = write_config(tmp_path / "k.yaml", {"format": "csv_pixels", "path": str(kaggle), "test_file": "test_labelled.csv"},
                       train={"epochs": 1})
    assert main(["train", str(cfg), "-q"]) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    out = tmp_path / "submission.csv"
    assert main(["predict", str(run_dir), str(kaggle / "test.csv"), "--out", str(out)]) == 0
    got = list(csv.reader(out.open()))
    assert got[0] == ["image_id", "label"] and [r[0] for r in got[1:]] == [str(i) for i in range(300)]
    pred = np.array([int(r[1]) for r in got[1:]])
    summary = json.loads((run_dir / "summary.json").read_text())
    # The unlabelled file holds the test split's images: same model, same answers.
    assert (pred == mnist[1][1700:]).mean() == pytest.approx(summary["test_acc"], abs=1e-9) and summary["test_acc"] > 0.7
    bad = tmp_path / "wide.csv"
    bad.write_text("a,b,c\n1,2,3\n")
    assert main(["predict", str(run_dir), str(bad), "--out", str(tmp_path / "o.csv")]) == 2
    assert "rows of 3 pixel columns, but the model takes 1x28x28 = 784" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()


def test_inspect_mentions_the_unlabelled_test_file(kaggle, tmp_path, capsys):
    cfg = write_config(tmp_path / "c.yaml", {"format": "csv_pixels", "path": str(kaggle)})
    assert main(["data", "inspect", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "splits train 1530, val 170" in out and "1x28x28" in out and "uint8, values 0..255" in out
    assert "test.csv is unlabelled: predict on it with" in out
