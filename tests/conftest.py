"""Shared fixtures: small slices of the real datasets in ../shared/datasets, written in each format."""

from __future__ import annotations

import functools
import gzip
import io
import os
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.data.read.idx import read_idx  # noqa: F401  (tests slice the real files with it)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests use bench/standins.py
SHARED = Path(os.environ.get("CNNLAB_SHARED", ROOT.parent / "shared")) / "datasets"
MNIST = SHARED / "mnist"
CIFAR_ZIP = SHARED / "cifar10" / "cifar10-jpeg.zip"
FASHION = Path(os.environ.get("CNNLAB_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))

torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else max(1, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Decoded-data cache in a per-session temp folder, never the user's ~/.cache."""
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def fresh_registries():
    """What a test's user files register is forgotten after it (one process runs many tests)."""
    from cnnlab.registry import ALL

    saved = [(r, dict(r._entries), dict(r._references)) for r in ALL]
    yield
    for r, entries, refs in saved:
        r._entries, r._references = entries, refs


def write_idx(path: Path, arr: np.ndarray, compress: bool = True) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    data = header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(data, compresslevel=1) if compress else data)


def idx_slice(src: Path, dest: Path, n_train: int, n_test: int, compress: bool = True) -> Path:
    """The first n images of a real IDX dataset, written as a new IDX folder."""
    dest.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    for split, n in (("train", n_train), ("t10k", n_test)):
        x = read_idx(src / f"{split}-images-idx3-ubyte.gz")[:n]
        y = read_idx(src / f"{split}-labels-idx1-ubyte.gz")[:n]
        write_idx(dest / f"{split}-images-idx3-ubyte{suffix}", x, compress)
        write_idx(dest / f"{split}-labels-idx1-ubyte{suffix}", y, compress)
    return dest


@pytest.fixture(scope="session")
def mnist_small(tmp_path_factory) -> Path:
    """1,200 training and 300 test images of real MNIST, gzip IDX."""
    return idx_slice(MNIST, tmp_path_factory.mktemp("mnist") / "mnist", 1200, 300)


@pytest.fixture(scope="session")
def fashion_small(tmp_path_factory) -> Path:
    """1,200 training and 300 test images of real Fashion-MNIST, uncompressed IDX."""
    if not FASHION.is_dir():
        pytest.fail(f"Fashion-MNIST missing at {FASHION}: run `apt-get install -y dataset-fashion-mnist` (make setup does)")
    return idx_slice(FASHION, tmp_path_factory.mktemp("fmnist") / "fashion", 1200, 300, compress=False)


@pytest.fixture(scope="session")
def kaggle_dir(tmp_path_factory) -> Path:
    """Kaggle layout from real Fashion-MNIST: train.npy (N x 784), train.csv (shuffled rows), test.npy."""
    if not FASHION.is_dir():
        pytest.fail(f"Fashion-MNIST missing at {FASHION}")
    d = tmp_path_factory.mktemp("kaggle")
    x = read_idx(FASHION / "train-images-idx3-ubyte.gz")[:1500].reshape(1500, 784)
    y = read_idx(FASHION / "train-labels-idx1-ubyte.gz")[:1500]
    np.save(d / "train.npy", x)
    order = np.random.default_rng(0).permutation(1500)  # rows listed in any order
    (d / "train.csv").write_text("image_id,label\n" + "".join(f"{i},{y[i]}\n" for i in order))
    np.save(d / "test.npy", read_idx(FASHION / "t10k-images-idx3-ubyte.gz")[:200].reshape(200, 784))
    np.save(d / "test_labels.npy", read_idx(FASHION / "t10k-labels-idx1-ubyte.gz")[:200])
    return d


def cifar_members(per_class_train: int, per_class_test: int) -> list[zipfile.ZipInfo]:
    """The first images of each class and split from the shared CIFAR-10 JPEG zip."""
    from bench.standins import cifar_members as first_members

    return first_members({"train": per_class_train, "test": per_class_test})


@pytest.fixture(scope="session")
def cifar_zip_small(tmp_path_factory) -> Path:
    """A zip with the shared archive's layout: 40 train and 10 test real CIFAR-10 JPEGs per class."""
    dest = tmp_path_factory.mktemp("cifar") / "cifar-small.zip"
    with zipfile.ZipFile(CIFAR_ZIP) as src, zipfile.ZipFile(dest, "w") as out:
        for info in cifar_members(40, 10):
            out.writestr(info.filename, src.read(info))
    return dest


@pytest.fixture(scope="session")
def cifar_folder_small(tmp_path_factory, cifar_zip_small) -> Path:
    """The same images extracted as a folder tree: root/{train,test}/<class>/*.jpg."""
    dest = tmp_path_factory.mktemp("cifar-folder")
    with zipfile.ZipFile(cifar_zip_small) as z:
        z.extractall(dest)
    return dest / "cifar10"


def write_config(path: Path, data: dict, **sections) -> Path:
    """A YAML config for a tiny, fast model on the given data section."""
    import yaml

    cfg = {
        "name": "t",
        "seed": 0,
        "device": "cpu",
        "data": data,
        "model": {"name": "cnn", "channels": [8, 16], "norm": "batch"},
        "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
        "train": {"epochs": 2, "batch_size": 64, "out_dir": str(path.parent / "runs")},
    }
    for k, v in sections.items():
        # Options merge into a section, unless it names another model/optimizer (then it replaces it).
        same = isinstance(v, dict) and isinstance(cfg.get(k), dict) and v.get("name", cfg[k].get("name")) == cfg[k].get("name")
        cfg[k] = {**cfg[k], **v} if same else v
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


def png_bytes(arr: np.ndarray, mode: str | None = None) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@functools.lru_cache(maxsize=8)
def cifar_arrays(per_class_train: int, per_class_test: int) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
    """Decoded real CIFAR-10 JPEGs: split -> (N x 32 x 32 x 3 uint8, labels, member names); shared, do not modify."""
    from PIL import Image

    out: dict[str, tuple[list, list, list]] = {"train": ([], [], []), "test": ([], [], [])}
    with zipfile.ZipFile(CIFAR_ZIP) as z:
        for info in cifar_members(per_class_train, per_class_test):
            _, split, cls, _ = info.filename.split("/")
            with z.open(info) as f:
                out[split][0].append(np.asarray(Image.open(f).convert("RGB")))
            out[split][1].append(CIFAR_CLASSES.index(cls))
            out[split][2].append(info.filename)
    return {k: (np.stack(x), np.asarray(y, np.int64), names) for k, (x, y, names) in out.items() if x}


# ----------------------------------------------------------------------------- NumPy engine


def relative_error(a, b) -> float:
    """max|a - b| / max(max|a|, max|b|, 1e-8): robust when gradients are tiny."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0), 1e-8)
    return float(np.abs(a - b).max(initial=0.0) / scale)


@pytest.fixture
def assert_close():
    """Assert two arrays agree to a relative tolerance (1e-10 by default, for float64)."""

    def check(actual, expected, rtol: float = 1e-10, what: str = "") -> None:
        actual = actual.detach().numpy() if hasattr(actual, "detach") else actual
        expected = expected.detach().numpy() if hasattr(expected, "detach") else expected
        assert np.shape(actual) == np.shape(expected), what
        err = relative_error(actual, expected)
        assert err <= rtol, f"{what}: relative error {err:.3e} > {rtol:.1e}"

    return check


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The shared MNIST IDX folder (the real files)."""
    return MNIST


def _train(cfg: Path) -> Path:
    from cnnlab.cli import main

    assert main(["train", str(cfg), "-q"]) == 0
    return next((cfg.parent / "runs").iterdir())


@pytest.fixture(scope="session")
def cifar_run(tmp_path_factory, cifar_zip_small) -> Path:
    """A small BN CNN trained 3 epochs on 360 real CIFAR-10 images (val 40, test 100): the
    run directory the analysis tests read (init.pt, best.pt, last.pt)."""
    folder = tmp_path_factory.mktemp("cifar-run")
    cfg = write_config(folder / "c.yaml", {"format": "image_folder", "path": str(cifar_zip_small), "val_fraction": 0.1},
                       model={"name": "cnn", "channels": [8, 16], "norm": "batch"},
                       optim={"name": "adam", "lr": 0.003}, train={"epochs": 3, "batch_size": 32})
    return _train(cfg)


@pytest.fixture(scope="session")
def scratch_run(tmp_path_factory, mnist_small) -> Path:
    """LeNet trained one epoch by the NumPy engine on 1,200 real MNIST images."""
    folder = tmp_path_factory.mktemp("scratch-run")
    cfg = write_config(folder / "c.yaml", {"format": "idx", "path": str(mnist_small), "val_fraction": 0.1},
                       model={"name": "lenet"}, optim={"name": "sgd", "lr": 0.05, "momentum": 0.9},
                       train={"epochs": 1, "batch_size": 32})
    text = cfg.read_text()
    cfg.write_text(text + "engine: scratch\n")
    return _train(cfg)


# ----------------------------------------------------------------------------- reports


@pytest.fixture(scope="session")
def report_run(tmp_path_factory, mnist_small) -> Path:
    """Two epochs of a small CNN on 400 real MNIST images (val 100, test 300) with TensorBoard logs,
    and two analyses (kernels, errors): the run the report tests read."""
    from cnnlab.cli import main

    folder = tmp_path_factory.mktemp("report-run")
    cfg = write_config(folder / "c.yaml", {"format": "idx", "path": str(mnist_small), "limit_train": 400,
                                           "val_fraction": 0.25},
                       model={"name": "cnn", "channels": [4, 8], "norm": "batch"},
                       train={"epochs": 2, "batch_size": 50, "tensorboard": True})
    run_dir = _train(cfg)
    for what in ("kernels", "errors"):
        assert main(["analyze", str(run_dir), what]) == 0
    return run_dir


REPORT_STUDY = {
    "mode": "ablation",
    "seeds": [0, 1],
    "axes": {"model.dropout": [0.0, 0.5]},
    "table": {"metrics": ["test_acc", "val_loss"], "metric_style": "error"},
}


@pytest.fixture(scope="session")
def report_study(tmp_path_factory, mnist_small) -> Path:
    """A real ablation for the report tests: dropout 0 (the base) vs 0.5, two seeds, two epochs on 180
    MNIST images (60 validation, 300 test), every run with TensorBoard logs; returns its folder."""
    import yaml

    from cnnlab.cli import main

    folder = tmp_path_factory.mktemp("report-study")
    write_config(folder / "base.yaml", {"format": "idx", "path": str(mnist_small), "limit_train": 240,
                                        "val_fraction": 0.25},
                 model={"name": "cnn", "channels": [4], "norm": "batch"},
                 train={"epochs": 2, "batch_size": 60, "tensorboard": True})
    study = folder / "dropout.yaml"
    study.write_text(yaml.safe_dump({"base": "base.yaml", "out_dir": str(folder / "studies"), **REPORT_STUDY}))
    assert main(["study", str(study)]) == 0
    return folder / "studies" / "dropout"
