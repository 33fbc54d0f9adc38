"""data.format: csv_images: a CSV of image paths and labels (Kaggle's train.csv + train/ and
test.csv + test/), in memory and per batch alike, predicted from a test CSV, every bad row one line."""

from __future__ import annotations

import csv
import json
import zipfile

import pytest
from conftest import CIFAR_ZIP, cifar_members, write_config

from cnnlab.cli import main


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory):
    """Real CIFAR-10 JPEGs renamed to ids, Kaggle style: train.csv (path,label) + train/, test.csv (path) + test/."""
    root = tmp_path_factory.mktemp("kaggle-images")
    (root / "train").mkdir()
    (root / "test").mkdir()
    train, test = [], []
    with zipfile.ZipFile(CIFAR_ZIP) as z:
        for i, info in enumerate(cifar_members(12, 2)):
            split, label = info.filename.split("/")[-3], info.filename.split("/")[-2]
            rel = f"{split}/{i:05d}.jpg"
            (root / rel).write_bytes(z.read(info))
            (train if split == "train" else test).append((rel, label))
    _write_csv(root / "train.csv", ["path", "label"], train)
    _write_csv(root / "test.csv", ["path"], [(p,) for p, _ in test])
    return root, train, test


def _metrics(run):
    return [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_kaggle_csv_trains_in_memory_and_per_batch_alike_and_predicts_its_test_csv(kaggle, tmp_path, capsys):
    root, train, test = kaggle
    cfg = write_config(tmp_path / "c.yaml", {"format": "csv_images", "path": str(root / "train.csv"), "val_fraction": 0.25,
                                             "workers": 0},
                       model={"name": "cnn", "channels": [4, 8]}, train={"epochs": 1, "batch_size": 30})
    runs = []
    for mode in ("true", "false"):
        assert main(["train", str(cfg), "-q", f"data.in_memory={mode}", f"name=m{mode}"]) == 0
        runs.append(next((tmp_path / "runs").glob(f"m{mode}-*")))
    assert _metrics(runs[0]) == _metrics(runs[1])
    info = json.loads((runs[0] / "data.json").read_text())
    assert info["classes"] == sorted({label for _, label in train}) and info["sizes"] == {"train": 90, "val": 30}
    assert info["in_memory"] is True and json.loads((runs[1] / "data.json").read_text())["in_memory"] is False

    out = tmp_path / "submission.csv"
    assert main(["predict", str(runs[0]), str(root / "test.csv"), "--out", str(out)]) == 0
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["image_id", "label"] and [r[0] for r in rows[1:]] == [p for p, _ in test]
    assert {r[1] for r in rows[1:]} <= set(info["classes"])


def test_integer_labels_a_split_column_and_images_in_a_zip(tmp_path, capsys):
    with zipfile.ZipFile(CIFAR_ZIP) as src, zipfile.ZipFile(tmp_path / "images.zip", "w") as out:
        members = cifar_members(6, 2)
        for info in members:
            out.writestr(info.filename, src.read(info))
    classes = sorted({m.filename.split("/")[-2] for m in members})
    rows = [(m.filename, classes.index(m.filename.split("/")[-2]),
             "test" if "/test/" in m.filename else ("valid" if i % 6 == 0 else "train")) for i, m in enumerate(members)]
    (tmp_path / "meta").mkdir()
    _write_csv(tmp_path / "meta" / "all.csv", ["file", "y", "part"], rows)
    cfg = write_config(tmp_path / "c.yaml", {"format": "csv_images", "path": str(tmp_path / "meta" / "all.csv"),
                                             "images": "../images.zip", "path_column": "file", "label_column": "y",
                                             "split_column": "part"},
                       model={"name": "cnn", "channels": [4]}, train={"epochs": 1, "batch_size": 20})
    assert main(["train", str(cfg), "-q"]) == 0
    info = json.loads((next((tmp_path / "runs").iterdir()) / "data.json").read_text())
    n_val = sum(1 for r in rows if r[2] == "valid")
    assert info["sizes"] == {"train": 60 - n_val, "val": n_val, "test": 20} and info["classes"] == [str(i) for i in range(10)]


@pytest.mark.parametrize("edit, message", [
    (lambda rows: rows.append(("train/99999.jpg", "cat")), "line {n}: train/99999.jpg not found in"),
    (lambda rows: rows.append((rows[0][0], "")), "line {n}: empty label"),
    (lambda rows: rows.append(("", "cat")), "line {n}: empty path"),
])
def test_a_bad_row_is_one_line_naming_it(kaggle, tmp_path, capsys, edit, message):
    root, train, _ = kaggle
    rows = list(train)
    edit(rows)
    _write_csv(root / "bad.csv", ["path", "label"], rows)
    cfg = write_config(tmp_path / "c.yaml", {"format": "csv_images", "path": str(root / "bad.csv")}, model={"name": "cnn"})
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message.format(n=len(rows) + 1) in err[0] and "bad.csv" in err[0]
    assert not (tmp_path / "runs").exists()


def test_labels_that_look_numeric_but_are_not_and_a_missing_column(kaggle, tmp_path, capsys):
    root, train, _ = kaggle
    rows = [(p, str(i % 10)) for i, (p, _) in enumerate(train)]
    rows[7] = (rows[7][0], "3a")
    _write_csv(root / "numeric.csv", ["path", "label"], rows)
    cfg = write_config(tmp_path / "c.yaml", {"format": "csv_images", "path": str(root / "numeric.csv")}, model={"name": "cnn"})
    assert main(["train", str(cfg)]) == 2
    assert "line 9: label '3a' is not an integer, while most labels are" in capsys.readouterr().err
    assert main(["train", str(cfg), "data.label_column=class"]) == 2
    assert "no column 'class' in its header ['path', 'label']" in capsys.readouterr().err


def test_an_unreadable_image_names_its_row_or_is_skipped(kaggle, tmp_path, capsys):
    root, train, _ = kaggle
    (root / "train" / "broken.jpg").write_bytes(b"not a jpeg at all")
    rows = [*train[:20], ("train/broken.jpg", train[0][1]), *train[20:40]]
    _write_csv(root / "broken.csv", ["path", "label"], rows)
    cfg = write_config(tmp_path / "c.yaml", {"format": "csv_images", "path": str(root / "broken.csv")},
                       model={"name": "cnn", "channels": [4]}, train={"epochs": 1})
    assert main(["train", str(cfg)]) == 2
    assert "line 22: train/broken.jpg cannot be decoded as an image" in capsys.readouterr().err
    assert main(["data", "inspect", str(cfg), "data.skip_corrupt=true"]) == 0
    assert "skipped 1 unreadable image(s)" in capsys.readouterr().out


def test_the_audit_reads_a_csv_of_paths_from_the_images_folder(kaggle, tmp_path, capsys):
    import shutil

    root, train, _ = kaggle
    shutil.copy(root / train[3][0], root / "train" / "copy.jpg")
    _write_csv(root / "dup.csv", ["path", "label"], [*train[:30], ("train/copy.jpg", train[3][1])])
    cfg = write_config(tmp_path / "c.yaml", {"format": "csv_images", "path": str(root / "dup.csv")}, model={"name": "cnn"})
    assert main(["data", "audit", str(cfg), "--out", str(tmp_path / "audit")]) == 0
    found = json.loads((tmp_path / "audit" / "audit.json").read_text())
    groups = [g for g in found["groups"] if g["kind"] == "exact"]
    assert len(groups) == 1 and sorted(m["index"] for m in groups[0]["members"]) == [3, 30]
