"""End-to-end: augmentation and the file-backed path through `cnnlab`, on real CIFAR-10 JPEGs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import write_config

from cnnlab.cli import main
from cnnlab.resolve import load_config
from cnnlab.training import runner

pytestmark = pytest.mark.slow

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def train(capsys, cfg, *overrides) -> Path:
    code, out, err = run(capsys, "train", cfg, "-q", *overrides)
    assert code == 0, err
    return Path(out.strip().splitlines()[-1])


def metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


@pytest.mark.parametrize("in_memory", [True, False])
def test_resize_run_trains_evaluates_and_predicts_alike(in_memory, cifar_zip_small, cifar_folder_small, tmp_path, capsys):
    """Trained at 40 px from 32 px images: evaluate (the dataset) and predict (new files) resize alike."""
    cfg = write_config(tmp_path / "c.yaml", {"format": "image_folder", "path": str(cifar_zip_small),
                                             "in_memory": in_memory},
                       augment=["hflip", {"random_crop": 4}, {"resize": 40}, {"cutout": 8}, "mixup"],
                       train={"epochs": 2})
    run_dir = train(capsys, cfg)
    info = json.loads((run_dir / "data.json").read_text())
    assert info["image_shape"] == [3, 32, 32] and info["input_shape"] == [3, 40, 40]
    assert info["in_memory"] is in_memory
    rows = metrics(run_dir)
    assert [r["epoch"] for r in rows] == [1, 2] and all(0 <= r["train_acc"] <= 1 for r in rows)
    assert rows[1]["train_loss"] < rows[0]["train_loss"]  # it learns from the mixed targets
    summary = json.loads((run_dir / "summary.json").read_text())

    code, out, err = run(capsys, "evaluate", run_dir)
    assert code == 0, err
    report = json.loads((run_dir / "eval-test-best.json").read_text())
    assert report["acc"] == pytest.approx(summary["test_acc"], abs=1e-12)

    code, _, err = run(capsys, "predict", run_dir, cifar_folder_small / "test", "--out", tmp_path / "p.csv")
    assert code == 0, err
    rows = list(csv.reader((tmp_path / "p.csv").open()))[1:]
    assert len(rows) == 100
    confusion = torch.zeros(10, 10, dtype=torch.long)
    for image_id, label in rows:
        confusion[CLASSES.index(image_id.split("/")[-2]), CLASSES.index(label)] += 1
    assert confusion.tolist() == report["confusion"]  # the same prediction for every test image


def test_file_backed_resume_replays_the_uninterrupted_run(cifar_zip_small, tmp_path, monkeypatch):
    data = {"format": "image_folder", "path": str(cifar_zip_small), "in_memory": "auto", "workers": 2,
            "limit_train": 200}
    monkeypatch.setattr("cnnlab.data.build.memory_budget", lambda device: 0)  # auto: file-backed
    common = dict(augment=["hflip", {"random_crop": 4}, {"random_erasing": 0.5}, "cutmix"], model={"dropout": 0.2},
                  schedule={"name": "step", "step_size": 1, "gamma": 0.5}, train={"epochs": 2, "batch_size": 32})
    whole = runner.train(load_config(write_config(tmp_path / "a" / "c.yaml", data, **common)), quiet=True).run_dir

    def interrupt_in_second(epoch, metrics):
        if epoch == 2:  # as Ctrl-C during epoch 2: epoch 2's files are never written
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.train(load_config(write_config(tmp_path / "b" / "c.yaml", data, **common)), quiet=True,
                     callbacks=[interrupt_in_second])
    cut = next((tmp_path / "b" / "runs").iterdir())
    assert [r["epoch"] for r in metrics(cut)] == [1]
    assert json.loads((cut / "data.json").read_text())["in_memory"] is False
    monkeypatch.undo()  # memory to spare now: resume must still read the files, as the run began
    runner.resume(cut, quiet=True)
    assert metrics(cut) == metrics(whole)
    wa = torch.load(whole / "last.pt", weights_only=True)["model"]
    wb = torch.load(cut / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_without_random_ops_both_paths_train_identically(cifar_zip_small, tmp_path, capsys):
    data = {"format": "image_folder", "path": str(cifar_zip_small), "limit_train": 200}
    cfg = write_config(tmp_path / "c.yaml", data, augment=[{"resize": 36}], train={"epochs": 2, "batch_size": 32})
    a = train(capsys, cfg, "data.in_memory=true")
    b = train(capsys, cfg, "data.in_memory=false")
    assert metrics(a) == metrics(b)


def test_bad_augment_leaves_no_run_directory(cifar_zip_small, tmp_path, capsys):
    data = {"format": "image_folder", "path": str(cifar_zip_small), "in_memory": False}
    for augment, message in [
        ([{"random_resized_crop": {"size": 24}}], "augment: training images come out 3x24x24 but evaluation images 3x32x32"),
        ([{"random_apply": {"ops": ["hflip", {"rotation": {"degres": 4}}]}}],
         "augment[0].ops[1].degres: unknown key for rotation (did you mean 'augment[0].ops[1].degrees'?)"),
    ]:
        cfg = write_config(tmp_path / "c.yaml", data, augment=augment)
        code, _, err = run(capsys, "train", cfg)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "runs").exists()
