"""End-to-end: the cnnlab command on real data slices, as a user runs it."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, png_bytes, read_idx, write_config

from cnnlab.cli import main

pytestmark = pytest.mark.slow


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def train(capsys, cfg, *overrides) -> Path:
    code, out, err = run(capsys, "train", cfg, "-q", *overrides)
    assert code == 0, err
    return Path(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory, mnist_small):
    """One trained MNIST run shared by the evaluate / predict tests."""
    d = tmp_path_factory.mktemp("mnist-run")
    cfg = write_config(d / "mnist.yaml", {"format": "idx", "path": str(mnist_small), "val_fraction": 0.1},
                       schedule={"name": "onecycle"})
    code = main(["train", str(cfg), "-q"])
    assert code == 0
    runs = sorted((d / "runs").iterdir())
    return runs[-1]


def test_train_leaves_a_complete_run_directory(mnist_run):
    names = {p.name for p in mnist_run.iterdir()}
    assert {"config.yaml", "data.json", "metrics.jsonl", "summary.json", "best.pt", "last.pt", "curves.png"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    rows = [json.loads(line) for line in (mnist_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    for key in ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "val_top5", "test_acc", "seconds"):
        assert key in rows[0]
    s = json.loads((mnist_run / "summary.json").read_text())
    for key in ("val_acc", "test_acc", "best_epoch", "epochs", "params", "wall_seconds", "device", "versions", "git_commit"):
        assert key in s
    assert s["status"] == "completed" and s["epochs"] == 2 and s["device"] == "cpu"
    assert s["versions"]["torch"] == torch.__version__
    best = next(r for r in rows if r["epoch"] == s["best_epoch"])
    assert s["val_acc"] == best["val_acc"] == max(r["val_acc"] for r in rows)
    assert s["test_acc"] > 0.75  # 1,080 MNIST images, 2 epochs, a 2-stage CNN
    assert s["best"]["train_error"]["value"] == pytest.approx(1 - max(r["train_acc"] for r in rows))
    for name in ("best.pt", "last.pt"):
        ckpt = torch.load(mnist_run / name, weights_only=True)
        assert ckpt["format"].startswith("cnnlab-checkpoint") and "model" in ckpt
    assert (mnist_run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    info = json.loads((mnist_run / "data.json").read_text())
    assert info["input_shape"] == [1, 28, 28] and info["sizes"] == {"train": 1080, "val": 120, "test": 300}


def test_evaluate_recomputes_the_summary_numbers(mnist_run, capsys):
    code, out, err = run(capsys, "evaluate", mnist_run)
    assert code == 0, err
    s = json.loads((mnist_run / "summary.json").read_text())
    report = json.loads((mnist_run / "eval-test-best.json").read_text())
    assert report["acc"] == pytest.approx(s["test_acc"], abs=1e-12)
    assert f"top-1 {s['test_acc'] * 100:.2f}%" in out and "top-5" in out
    assert len(report["per_class_acc"]) == 10 and "9" in out.split("class")[-1]
    assert Path(out.strip().splitlines()[-1]).name == "confusion-test-best.png"
    assert (mnist_run / "confusion-test-best.png").stat().st_size > 5000
    code, out, _ = run(capsys, "evaluate", mnist_run, "--split", "val", "--checkpoint", "last")
    assert code == 0 and (mnist_run / "confusion-val-last.png").is_file()
    last = json.loads((mnist_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert json.loads((mnist_run / "eval-val-last.json").read_text())["acc"] == pytest.approx(last["val_acc"])
    code, _, err = run(capsys, "evaluate", mnist_run, "--split", "dev")
    assert code == 2 and "--split: 'dev' is not one of" in err


def test_predict_npy_and_image_folder(mnist_run, mnist_small, tmp_path, capsys):
    x = read_idx(mnist_small / "t10k-images-idx3-ubyte.gz")
    y = read_idx(mnist_small / "t10k-labels-idx1-ubyte.gz")
    np.save(tmp_path / "test.npy", x.reshape(len(x), 784))
    out_csv = tmp_path / "sub.csv"
    code, out, err = run(capsys, "predict", mnist_run, tmp_path / "test.npy", "--out", out_csv)
    assert code == 0, err
    rows = list(csv.reader(out_csv.open()))
    assert rows[0] == ["image_id", "label"] and len(rows) == 301
    assert [r[0] for r in rows[1:]] == [str(i) for i in range(300)]
    pred = np.array([int(r[1]) for r in rows[1:]])
    s = json.loads((mnist_run / "summary.json").read_text())
    assert (pred == y).mean() == pytest.approx(s["test_acc"], abs=1e-9)  # same images, same model

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(20):
        (folder / f"digit_{i:02d}.png").write_bytes(png_bytes(x[i]))
    code, _, err = run(capsys, "predict", mnist_run, folder, "--out", tmp_path / "f.csv")
    assert code == 0, err
    rows = list(csv.reader((tmp_path / "f.csv").open()))[1:]
    assert [r[0] for r in rows] == [f"digit_{i:02d}.png" for i in range(20)]
    assert [int(r[1]) for r in rows] == pred[:20].tolist()


def test_predict_refuses_wrong_shapes_without_writing(mnist_run, tmp_path, capsys):
    np.save(tmp_path / "bad.npy", np.zeros((5, 100), np.uint8))
    code, _, err = run(capsys, "predict", mnist_run, tmp_path / "bad.npy", "--out", tmp_path / "o.csv")
    assert code == 2 and "rows of 100 values" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.csv").exists()
    code, _, err = run(capsys, "predict", tmp_path, tmp_path / "bad.npy")
    assert code == 2 and "not a run directory" in err


def test_kaggle_layout_end_to_end(kaggle_dir, tmp_path, capsys):
    cfg = write_config(tmp_path / "k.yaml", {"format": "npy_csv", "path": str(kaggle_dir), "val_fraction": 1 / 6})
    run_dir = train(capsys, cfg)
    info = json.loads((run_dir / "data.json").read_text())
    assert info["sizes"] == {"train": 1250, "val": 250}
    sub = tmp_path / "submission.csv"
    code, _, err = run(capsys, "predict", run_dir, kaggle_dir / "test.npy", "--out", sub)
    assert code == 0, err
    rows = list(csv.reader(sub.open()))
    assert rows[0] == ["image_id", "label"] and len(rows) == 201
    pred = np.array([int(r[1]) for r in rows[1:]])
    truth = np.load(kaggle_dir / "test_labels.npy")
    assert (pred == truth).mean() > 0.6  # 1,250 Fashion-MNIST images, 2 epochs


def test_image_folder_zip_end_to_end(cifar_zip_small, cifar_folder_small, tmp_path, capsys):
    cfg = write_config(tmp_path / "c.yaml", {"format": "image_folder", "path": str(cifar_zip_small)},
                       augment=["hflip", {"random_crop": {"padding": 4}}, {"color_jitter": {"brightness": 0.2, "hue": 0.05}}],
                       train={"epochs": 1})
    run_dir = train(capsys, cfg)
    code, out, err = run(capsys, "evaluate", run_dir)
    assert code == 0, err
    assert "airplane" in out and "top-5" in out
    code, _, err = run(capsys, "predict", run_dir, cifar_folder_small / "test" / "cat", "--out", tmp_path / "p.csv")
    assert code == 0, err
    rows = list(csv.reader((tmp_path / "p.csv").open()))[1:]
    assert len(rows) == 10 and all(r[1] in {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                             "horse", "ship", "truck"} for r in rows)


def test_same_seed_same_metrics(mnist_small, tmp_path, capsys):
    cfg = write_config(tmp_path / "d.yaml", {"format": "idx", "path": str(mnist_small), "limit_train": 600},
                       augment=["hflip", {"rotation": {"degrees": 10}}], model={"dropout": 0.3})
    a = train(capsys, cfg, "train.epochs=1")
    b = train(capsys, cfg, "train.epochs=1")
    strip = lambda p: [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in (p / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert strip(a) == strip(b)
    c = train(capsys, cfg, "train.epochs=1", "seed=1")
    assert strip(a) != strip(c)


def cli(*args, **kw) -> subprocess.Popen:
    # The same thread count as this process (1 under xdist): float sums depend on it.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(torch.get_num_threads())}
    return subprocess.Popen([sys.executable, "-m", "cnnlab", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT, **kw)


def epochs_done(out_dir: Path) -> int:
    files = list(out_dir.glob("*/metrics.jsonl"))
    return len(files[0].read_text().splitlines()) if files else 0


def test_resume_after_kill_ends_where_the_uninterrupted_run_ends(mnist_small, tmp_path, capsys):
    data = {"format": "idx", "path": str(mnist_small), "limit_train": 800}
    # Every piece of state a run carries: schedule and warm-up counters, EMA weights, early-stop counters.
    common = dict(augment=["hflip", {"random_crop": {"padding": 2}}], model={"dropout": 0.2},
                  schedule={"name": "multistep", "milestones": [1], "gamma": 0.5, "warmup_epochs": 0.5},
                  loss={"l2": 1e-4},
                  train={"epochs": 3, "batch_size": 32, "ema": 0.9, "grad_clip_value": 1.0,
                         "early_stop": {"monitor": "val_loss", "patience": 5, "min_delta": 10}})
    whole = train(capsys, write_config(tmp_path / "a" / "c.yaml", data, **common))

    cfg = write_config(tmp_path / "b" / "c.yaml", data, **common)
    out_dir = tmp_path / "b" / "runs"
    proc = cli("train", cfg, "-q")
    deadline = time.time() + 120
    while epochs_done(out_dir) < 1 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = epochs_done(out_dir)
    assert 1 <= done < 3, "the run should have been killed part-way"
    run_dir = next(out_dir.iterdir())
    code, out, err = run(capsys, "resume", run_dir, "-q")
    assert code == 0, err
    a = [json.loads(x) for x in (whole / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in b] == [1, 2, 3]
    for ra, rb in zip(a, b):
        assert {k: v for k, v in ra.items() if k != "seconds"} == {k: v for k, v in rb.items() if k != "seconds"}
    la = torch.load(whole / "last.pt", weights_only=True)
    lb = torch.load(run_dir / "last.pt", weights_only=True)
    for key in ("model", "raw_model"):  # EMA and raw weights
        assert all(torch.equal(la[key][k], lb[key][k]) for k in la[key])
    assert la["callbacks"] == lb["callbacks"] == {"early_stop": {"best": a[0]["val_loss"], "best_epoch": 1, "bad_epochs": 2}}
    assert la["schedule"] == lb["schedule"] and int(lb["ema_updates"]) == 3 * 23
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"


def test_ctrl_c_stops_cleanly_and_resume_finishes(mnist_small, tmp_path, capsys):
    cfg = write_config(tmp_path / "c.yaml", {"format": "idx", "path": str(mnist_small)},
                       train={"epochs": 3, "batch_size": 32})
    out_dir = tmp_path / "runs"
    proc = cli("train", cfg)
    deadline = time.time() + 120
    while epochs_done(out_dir) < 1 and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "cnnlab resume" in err and "Traceback" not in err
    run_dir = next(out_dir.iterdir())
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
    code, out, err = run(capsys, "resume", run_dir, "-q")
    assert code == 0, err
    assert json.loads((run_dir / "summary.json").read_text())["epochs"] == 3


def test_divergence_exits_3_and_keeps_the_best_checkpoint(mnist_small, tmp_path, capsys):
    cfg = write_config(tmp_path / "c.yaml", {"format": "idx", "path": str(mnist_small)},
                       model={"norm": "none"}, schedule={"name": "step", "step_size": 1, "gamma": 1e9},
                       train={"epochs": 3})
    code, out, err = run(capsys, "train", cfg, "-q")
    assert code == 3
    line = err.strip().splitlines()[-1]
    assert "at epoch 2, step" in line and "lower learning rate" in line and "grad_clip" in line
    run_dir = next((tmp_path / "runs").iterdir())
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["status"] == "diverged" and s["best_epoch"] == 1
    code, out, err = run(capsys, "evaluate", run_dir)  # best.pt still works
    assert code == 0 and "top-1" in out


def test_bad_input_is_one_line_exit_2_and_leaves_nothing(mnist_small, kaggle_dir, tmp_path, capsys):
    import shutil

    out_dir = tmp_path / "runs"
    good = {"format": "idx", "path": str(mnist_small)}
    broken_kaggle = tmp_path / "kag"
    shutil.copytree(kaggle_dir, broken_kaggle)
    lines = (broken_kaggle / "train.csv").read_text().splitlines()
    (broken_kaggle / "train.csv").write_text("\n".join(lines[:-1]) + "\n")
    corrupt_zip = tmp_path / "bad.zip"
    import zipfile
    with zipfile.ZipFile(corrupt_zip, "w") as z:
        for c in "ab":
            for i in range(3):
                z.writestr(f"{c}/{i}.png", png_bytes(np.full((8, 8, 3), i * 40, np.uint8)))
        z.writestr("b/3.png", b"\x89PNG\r\n\x1a\n truncated")
    cases = [
        ({**good}, ["model.dropuot=0.1"], "model.dropuot: unknown key for cnn (did you mean 'model.dropout'?)"),
        ({**good, "path": str(tmp_path / "nowhere")}, [], "does not exist"),
        ({"format": "npy_csv", "path": str(broken_kaggle)}, [], "train.csv: 1499 labelled rows but train.npy holds 1500"),
        ({"format": "image_folder", "path": str(corrupt_zip)}, [], "bad.zip:b/3.png: cannot decode image"),
        ({**good, "num_classes": 5}, [], "outside the class range 0..4"),
        ({**good}, ["schedule.name=plateau", "data.val_fraction=0"], "schedule.monitor: 'val_loss' is not logged"),
    ]
    for i, (data, overrides, message) in enumerate(cases):
        cfg = write_config(tmp_path / f"c{i}.yaml", data)
        code, out, err = run(capsys, "train", cfg, *overrides)
        assert code == 2, (message, err)
        assert message in err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert not out_dir.exists() or not any(out_dir.iterdir())


def test_subprocess_error_has_no_traceback(tmp_path):
    cfg = tmp_path / "typo.yaml"
    cfg.write_text("data: {format: idx, path: /tmp}\nmodel: {name: cnn}\ntrian: {epochs: 1}\n")
    proc = cli("train", cfg)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert err.strip() == f"cnnlab: error: {cfg}: trian: unknown key (did you mean 'train'?)"


def test_data_inspect_reports_counts_and_problems(mnist_small, tmp_path, capsys):
    cfg = write_config(tmp_path / "i.yaml", {"format": "idx", "path": str(mnist_small)})
    code, out, err = run(capsys, "data", "inspect", cfg)
    assert code == 0, err
    assert "format idx" in out and "train 1080, val 120, test 300" in out
    assert "1x28x28" in out and "values 0..255" in out and "classes 10" in out
    counts = np.bincount(read_idx(mnist_small / "t10k-labels-idx1-ubyte.gz"))
    assert f" {counts[0]}" in out
    assert "no problems found" in out
    # A dataset with a problem says so.
    x = read_idx(mnist_small / "train-images-idx3-ubyte.gz")[:200].copy()
    y = read_idx(mnist_small / "train-labels-idx1-ubyte.gz")[:200]
    x[:5] = 0
    d = tmp_path / "kag"
    d.mkdir()
    np.save(d / "train.npy", x.reshape(200, 784))
    keep = (y != 3) | (np.arange(200) < 60)  # class 3 almost absent: imbalance
    order = np.flatnonzero(keep)
    np.save(d / "train.npy", x[order].reshape(len(order), 784))
    (d / "train.csv").write_text("image_id,label\n" + "".join(f"{i},{y[j]}\n" for i, j in enumerate(order)))
    cfg = write_config(tmp_path / "j.yaml", {"format": "npy_csv", "path": str(d)})
    code, out, err = run(capsys, "data", "inspect", cfg)
    assert code == 0, err
    assert "single flat colour" in out and "exact copies" in out


def test_a_changed_dataset_is_one_line_for_every_command_that_reopens_the_run(mnist_run, tmp_path, capsys):
    """open_run's single wording: evaluate, resume and analyze say the same when the data changed."""
    import shutil

    import yaml
    from conftest import idx_slice

    cfg = yaml.safe_load((mnist_run / "config.yaml").read_text())
    data = Path(cfg["data"]["path"])
    moved = tmp_path / "fewer"
    idx_slice(data, moved, 600, 100)  # the same files, fewer images: other split sizes, same classes
    copy = tmp_path / "run"
    shutil.copytree(mnist_run, copy)
    cfg["data"]["path"] = str(moved)
    (copy / "config.yaml").write_text(yaml.safe_dump(cfg))
    code, _, err = run(capsys, "resume", copy)
    assert code == 2 and "the dataset changed since run was trained (its split sizes differ from data.json)" in err
    info = json.loads((copy / "data.json").read_text())
    info["classes"] = info["classes"][::-1]
    (copy / "data.json").write_text(json.dumps(info))
    for args in (["evaluate", copy], ["analyze", copy, "errors"], ["resume", copy]):
        code, _, err = run(capsys, *args)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert "the dataset changed since run was trained (its classes differ from data.json)" in err, err
