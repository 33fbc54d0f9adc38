"""data.format: hf: Hugging Face datasets made here from real CIFAR-10 JPEGs and MNIST digits, in
the three layouts (save_to_disk, Parquet files, imagefolder), read offline; the same pixels as
cnnlab's own readers, in memory and per batch alike (in a DataLoader worker too), an unlabelled
test split predicted, every bad input one line."""

from __future__ import annotations

import csv
import json
import socket
import zipfile

import numpy as np
import pytest
import torch
from conftest import CIFAR_ZIP, MNIST, cifar_members, png_bytes, read_idx, write_config
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value

from cnnlab.cli import main
from cnnlab.config import DataConfig
from cnnlab.data.augment import build_pipeline, resolve_ops
from cnnlab.data.batches import LoaderOptions, make_loader
from cnnlab.data.batches.files import FileLoader
from cnnlab.data.build import build_data, read_raw

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Reading a local dataset must not touch the network: every internet connection attempt is
    recorded and refused (local sockets stay: DataLoader workers hand batches over them)."""
    tried = []
    connect = socket.socket.connect

    def refuse(self, address):
        if self.family not in (socket.AF_INET, socket.AF_INET6):
            return connect(self, address)
        tried.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield
    assert tried == []


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    """40 train and 20 test real CIFAR-10 JPEGs as an imagefolder tree, and the same bytes as a
    save_to_disk DatasetDict and as a folder of Parquet files (ClassLabel labels)."""
    root = tmp_path_factory.mktemp("hf-cifar")
    rows: dict[str, list] = {"train": [], "test": []}
    with zipfile.ZipFile(CIFAR_ZIP) as z:
        for m in cifar_members(4, 2):
            split, cls, name = m.filename.split("/")[-3:]
            (root / "imagefolder" / split / cls).mkdir(parents=True, exist_ok=True)
            (root / "imagefolder" / split / cls / name).write_bytes(z.read(m))
            rows[split].append((cls, name, z.read(m)))
    classes = sorted({cls for cls, _, _ in rows["train"]})
    features = Features({"image": Image(), "label": ClassLabel(names=classes)})
    dd = DatasetDict({s: Dataset.from_dict({"image": [{"bytes": b, "path": None} for _, _, b in sorted(r)],
                                            "label": [classes.index(c) for c, _, _ in sorted(r)]}, features=features)
                      for s, r in rows.items()})
    dd.save_to_disk(str(root / "saved"))
    (root / "parquet").mkdir()
    for s in dd:
        dd[s].to_parquet(str(root / "parquet" / f"{s}-00000-of-00001.parquet"))
    return root, classes


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    """Real MNIST digits as a save_to_disk DatasetDict: train (60), validation (20) and an unlabelled
    test split (20, label -1), with ClassLabel names 'zero'..'nine' and extra label columns."""
    x = read_idx(MNIST / "train-images-idx3-ubyte.gz")[:100]
    y = read_idx(MNIST / "train-labels-idx1-ubyte.gz")[:100].astype(int)
    features = Features({"image": Image(), "label": ClassLabel(names=WORDS), "digit": Value("int64"),
                         "word": Value("string"), "score": Value("float32")})

    def part(a, b, labelled=True):
        return Dataset.from_dict({"image": list(x[a:b]), "label": [int(v) if labelled else -1 for v in y[a:b]],
                                  "digit": [int(v) for v in y[a:b]], "word": [WORDS[v] for v in y[a:b]],
                                  "score": [float(v) for v in y[a:b]]}, features=features)

    root = tmp_path_factory.mktemp("hf-mnist")
    DatasetDict({"train": part(0, 60), "validation": part(60, 80), "test": part(80, 100, labelled=False)}
                ).save_to_disk(str(root / "saved"))
    return root / "saved", x, y


def test_three_layouts_hold_the_pixels_image_folder_reads_from_the_same_files(cifar):
    root, classes = cifar
    ref = read_raw(DataConfig(format="image_folder", path=str(root / "imagefolder")))
    for layout in ("saved", "parquet", "imagefolder"):
        raw = read_raw(DataConfig(format="hf", path=str(root / layout)))
        assert raw.classes == ref.classes == classes and raw.label_values == list(range(10))
        for name in ("train", "test"):
            split, want = getattr(raw, name), getattr(ref, name)
            assert len(split) == {"train": 40, "test": 20}[name] and split.shape == (3, 32, 32)
            assert torch.equal(split.x, want.x) and torch.equal(split.y, want.y), (layout, name)
            assert split.ids == [str(i) for i in range(len(split))]


def _loader(bundle, workers, train=False):
    pipeline = build_pipeline(resolve_ops([]), bundle.image_shape, bundle.num_classes)
    options = LoaderOptions(torch.device("cpu"), bundle.scale, bundle.mean, bundle.std, workers=workers)
    return make_loader(bundle.train if train else bundle.test, pipeline, 16, options, train=train,
                       generator=torch.Generator().manual_seed(0) if train else None)


def test_in_memory_and_per_batch_give_the_same_batches(cifar):
    root, _ = cifar
    mem = build_data(DataConfig(format="hf", path=str(root / "parquet"), in_memory=True), seed=0)
    files = build_data(DataConfig(format="hf", path=str(root / "parquet"), in_memory=False), seed=0)
    assert mem.in_memory and not files.in_memory and files.train.files[0].startswith("train/")
    assert files.info()["sizes"] == mem.info()["sizes"] == {"train": 36, "val": 4, "test": 20}
    assert files.train.ids == mem.train.ids and torch.equal(files.train.y, mem.train.y)  # the same stratified split
    assert files.mean == pytest.approx(mem.mean, abs=1e-12)  # 36 training images: all sampled
    per_batch = _loader(files, workers=1)  # rows decoded by index in a DataLoader worker process
    assert isinstance(per_batch, FileLoader)
    pairs = list(zip(_loader(mem, workers=0), per_batch))
    assert len(pairs) == 2 and all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in pairs)
    a, b = _loader(mem, workers=0, train=True), _loader(files, workers=0, train=True)
    for _ in range(2):  # shuffled alike, epoch after epoch
        pairs = list(zip(a, b))
        assert len(pairs) == 3 and all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in pairs)


def test_classlabel_names_a_validation_split_and_an_unlabelled_test_split_to_predict(mnist, tmp_path, capsys):
    path, x, y = mnist
    raw = read_raw(DataConfig(format="hf", path=str(path)))
    assert raw.classes == WORDS and raw.test is None and len(raw.train) == 60 and len(raw.val) == 20
    assert raw.train.shape == (1, 28, 28) and np.array_equal(raw.train.x[:, 0].numpy(), x[:60])  # PNG round trip, exact
    assert raw.val.y.tolist() == y[60:80].tolist()
    assert any("split 'test' (20 rows) is unlabelled" in n for n in raw.notes)

    cfg = write_config(tmp_path / "c.yaml", {"format": "hf", "path": str(path), "in_memory": False, "workers": 0},
                       model={"name": "cnn", "channels": [4]}, train={"epochs": 1, "batch_size": 20})
    assert main(["train", str(cfg), "-q"]) == 0  # file-backed, end to end
    run = next((tmp_path / "runs").iterdir())
    info = json.loads((run / "data.json").read_text())
    assert info["classes"] == WORDS and info["sizes"] == {"train": 60, "val": 20} and info["val_source"] == "folder"
    assert info["in_memory"] is False and info["image_shape"] == [1, 28, 28]
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[0])["epoch"] == 1
    out = tmp_path / "sub.csv"
    assert main(["predict", str(run), str(path), "--out", str(out)]) == 0
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["image_id", "label"] and [r[0] for r in rows[1:]] == [str(i) for i in range(20)]
    assert {int(r[1]) for r in rows[1:]} <= set(range(10))  # a ClassLabel's predictions are its integers


def test_integer_and_string_label_columns(mnist):
    path, _, y = mnist
    digits = read_raw(DataConfig(format="hf", path=str(path), label_column="digit"))
    assert digits.classes == [str(i) for i in range(10)] and digits.label_values == list(range(10))
    assert digits.train.y.tolist() == y[:60].tolist()
    assert digits.test is not None and digits.test.y.tolist() == y[80:].tolist()  # this column labels the test split
    words = read_raw(DataConfig(format="hf", path=str(path), label_column="word"))
    assert words.classes == sorted(WORDS) and words.label_values == sorted(WORDS)
    assert [words.classes[k] for k in words.train.y.tolist()] == [WORDS[v] for v in y[:60]]


def _broken(tmp_path):
    """Five real MNIST digits and one row whose image bytes are not an image (row 3 of train)."""
    x = read_idx(MNIST / "train-images-idx3-ubyte.gz")[:6]
    images = [{"bytes": png_bytes(a), "path": None} for a in x]
    images[3] = {"bytes": b"not an image", "path": None}
    Dataset.from_dict({"image": images, "label": [0, 1, 0, 1, 0, 1]},
                      features=Features({"image": Image(), "label": Value("int64")})).save_to_disk(str(tmp_path / "b"))
    return tmp_path / "b"


def _mixed(tmp_path):
    """Three MNIST digits (28x28 grayscale) and three CIFAR-10 JPEGs (32x32 RGB) in one split, string labels."""
    digits = [{"bytes": png_bytes(a), "path": None} for a in read_idx(MNIST / "train-images-idx3-ubyte.gz")[:3]]
    with zipfile.ZipFile(CIFAR_ZIP) as z:
        photos = [{"bytes": z.read(m), "path": None} for m in cifar_members(1, 0)[:3]]
    Dataset.from_dict({"image": digits + photos, "label": ["digit"] * 3 + ["photo"] * 3},
                      features=Features({"image": Image(), "label": Value("string")})).save_to_disk(str(tmp_path / "m"))
    return tmp_path / "m"


def test_mixed_sizes_and_modes_resize_to_image_size_and_a_corrupt_row_can_be_skipped(tmp_path):
    raw = read_raw(DataConfig(format="hf", path=str(_mixed(tmp_path)), image_size=28, cache=False))
    assert raw.train.shape == (3, 28, 28) and raw.classes == ["digit", "photo"] and raw.train.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert any("converted to RGB" in n for n in raw.notes) and any("resized to 28x28" in n for n in raw.notes)
    gray = raw.train.x[0].numpy()
    assert np.array_equal(gray[0], gray[1]) and np.array_equal(gray[0], read_idx(MNIST / "train-images-idx3-ubyte.gz")[0])
    kept = read_raw(DataConfig(format="hf", path=str(_broken(tmp_path)), skip_corrupt=True, cache=False))
    assert kept.train.ids == ["0", "1", "2", "4", "5"] and any("skipped 1 unreadable" in n for n in kept.notes)


def _not_a_dataset(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no images here")
    return tmp_path / "notes"


@pytest.mark.parametrize("make, overrides, message", [
    (None, ["data.image_column=picture"],
     "split 'train' has no column 'picture'; its columns are ['image', 'label', 'digit', 'word', 'score']"),
    (None, ["data.label_column=score"], "label column 'score' of split 'train' holds float32; expected a ClassLabel"),
    (None, ["data.label_column=class"], "split 'train' has no column 'class'; its columns are"),
    (_not_a_dataset, [], "not a Hugging Face dataset"),
    (_mixed, [], "images have different sizes (28x28 in train/0, 32x32 in train/3); set data.image_size"),
    (_broken, [], "split 'train' row 3: cannot decode"),
    (_broken, ["data.in_memory=false"], "split 'train' row 3: cannot decode"),
])
def test_bad_input_is_one_line_and_exit_2(mnist, tmp_path, capsys, make, overrides, message):
    path = mnist[0] if make is None else make(tmp_path)
    cfg = write_config(tmp_path / "c.yaml", {"format": "hf", "path": str(path)}, model={"name": "cnn"})
    assert main(["train", str(cfg), *overrides]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and str(path) in err[0], err
    assert not (tmp_path / "runs").exists()
