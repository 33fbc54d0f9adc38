"""Tiny ImageNet layout (folder and zip) built from real CIFAR-10 JPEGs, read, trained on, predicted."""

from __future__ import annotations

import csv
import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import CIFAR_CLASSES, CIFAR_ZIP, cifar_members, write_config
from PIL import Image

from cnnlab.cli import main
from cnnlab.config import DataConfig
from cnnlab.data.build import build_data, read_raw
from cnnlab.errors import ConfigError, DataError

# Made-up WordNet ids, listed in wnids.txt out of sorted order as in the real file.
WNIDS = {c: f"n0{9 - i}{1443537 + 7 * i:07d}" for i, c in enumerate(CIFAR_CLASSES)}
SORTED = sorted(WNIDS.values())
NAMES = [next(c for c, w in WNIDS.items() if w == wnid) for wnid in SORTED]


def jpeg(arr: np.ndarray, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    im = Image.fromarray(arr).resize((64, 64), Image.Resampling.BICUBIC)
    im.convert(mode).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """tiny-imagenet-200/ with 20 train and 5 val images per class, 10 test images, all 64x64 JPEGs."""
    root = tmp_path_factory.mktemp("tiny") / "tiny-imagenet-200"
    counts: dict[tuple[str, str], int] = {}
    val_lines, k_val, k_test = [], 0, 0
    with zipfile.ZipFile(CIFAR_ZIP) as z:
        for info in cifar_members(25, 1):
            _, split, cls, _ = info.filename.split("/")
            arr = np.asarray(Image.open(io.BytesIO(z.read(info))).convert("RGB"))
            wnid = WNIDS[cls]
            n = counts[split, cls] = counts.get((split, cls), 0) + 1
            if split == "test":
                dest, k_test = root / "test" / "images" / f"test_{k_test}.JPEG", k_test + 1
            elif n <= 20:
                dest = root / "train" / wnid / "images" / f"{wnid}_{n - 1}.JPEG"
                (root / "train" / wnid / f"{wnid}_boxes.txt").parent.mkdir(parents=True, exist_ok=True)
                with open(root / "train" / wnid / f"{wnid}_boxes.txt", "a") as f:
                    f.write(f"{wnid}_{n - 1}.JPEG\t0\t0\t63\t63\n")
            else:
                dest, k_val = root / "val" / "images" / f"val_{k_val}.JPEG", k_val + 1
                val_lines.append(f"{dest.name}\t{wnid}\t1\t2\t60\t61\n")
            dest.parent.mkdir(parents=True, exist_ok=True)
            # Some real Tiny ImageNet JPEGs are grayscale: make the first of each class so.
            dest.write_bytes(jpeg(arr, "L" if n == 1 else "RGB"))
    (root / "val" / "val_annotations.txt").write_text("".join(val_lines))
    (root / "wnids.txt").write_text("\n".join(WNIDS.values()) + "\n")
    words = [f"{w}\t{c}, {c}s, other synonym\n" for c, w in WNIDS.items()]
    (root / "words.txt").write_text("n00001740\tentity\n" + "".join(words) + "n15300051\tgestation\n")
    return root


@pytest.fixture(scope="module")
def tiny_zip(tiny) -> Path:
    """The same tree as tiny-imagenet-200.zip, with its top folder inside."""
    dest = tiny.parent / "tiny-imagenet-200.zip"
    with zipfile.ZipFile(dest, "w") as z:
        for p in sorted(tiny.rglob("*")):
            if p.is_file():
                z.write(p, "tiny-imagenet-200/" + p.relative_to(tiny).as_posix())
    return dest


def data(path, **kw):
    return DataConfig(format="tiny_imagenet", path=str(path), **kw)


def test_reads_classes_names_labels_and_pixels(tiny):
    raw = read_raw(data(tiny, cache=False))
    assert raw.label_values == SORTED and raw.classes == NAMES  # first synonym from words.txt
    assert raw.train.x.shape == (200, 3, 64, 64) and raw.val.x.shape == (50, 3, 64, 64) and raw.test is None
    assert np.bincount(raw.train.y.numpy()).tolist() == [20] * 10 and np.bincount(raw.val.y.numpy()).tolist() == [5] * 10
    for split, k in (("train", 0), ("train", 57), ("val", 13)):
        s = getattr(raw, split)
        wnid = SORTED[int(s.y[k])]
        f = tiny / "train" / wnid / "images" / s.ids[k] if split == "train" else tiny / "val" / "images" / s.ids[k]
        assert np.array_equal(s.x[k].numpy(), np.asarray(Image.open(f).convert("RGB")).transpose(2, 0, 1))
        if split == "train":
            assert s.ids[k].startswith(wnid + "_")
    # The val label is the wnid of its annotation line.
    lines = dict(line.split("\t")[:2] for line in (tiny / "val" / "val_annotations.txt").read_text().splitlines())
    assert [SORTED[int(c)] for c in raw.val.y] == [lines[i] for i in raw.val.ids]
    # A grayscale JPEG becomes RGB with three equal channels.
    gray = raw.train.ids.index(f"{SORTED[0]}_0.JPEG")
    assert Image.open(tiny / "train" / SORTED[0] / "images" / raw.train.ids[gray]).mode == "L"
    assert (raw.train.x[gray, 0] == raw.train.x[gray, 2]).all()
    assert any("test/ holds 10 unlabelled images" in n for n in raw.notes)


def test_zip_reads_the_same_and_is_cached(tiny, tiny_zip, tmp_path):
    a = read_raw(data(tiny, cache=False))
    b = read_raw(data(tiny_zip, cache_dir=str(tmp_path)))
    assert a.train.ids == b.train.ids and (a.train.x == b.train.x).all() and (a.val.y == b.val.y).all()
    assert len(list(tmp_path.glob("*.npz"))) == 1
    c = read_raw(data(tiny_zip, cache_dir=str(tmp_path)))  # from the cache
    assert c.classes == NAMES and c.label_values == SORTED and (c.val.x == a.val.x).all()
    assert any("after extracting test/images" in n for n in b.notes)
    bundle = build_data(data(tiny_zip, cache_dir=str(tmp_path)), seed=0)
    assert bundle.val_source == "folder" and len(bundle.train) == 200


@pytest.mark.parametrize("edit, message", [
    (lambda r: _append(r / "val" / "val_annotations.txt", "val_999.JPEG\tn09999999\t0\t0\t1\t1\n"),
     r"val_annotations.txt: line 51: wnid 'n09999999' is not listed in wnids.txt"),
    (lambda r: _append(r / "val" / "val_annotations.txt", f"val_999.JPEG\t{SORTED[3]}\t0\t0\t1\t1\n"),
     r"val_annotations.txt: line 51: .*val/images/val_999.JPEG does not exist"),
    (lambda r: shutil.copy(r / "val" / "images" / "val_0.JPEG", r / "val" / "images" / "extra.JPEG"),
     r"val/images/extra.JPEG: has no line in .*val_annotations.txt"),
    (lambda r: shutil.copytree(r / "train" / SORTED[0], r / "train" / "n00000001"),
     r"train/n00000001: folder 'n00000001' is not a wnid listed in wnids.txt"),
    (lambda r: (r / "wnids.txt").unlink(), r"no wnids.txt found"),
    (lambda r: (r / "val" / "images" / "val_7.JPEG").write_bytes(b"\xff\xd8 not really"),
     r"val/images/val_7.JPEG: cannot decode image"),
])
def test_bad_layouts_name_the_file(tiny, tmp_path, edit, message):
    root = tmp_path / "tiny-imagenet-200"
    shutil.copytree(tiny, root)
    edit(root)
    with pytest.raises(DataError, match=message):
        read_raw(data(root, cache=False))


def _append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def test_missing_words_and_shared_names(tiny, tmp_path):
    root = tmp_path / "t"
    shutil.copytree(tiny, root)
    (root / "words.txt").write_text(f"{SORTED[0]}\tcar, auto\n{SORTED[1]}\tcar, automobile\n")
    raw = read_raw(data(root, cache=False))
    assert raw.classes[:3] == [f"car ({SORTED[0]})", f"car ({SORTED[1]})", SORTED[2]]
    assert any("no name for 8 wnid(s)" in n for n in raw.notes)
    (root / "words.txt").unlink()
    assert read_raw(data(root, cache=False)).classes == SORTED


@pytest.mark.slow
def test_train_and_predict_the_unlabelled_test_folder(tiny, tiny_zip, tmp_path, capsys):
    cfg = write_config(tmp_path / "t.yaml", {"format": "tiny_imagenet", "path": str(tiny_zip)}, train={"epochs": 1})
    assert main(["train", str(cfg), "-q"]) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    info = json.loads((run_dir / "data.json").read_text())
    assert info["input_shape"] == [3, 64, 64] and info["label_values"] == SORTED and info["sizes"] == {"train": 200, "val": 50}

    out = tmp_path / "sub.csv"
    assert main(["predict", str(run_dir), str(tiny / "test" / "images"), "--out", str(out)]) == 0
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["image_id", "label"] and sorted(r[0] for r in rows[1:]) == sorted(f"test_{i}.JPEG" for i in range(10))
    assert all(r[1] in SORTED for r in rows[1:])  # submissions use wnids
    # On the validation images, predict agrees with the accuracy the run recorded.
    assert main(["predict", str(run_dir), str(tiny / "val" / "images"), "--out", str(out)]) == 0
    truth = dict(line.split("\t")[:2] for line in (tiny / "val" / "val_annotations.txt").read_text().splitlines())
    rows = list(csv.reader(out.open()))[1:]
    acc = np.mean([truth[i] == label for i, label in rows])
    assert acc == pytest.approx(json.loads((run_dir / "summary.json").read_text())["val_acc"], abs=1e-9)

    assert main(["data", "inspect", str(cfg)]) == 0
    shown = capsys.readouterr().out
    assert "tiny_imagenet" in shown and "airplane" in shown and SORTED[0] in shown and "train 200, val 50" in shown


def test_test_fraction_holds_out_a_labelled_test_split(tiny):
    # Tiny ImageNet's test/ is unlabelled; the write-up reports test top-1/top-5 from a labelled split.
    b = build_data(data(tiny, test_fraction=0.25, in_memory=True), seed=0)
    assert np.bincount(b.test.y.numpy()).tolist() == [5] * 10  # 25% of 20 per class
    assert np.bincount(b.train.y.numpy()).tolist() == [15] * 10 and len(b.val) == 50  # val/ untouched
    assert not set(b.test.ids) & set(b.train.ids)
    assert any(n.startswith("test split: 50 images held out of train (0.25 of every class") for n in b.notes)
    assert build_data(data(tiny, test_fraction=0.25, in_memory=True), seed=1).test.ids != b.test.ids


def test_test_fraction_is_the_same_split_in_memory_and_file_backed(cifar_zip_small):
    def held_out(in_memory):
        cfg = DataConfig(format="image_folder", path=str(cifar_zip_small), splits={"train": "train"},
                         test_fraction=0.2, val_fraction=0.1, in_memory=in_memory)
        return build_data(cfg, seed=0)
    a, b = held_out(True), held_out(False)
    assert np.bincount(a.test.y.numpy()).tolist() == [8] * 10 and len(a.val) == 32 and len(a.train) == 288
    assert a.test.ids == b.test.ids and a.train.ids == b.train.ids and a.val.ids == b.val.ids


def test_test_fraction_that_empties_a_class_or_meets_a_labelled_test_split(tiny, cifar_zip_small):
    with pytest.raises(DataError, match=r"^data.test_fraction: 0.01 of the training images leaves the test split without class"):
        build_data(data(tiny, test_fraction=0.01, in_memory=True), seed=0)
    with pytest.raises(ConfigError, match=r"^data.test_fraction: .* has a labelled test split of 100 images already"):
        build_data(DataConfig(format="image_folder", path=str(cifar_zip_small), test_fraction=0.1), seed=0)
