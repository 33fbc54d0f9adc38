"""CIFAR binary and Python versions, written in the official formats from real CIFAR-10 pixels."""

from __future__ import annotations

import os
import pickle
import re
import shutil

import numpy as np
import pytest
from conftest import CIFAR_CLASSES, cifar_arrays

from cnnlab.config import DataConfig
from cnnlab.data.build import build_data, read_raw
from cnnlab.data.read.safe_pickle import load_pickle
from cnnlab.errors import DataError

FINE = [f"fine{i:02d}" for i in range(100)]
COARSE = [f"coarse{i:02d}" for i in range(20)]


def data(path, **kw):
    return DataConfig(format="cifar", path=str(path), **kw)


def planes(x: np.ndarray) -> np.ndarray:
    """N x 32 x 32 x 3 images as the official N x 3072 rows: R plane, G plane, B plane."""
    return x.transpose(0, 3, 1, 2).reshape(len(x), 3072)


def dump(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the protocol of the original Python 2 files


def fine_coarse(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Made-up CIFAR-100 labels for the real images: 100 fine classes, 20 coarse ones."""
    fine = y * 10 + np.arange(len(y)) % 10
    return fine, fine // 5


@pytest.fixture(scope="module")
def arrays():
    """300 real CIFAR-10 images: 20 per class for training, 10 per class for test."""
    return cifar_arrays(20, 10)


@pytest.fixture(scope="module")
def cifar_dirs(tmp_path_factory, arrays):
    """All four official layouts written from the same images."""
    root = tmp_path_factory.mktemp("cifar-files")
    (xtr, ytr, ntr), (xte, yte, nte) = arrays["train"], arrays["test"]
    names = lambda ns: [n.split("/")[-1].replace(".jpg", ".png").encode() for n in ns]  # noqa: E731

    py = root / "cifar-10-batches-py"
    py.mkdir()
    for b, idx in enumerate(np.array_split(np.arange(len(xtr)), 5), start=1):
        dump(py / f"data_batch_{b}", {b"batch_label": f"training batch {b} of 5".encode(), b"labels": ytr[idx].tolist(),
                                      b"data": planes(xtr[idx]), b"filenames": names([ntr[i] for i in idx])})
    dump(py / "test_batch", {b"batch_label": b"testing batch 1 of 1", b"labels": yte.tolist(), b"data": planes(xte),
                             b"filenames": names(nte)})
    dump(py / "batches.meta", {b"num_cases_per_batch": 10000, b"label_names": [c.encode() for c in CIFAR_CLASSES],
                               b"num_vis": 3072})

    binary = root / "cifar-10-batches-bin"
    binary.mkdir()
    for b, idx in enumerate(np.array_split(np.arange(len(xtr)), 5), start=1):
        (binary / f"data_batch_{b}.bin").write_bytes(np.hstack([ytr[idx, None].astype(np.uint8), planes(xtr[idx])]).tobytes())
    (binary / "test_batch.bin").write_bytes(np.hstack([yte[:, None].astype(np.uint8), planes(xte)]).tobytes())
    (binary / "batches.meta.txt").write_text("\n".join(CIFAR_CLASSES) + "\n\n")  # trailing blank line, as the original

    py100 = root / "cifar-100-python"
    py100.mkdir()
    for split, (x, y, ns) in (("train", arrays["train"]), ("test", arrays["test"])):
        fine, coarse = fine_coarse(y)
        dump(py100 / split, {b"filenames": names(ns), b"batch_label": f"{split}ing batch 1 of 1".encode(),
                             b"fine_labels": fine.tolist(), b"coarse_labels": coarse.tolist(), b"data": planes(x)})
    dump(py100 / "meta", {b"fine_label_names": [n.encode() for n in FINE], b"coarse_label_names": [n.encode() for n in COARSE]})

    bin100 = root / "cifar-100-binary"
    bin100.mkdir()
    for split, (x, y, _) in (("train", arrays["train"]), ("test", arrays["test"])):
        fine, coarse = fine_coarse(y)
        rows = np.hstack([coarse[:, None].astype(np.uint8), fine[:, None].astype(np.uint8), planes(x)])
        (bin100 / f"{split}.bin").write_bytes(rows.tobytes())
    (bin100 / "fine_label_names.txt").write_text("\n".join(FINE) + "\n")
    (bin100 / "coarse_label_names.txt").write_text("\n".join(COARSE) + "\n")
    return root


@pytest.mark.parametrize("folder", ["cifar-10-batches-py", "cifar-10-batches-bin"])
def test_cifar10_both_versions_give_back_the_pixels_and_labels(cifar_dirs, arrays, folder):
    raw = read_raw(data(cifar_dirs / folder))
    (xtr, ytr, ntr), (xte, yte, _) = arrays["train"], arrays["test"]
    assert raw.classes == CIFAR_CLASSES and raw.label_values == list(range(10))
    assert raw.train.x.shape == (200, 3, 32, 32) and raw.test.x.shape == (100, 3, 32, 32)
    assert np.array_equal(raw.train.x.numpy(), xtr.transpose(0, 3, 1, 2))
    assert np.array_equal(raw.test.x.numpy(), xte.transpose(0, 3, 1, 2))
    assert np.array_equal(raw.train.y.numpy(), ytr) and np.array_equal(raw.test.y.numpy(), yte)
    assert np.bincount(raw.train.y.numpy()).tolist() == [20] * 10
    if folder.endswith("py"):  # the pickles carry file names, used as ids
        assert raw.train.ids[0] == ntr[0].split("/")[-1].replace(".jpg", ".png")
    else:
        assert raw.train.ids[:2] == ["data_batch_1.bin:0", "data_batch_1.bin:1"]


@pytest.mark.parametrize("folder", ["cifar-100-python", "cifar-100-binary"])
def test_cifar100_fine_and_coarse_labels(cifar_dirs, arrays, folder):
    fine, coarse = fine_coarse(arrays["train"][1])
    raw = read_raw(data(cifar_dirs / folder))
    assert raw.classes == FINE and np.array_equal(raw.train.y.numpy(), fine)
    assert np.array_equal(raw.train.x.numpy(), arrays["train"][0].transpose(0, 3, 1, 2))
    raw = read_raw(data(cifar_dirs / folder, label_mode="coarse"))
    assert raw.classes == COARSE and np.array_equal(raw.train.y.numpy(), coarse)
    assert np.array_equal(raw.test.y.numpy(), fine_coarse(arrays["test"][1])[1])
    assert "coarse labels" in raw.notes[0]


def test_detects_the_layout_one_folder_down_and_honours_version(cifar_dirs, tmp_path):
    both = tmp_path / "both"
    for name in ("cifar-10-batches-py", "cifar-10-batches-bin"):
        shutil.copytree(cifar_dirs / name, both / name)
    assert "binary version" in read_raw(data(both)).notes[0]  # the binary files need no unpickling
    raw = read_raw(data(both, version="python"))
    assert "python version" in raw.notes[0] and len(raw.train) == 200
    b = build_data(data(both, val_fraction=0.1), seed=0)
    assert len(b.train) == 180 and len(b.val) == 20 and len(b.test) == 100
    with pytest.raises(DataError, match="no CIFAR files found"):
        read_raw(data(tmp_path / "both" / "cifar-10-batches-py", version="binary"))


def test_missing_batches_and_meta(cifar_dirs, tmp_path):
    d = tmp_path / "cifar-10-batches-bin"
    shutil.copytree(cifar_dirs / "cifar-10-batches-bin", d)
    (d / "data_batch_5.bin").unlink()
    (d / "batches.meta.txt").unlink()
    raw = read_raw(data(d))
    assert len(raw.train) == 160 and raw.classes == [str(i) for i in range(10)]
    assert any("only 4 of 5 training batches" in n for n in raw.notes)
    assert any("batches.meta.txt not found" in n for n in raw.notes)
    (d / "test_batch.bin").unlink()
    with pytest.raises(DataError, match="found data_batch_1.bin but not test_batch.bin"):
        read_raw(data(d))


def test_truncated_records_and_wrong_label_mode(cifar_dirs, tmp_path):
    d = tmp_path / "cifar-100-binary"
    shutil.copytree(cifar_dirs / "cifar-100-binary", d)
    blob = (d / "train.bin").read_bytes()
    (d / "train.bin").write_bytes(blob[:-1000])
    with pytest.raises(DataError, match=r"train.bin: 613800 bytes is not a whole number of 3074-byte records "
                                        r"\(199 complete, 2074 bytes left over\)"):
        read_raw(data(d))
    rows = np.frombuffer(blob, np.uint8).reshape(-1, 3074).copy()
    rows[7, 1] = 100  # a fine label beyond the 100 classes
    (d / "train.bin").write_bytes(rows.tobytes())
    with pytest.raises(DataError, match=r"cifar-100-binary/train.bin: label 100 at row 7 is outside the class range 0..99"):
        read_raw(data(d))
    with pytest.raises(DataError, match="'coarse' labels exist only in CIFAR-100"):
        read_raw(data(cifar_dirs / "cifar-10-batches-bin", label_mode="coarse"))
    py = tmp_path / "cifar-10-batches-py"
    shutil.copytree(cifar_dirs / "cifar-10-batches-py", py)
    blob = (py / "data_batch_2").read_bytes()
    (py / "data_batch_2").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="data_batch_2: not a readable pickle"):
        read_raw(data(py))


class _Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


@pytest.mark.parametrize("how", ["os.system", "builtins.eval", "nested"])
def test_malicious_pickles_are_refused_without_running_anything(cifar_dirs, tmp_path, how):
    marker = tmp_path / "pwned"
    if how == "os.system":
        payload = _Evil(os.system, f"touch {marker}")
    elif how == "builtins.eval":
        payload = _Evil(eval, f"open({str(marker)!r}, 'w').write('x')")
    else:  # hidden inside an otherwise genuine batch dict
        payload = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [_Evil(os.system, f"touch {marker}")]}
    d = tmp_path / "cifar-10-batches-py"
    shutil.copytree(cifar_dirs / "cifar-10-batches-py", d)
    with open(d / "data_batch_3", "wb") as f:
        pickle.dump(payload, f, protocol=2)
    expected = {"os.system": r"(posix|nt|os)\.system", "builtins.eval": r"(__builtin__|builtins)\.eval", "nested": r"(posix|nt|os)\.system"}[how]
    with pytest.raises(DataError, match=rf"data_batch_3: refusing to unpickle {expected}"):
        read_raw(data(d))
    assert not marker.exists()


def test_safe_unpickler_returns_plain_data_only(tmp_path):
    f = tmp_path / "p"
    arr = np.arange(12, dtype=np.int16).reshape(3, 4)
    dump(f, {b"a": arr, "b": [1, 2.5, b"", "s", np.float32(1.5)]})
    d = load_pickle(f)
    assert np.array_equal(d[b"a"], arr) and d[b"a"].dtype == np.int16 and d["b"][2] == b""
    dump(f, np.array([{}, []], dtype=object))  # object arrays carry arbitrary Python objects
    with pytest.raises(DataError, match="array of Python objects"):
        load_pickle(f)
    import collections
    dump(f, collections.OrderedDict(a=1))
    with pytest.raises(DataError, match="refusing to unpickle collections.OrderedDict"):
        load_pickle(f)


def test_inspect_shows_names_and_version(cifar_dirs, arrays, tmp_path, capsys):
    from conftest import write_config

    from cnnlab.cli import main

    cfg = write_config(tmp_path / "c.yaml", {"format": "cifar", "path": str(cifar_dirs / "cifar-100-binary"),
                                             "label_mode": "coarse", "val_fraction": 0})
    assert main(["data", "inspect", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "splits train 200, test 100" in out and "3x32x32" in out and "classes 20" in out
    assert "CIFAR-100 binary version" in out and "coarse labels" in out
    n_train, n_test = (int((fine_coarse(arrays[s][1])[1] == 7).sum()) for s in ("train", "test"))
    assert re.search(rf"\n\s*7\s+coarse07\s+7\s+{n_train}\s+{n_test}\s*\n", out)
