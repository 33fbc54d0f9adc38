"""Wrong labels from out-of-fold probabilities: a real `cv: 3` study on MNIST images with a known
share of labels flipped, its fold runs' heldout.npz, and cnnlab.audit.labels ranking the flipped
images first (cleanlab), with the CSV, the page and the bad-input lines."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import MNIST, read_idx, write_config, write_idx

from cnnlab.audit.labels import CSV_COLUMNS, LABELS_CSV, LABELS_HTML, audit_labels
from cnnlab.cli import main
from cnnlab.errors import UserError
from cnnlab.resolve import load_config
from cnnlab.rundir import HELDOUT, Run

N_TRAIN, N_FLIP = 600, 48  # 8% of the labels flipped


@pytest.fixture(scope="module")
def flipped(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """An IDX copy of 600 real MNIST training images with 48 labels flipped to another class at
    seeded positions: (folder, flipped positions, the true labels)."""
    dest = tmp_path_factory.mktemp("flipped") / "mnist"
    dest.mkdir()
    x = read_idx(MNIST / "train-images-idx3-ubyte.gz")[:N_TRAIN]
    y = read_idx(MNIST / "train-labels-idx1-ubyte.gz")[:N_TRAIN].copy()
    true = y.copy()
    rng = np.random.default_rng(7)
    where = np.sort(rng.choice(N_TRAIN, N_FLIP, replace=False))
    y[where] = (y[where] + rng.integers(1, 10, N_FLIP)) % 10  # always another class
    write_idx(dest / "train-images-idx3-ubyte.gz", x)
    write_idx(dest / "train-labels-idx1-ubyte.gz", y.astype(np.uint8))
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        arr = read_idx(MNIST / name)[:200]
        write_idx(dest / name, arr)
    return dest, where, true


@pytest.fixture(scope="module")
def cv_study(tmp_path_factory, flipped) -> tuple[Path, Path]:
    """A 3-fold study of a small CNN, 2 epochs, seed 0, on the flipped copy: (study folder, config)."""
    folder = tmp_path_factory.mktemp("cv-study")
    cfg = write_config(folder / "base.yaml", {"format": "idx", "path": str(flipped[0]), "val_fraction": 0.1},
                       model={"name": "cnn", "channels": [8, 16], "norm": "batch"},
                       optim={"name": "adam", "lr": 0.003}, train={"epochs": 2, "batch_size": 32})
    study = folder / "labels.yaml"
    study.write_text(yaml.safe_dump({"base": "base.yaml", "mode": "grid", "axes": {"model.dropout": [0.0]}, "seeds": [0], "cv": 3,
                                     "out_dir": str(folder / "studies")}))
    assert main(["study", str(study)]) == 0
    return folder / "studies" / "labels", cfg


def test_fold_runs_keep_heldout_probabilities_covering_train_once(cv_study, flipped):
    runs = sorted(p for p in (cv_study[0] / "runs").iterdir() if p.is_dir())
    assert len(runs) == 3
    y = read_idx(flipped[0] / "train-labels-idx1-ubyte.gz").astype(np.int64)
    seen = []
    for path in runs:
        held = Run(path).heldout()
        assert held is not None and (path / HELDOUT).is_file()
        assert held["probs"].dtype == np.float32 and held["probs"].shape == (len(held["index"]), 10)
        np.testing.assert_allclose(held["probs"].sum(1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(held["labels"], y[held["index"]])  # the given (flipped) labels
        assert Run(path).data_info["sizes"]["val"] == len(held["index"])
        # The stored probabilities are the best checkpoint's: their accuracy is the run's val_acc.
        acc = float((held["probs"].argmax(1) == held["labels"]).mean())
        assert acc == pytest.approx(Run(path).summary["val_acc"], abs=1e-9)
        seen.append(held["index"])
    assert np.array_equal(np.sort(np.concatenate(seen)), np.arange(N_TRAIN))  # every image once


def test_flipped_labels_rank_first(cv_study, flipped, tmp_path):
    folder, cfg_path = cv_study
    _, where, true = flipped
    out = tmp_path / "audit"
    summary = audit_labels(load_config(cfg_path), folder, out)
    assert summary["images_with_heldout_probabilities"] == N_TRAIN and summary["training_images"] == N_TRAIN
    rows = list(csv.DictReader((out / LABELS_CSV).open()))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == summary["issues"] > 0
    assert [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
    top = [int(r["index"]) for r in rows[:N_FLIP]]
    # Chance would put 8% of the flipped images in the top 48; a working ranking puts most there.
    recall = len(set(top) & set(where.tolist())) / N_FLIP
    print(f"recall of the flipped in the top {N_FLIP}: {recall:.3f}")
    assert recall >= 0.6, recall
    # Self-confidence (the given label's probability) rises down the ranking; the suggestion is
    # usually the true label of a flipped image.
    conf = [float(r["self_confidence"]) for r in rows]
    assert conf == sorted(conf)
    flipped_rows = [r for r in rows if int(r["index"]) in set(where.tolist())]
    right = sum(r["suggested_label"] == str(true[int(r["index"])]) for r in flipped_rows)
    assert right >= 0.7 * len(flipped_rows)
    page = (out / LABELS_HTML).read_text()
    assert page.count("data:image/png;base64,") == min(len(rows), 200) and "suggested" in page
    assert summary["top"][0] == {k: (int(v) if k in ("rank", "index") else float(v)
                                     if k.endswith("confidence") else v) for k, v in rows[0].items()}


def test_a_single_run_ranks_its_validation_split(cv_study, tmp_path):
    """A run directory (not a study): its heldout.npz; without it (an older run), recomputed alike."""
    run_dir = sorted((cv_study[0] / "runs").iterdir())[0]
    cfg = load_config(cv_study[1])
    first = audit_labels(cfg, run_dir, tmp_path / "a")
    copy = tmp_path / "old-run"
    shutil.copytree(run_dir, copy)
    (copy / HELDOUT).unlink()
    again = audit_labels(cfg, copy, tmp_path / "b")
    assert first["images_with_heldout_probabilities"] == again["images_with_heldout_probabilities"] == 200
    assert (tmp_path / "a" / LABELS_CSV).read_text() == (tmp_path / "b" / LABELS_CSV).read_text()


def test_bad_sources_are_one_line(cv_study, tmp_path, mnist_small):
    folder, cfg_path = cv_study
    cfg = load_config(cfg_path)

    def refused(source: Path, config=cfg) -> str:
        with pytest.raises(UserError) as e:
            audit_labels(config, source, tmp_path / "out")
        assert "\n" not in str(e.value)
        return str(e.value)

    assert "neither a run directory" in refused(tmp_path)
    # A study without folds: the line says how to make one.
    plain = tmp_path / "plain"
    (plain / "runs").mkdir(parents=True)
    run_dir = sorted((folder / "runs").iterdir())[0]
    shutil.copytree(run_dir, plain / "runs" / "r")
    raw = yaml.safe_load((plain / "runs" / "r" / "config.yaml").read_text())
    raw["data"]["folds"] = raw["data"]["fold"] = None
    (plain / "runs" / "r" / "config.yaml").write_text(yaml.safe_dump(raw))
    assert "run the study with `cv: 5`" in refused(plain)
    # Other classes (12 declared) than the study was trained on (10).
    twelve = write_config(tmp_path / "f.yaml", {"format": "idx", "path": str(cfg.data.path), "num_classes": 12})
    assert "trained on classes" in refused(folder, load_config(twelve))
    # The same classes but other labels: the config is not the data the study saw.
    other = write_config(tmp_path / "m.yaml", {"format": "idx", "path": str(mnist_small), "limit_train": N_TRAIN,
                                               "limit_mode": "first"})
    assert "carry other labels" in refused(folder, load_config(other))
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_heldout_file_round_trip(tmp_path):
    run = Run(tmp_path)
    assert run.heldout() is None
    probs = np.random.default_rng(0).dirichlet(np.ones(4), 5).astype(np.float32)
    run.write_heldout([4, 0, 2, 1, 3], probs, [0, 1, 2, 3, 0])
    held = run.heldout()
    assert held["index"].dtype == np.int64 and held["labels"].dtype == np.int64
    assert held["index"].tolist() == [4, 0, 2, 1, 3] and held["labels"].tolist() == [0, 1, 2, 3, 0]
    np.testing.assert_array_equal(held["probs"], probs)
    (tmp_path / HELDOUT).write_bytes(b"not a zip")
    with pytest.raises(UserError, match="damaged"):
        run.heldout()


def test_val_index_points_at_the_validation_images(mnist_small):
    """val_index maps every validation image (a fold cut by limit_val, or a val_fraction split)
    back to its image in the training split as read before the carving."""
    from cnnlab.config import DataConfig
    from cnnlab.data.build import build_data

    whole = build_data(DataConfig(format="idx", path=str(mnist_small), val_fraction=0.0), 0).train
    for extra in ({"folds": 4, "fold": 2, "limit_val": 50}, {"val_fraction": 0.2}):
        bundle = build_data(DataConfig(format="idx", path=str(mnist_small), **extra), 0)
        assert len(bundle.val_index) == len(bundle.val) == (50 if "limit_val" in extra else 240)
        assert bundle.val.x.equal(whole.x[bundle.val_index]) and bundle.val.y.equal(whole.y[bundle.val_index])
    assert build_data(DataConfig(format="idx", path=str(mnist_small), val_fraction=0.0), 0).val_index is None
