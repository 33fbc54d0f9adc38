"""A user's own model, dataset, loss, augmentation, callback and analysis, in their own file,
through every command that touches a run: train, evaluate, predict, analyze, export, report,
resume, a study with 2 worker processes and a 2-process torchrun job; then the file edited
and deleted: one line each, and --code stored / current to go on. Real MNIST images."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import MNIST, ROOT, read_idx

from cnnlab.usercode.record import set_policy

MYCODE = '''
"""Everything of my own, in one file."""
import json

import numpy as np
import torch
from torch import nn

import cnnlab


class SmallNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, width: int = 8):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                  nn.MaxPool2d(2), nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.head = nn.Linear(8 * width, num_classes)

    def forward(self, x):
        return self.head(self.body(x))


def digits(path: str, split: str, keep: int = 0):
    """MNIST digits from an .npz of my own (x_train, y_train, x_test, y_test)."""
    with np.load(path) as z:
        if f"x_{split}" not in z.files:
            return None
        x, y = z[f"x_{split}"], z[f"y_{split}"]
    return (x[:keep], y[:keep]) if keep else (x, y)


def smooth_ce(logits, targets, eps: float = 0.05):
    return nn.functional.cross_entropy(logits, targets, label_smoothing=eps)


class Jitter:
    def __init__(self, amount: float = 0.05):
        self.amount = amount

    def __call__(self, x):
        return (x + self.amount * (torch.rand_like(x) - 0.5)).clamp(0, 1)


class EpochLog(cnnlab.Callback):
    def __init__(self, interrupt_at_step: int = 0):
        self.interrupt_at_step = interrupt_at_step

    def on_run_start(self, run):
        self.folder = run.path if run.writes else None  # rank 0 alone writes in a torchrun job
        self.resumed = run.resumed

    def on_step_end(self, step, loss, lr):
        if step == self.interrupt_at_step and not self.resumed:
            raise KeyboardInterrupt  # as Ctrl-C would, mid-epoch

    def on_epoch_end(self, epoch, metrics):
        if self.folder is None:
            return
        with open(self.folder / "my_log.csv", "a") as f:
            f.write(f"{epoch},{metrics['train_loss']:.6f}\\n")


@cnnlab.register_analysis("confidence")
def confidence(subject, out, bins: int = 10):
    """Histogram of the top-class probability on the test split."""
    x, y = subject.images("test")
    with torch.no_grad():
        p = torch.softmax(subject.model(x), 1).max(1).values.numpy()
    counts = np.histogram(p, bins=bins, range=(0, 1))[0].tolist()
    out.json("hist.json", {"counts": counts})
    return [f"{len(p)} images, mean confidence {p.mean():.3f}"]
'''


def cnnlab(*args: str, cwd: Path, ok: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "cnnlab", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                       timeout=timeout, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    if ok:
        assert p.returncode == 0, p.stderr[-3000:]
    return p


def here(*args: str) -> int:
    """The command in this process (main(), as the console script calls it)."""
    from cnnlab.cli import main

    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A folder with the user's code, their data (an .npz of real MNIST images) and a config."""
    root = tmp_path_factory.mktemp("project")
    (root / "mycode.py").write_text(textwrap.dedent(MYCODE))
    x = read_idx(MNIST / "train-images-idx3-ubyte.gz")[:600]
    y = read_idx(MNIST / "train-labels-idx1-ubyte.gz")[:600]
    xt = read_idx(MNIST / "t10k-images-idx3-ubyte.gz")[:200]
    yt = read_idx(MNIST / "t10k-labels-idx1-ubyte.gz")[:200]
    np.savez(root / "digits.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    np.save(root / "new.npy", xt[:20])
    cfg = {
        "imports": ["mycode.py"], "seed": 0, "device": "cpu",
        "data": {"format": "mycode.py:digits", "path": str(root / "digits.npz"), "val_fraction": 0.1},
        "augment": [{"mycode.py:Jitter": {"amount": 0.1}}],
        "model": {"name": "mycode.py:SmallNet", "width": 8},
        "loss": {"name": "mycode.py:smooth_ce", "eps": 0.05},
        "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "callbacks": ["mycode.py:EpochLog"],
        "train": {"epochs": 2, "batch_size": 30, "out_dir": "runs"},
    }
    (root / "configs").mkdir()
    (root / "configs" / "my.yaml").write_text(yaml.safe_dump(cfg).replace("mycode.py", "../mycode.py"))
    return root


@pytest.mark.slow
def test_the_users_own_code_through_every_command(project, capsys):
    root = project
    p = cnnlab("train", "configs/my.yaml", cwd=root)
    run = Path(p.stdout.strip().splitlines()[-1])
    run = run if run.is_absolute() else root / run
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["test_acc"] > 0.3, summary
    assert (run / "my_log.csv").read_text().count("\n") == 2  # the callback ran each epoch
    code = json.loads((run / "code.json").read_text())
    assert code["files"][0]["path"] == str(root / "mycode.py")
    assert (run / code["files"][0]["copy"]).read_bytes() == (root / "mycode.py").read_bytes()
    data = json.loads((run / "data.json").read_text())
    assert data["sizes"] == {"train": 540, "val": 60, "test": 200} and data["classes"][:3] == ["0", "1", "2"]

    # Every command that reopens the run imports the same code, from any folder: a fresh process,
    # then this one (which has not imported mycode.py either), to spare CI the start-ups.
    elsewhere = root / "configs"
    assert "top-1" in cnnlab("evaluate", run, cwd=elsewhere).stdout
    assert here("predict", run, root / "new.npy", "--out", root / "sub.csv") == 0
    rows = list(csv.DictReader((root / "sub.csv").open()))
    assert len(rows) == 20 and {r["label"] for r in rows} <= set(map(str, range(10)))
    assert here("analyze", run, "confidence", "--bins", "5") == 0  # registered by the run's own file
    assert sum(json.loads((run / "analysis" / "confidence" / "hist.json").read_text())["counts"]) == 200
    assert here("analyze", run, "kernels") == 0
    assert here("export", run, "--format", "onnx") == 0 and (run / "export" / "model-best.onnx").is_file()
    assert here("report", run) == 0 and "mycode.py" in (run / "report.html").read_text()

    # Interrupted mid-epoch by the user's own callback (Ctrl-C), resumed to the same numbers.
    p = cnnlab("train", "configs/my.yaml", "callbacks=[{name: mycode.py:EpochLog, interrupt_at_step: 22}]",
               cwd=root, ok=False)
    assert p.returncode == 130, p.stderr
    (stopped,) = [d for d in (root / "runs").iterdir() if d != run]
    cnnlab("resume", stopped, cwd=elsewhere)
    resumed = json.loads((stopped / "summary.json").read_text())
    assert resumed["status"] == "completed" and resumed["epochs"] == 2
    assert resumed["test_acc"] == summary["test_acc"] and resumed["val_acc"] == summary["val_acc"]

    # The file edited, then gone: one line each; the stored copy or the current file on request.
    original = (root / "mycode.py").read_text()
    (root / "mycode.py").write_text(original + "\n# edited\n")
    capsys.readouterr()
    assert here("evaluate", run) == 2  # in this process, which imported the file before it changed
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "mycode.py changed since this run was trained" in err and "--code stored" in err
    assert here("evaluate", run, "--code", "current") == 0
    (root / "mycode.py").unlink()
    assert here("predict", run, root / "new.npy", "--out", root / "again.csv") == 2
    assert not (root / "again.csv").exists()
    assert here("predict", run, root / "new.npy", "--out", root / "again.csv", "--code", "stored") == 0
    assert (root / "again.csv").read_text() == (root / "sub.csv").read_text()
    (root / "mycode.py").write_text(original)
    set_policy("check")


@pytest.mark.slow
def test_a_study_with_two_workers_and_a_torchrun_job_import_the_users_code(project):
    root = project
    study = {"name": "mine", "base": "configs/my.yaml", "mode": "ablation", "axes": {"loss.eps": [0.0, 0.1]},
             "seeds": [0], "overrides": {"train.epochs": 1}, "out_dir": str(root / "studies")}
    (root / "study.yaml").write_text(yaml.safe_dump(study))
    cnnlab("study", "study.yaml", "--workers", "2", cwd=root, timeout=600)
    rows = list(csv.DictReader((root / "studies" / "mine" / "results.csv").open()))
    assert len(rows) == 3 and {r["status"] for r in rows} == {"completed"}, rows
    assert len({r["host"] + r.get("threads", "") for r in rows}) >= 1

    p = cnnlab("train", "configs/my.yaml", "--nproc", "2", "-q", "train.epochs=1", "train.out_dir=ddp", cwd=root,
               timeout=600)
    run = root / p.stdout.strip().splitlines()[-1] if not Path(p.stdout.strip().splitlines()[-1]).is_absolute() \
        else Path(p.stdout.strip().splitlines()[-1])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["processes"] == 2
    assert (run / "my_log.csv").read_text().count("\n") == 1  # rank 0's callback only writes
