"""The Python API: cnnlab.build/train/resume, cnnlab.Run, study, compare, analyze, report, on
real MNIST; the same numbers as the command line; objects handed over directly."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, write_config
from torch import nn

import cnnlab
from cnnlab.errors import ConfigError

pytestmark = pytest.mark.usefixtures("fresh_registries")


def base(mnist, tmp_path, **extra):
    cfg = {"seed": 0, "device": "cpu",
           "data": {"format": "idx", "path": str(mnist), "limit_train": 300, "limit_test": 100},
           "model": {"name": "cnn", "channels": [8, 16], "norm": "batch"},
           "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
           "train": {"epochs": 2, "batch_size": 50, "out_dir": str(tmp_path / "runs")}}
    cfg.update(extra)
    return cfg


def test_importing_cnnlab_is_cheap_and_names_load_on_use():
    code = "import sys, cnnlab; print(sorted(m for m in ('torch', 'pandas', 'cnnlab.api') if m in sys.modules)); " \
           "cnnlab.Callback; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60).stdout
    assert out.split() == ["[]", "False"]
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        cnnlab.trian  # noqa: B018


def test_the_api_and_the_command_line_give_the_same_run(mnist_small, tmp_path):
    cfg = base(mnist_small, tmp_path)
    cfg["train"]["threads"] = 1  # the same torch threads in the test process and the command's
    path = write_config(tmp_path / "c.yaml", cfg["data"], **{k: v for k, v in cfg.items() if k != "data"})
    p = subprocess.run([sys.executable, "-m", "cnnlab", "train", str(path), "-q"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    cli = cnnlab.Run(p.stdout.strip().splitlines()[-1])
    api = cnnlab.train(path, quiet=True)
    assert api.history.drop(columns="seconds").equals(cli.history.drop(columns="seconds"))
    a, c = api.model().state_dict(), cli.model().state_dict()
    assert a.keys() == c.keys() and all(torch.equal(a[k], c[k]) for k in a)
    assert api.raw_config == {**cli.raw_config, "name": api.raw_config["name"]}


def test_run_reads_everything_a_notebook_wants(mnist_small, tmp_path):
    run = cnnlab.train(base(mnist_small, tmp_path), quiet=True)
    assert run.status == "completed" and run.summary["test_acc"] == run.history["test_acc"].iloc[-1]
    assert list(run.history["epoch"]) == [1, 2] and len(run.steps) == 2 * 6
    assert run.config.model.name == "cnn" and run.raw_config["optim"]["lr"] == 0.05
    net = run.model()
    assert isinstance(net, nn.Module) and not net.training and next(net.parameters()).device.type == "cpu"
    images = (torch.rand(5, 28, 28) * 255).to(torch.uint8)
    preds = run.predict(images)
    assert list(preds.columns) == ["image_id", "label", "class", "probability"] and len(preds) == 5
    assert ((preds["probability"] > 0) & (preds["probability"] <= 1)).all()
    ev = run.evaluate("test")
    assert ev["samples"] == 100 and ev["acc"] == pytest.approx(run.summary["test_acc"])
    fig = run.plot()
    assert len(fig.axes) >= 2
    html = run._repr_html_()
    assert "completed" in html and "data:image/png;base64," in html and run.name in html


class Twice(nn.Module):
    """A model class handed over directly (defined in a test module: importable by reference)."""

    def __init__(self, num_classes: int, in_channels: int, width: int = 6):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


class Count(cnnlab.Callback):
    def __init__(self):
        self.steps = 0

    def on_step_end(self, step, loss, lr):
        self.steps += 1


def test_objects_handed_over_directly(mnist_small, tmp_path):
    counter = Count()
    experiment = cnnlab.build(base(mnist_small, tmp_path), model=Twice, callbacks=[counter], **{"model.width": 4})
    assert isinstance(experiment.model, Twice) and experiment.model.conv.out_channels == 4
    assert experiment.data.num_classes == 10 and experiment.config.model.model_dump()["width"] == 4
    run = experiment.fit(quiet=True)
    assert counter.steps == 12 and run.raw_config["model"]["name"].endswith("test_api.py:Twice")
    assert run.code_files["files"][0]["path"].endswith("tests/test_api.py")
    assert any("Count" in o["what"] for o in run.code_files["objects"])
    with pytest.raises(ConfigError, match="has trained already"):
        experiment.fit()
    # A Dataset instance and a model instance: trained in place, recorded as objects.
    x = torch.rand(60, 1, 8, 8)
    y = torch.arange(60) % 3
    data = torch.utils.data.TensorDataset(x, y)
    net = Twice(3, 1)
    run2 = cnnlab.train(base(mnist_small, tmp_path, data={"val_fraction": 0.2}), model=net, data={"train": data},
                        quiet=True)
    info = json.loads((run2.path / "data.json").read_text())
    assert info["sizes"] == {"train": 48, "val": 12} and info["classes"] == ["0", "1", "2"]
    assert torch.equal(run2.model(model=net).fc.weight, net.fc.weight)  # the instance itself was trained
    assert {o["where"] for o in run2.code_files["objects"]} == {"model.name", "data.format"}


def test_resume_from_python_with_its_callbacks(mnist_small, tmp_path):
    class Interrupt(cnnlab.Callback):
        def on_epoch_start(self, epoch):
            if epoch == 2:
                raise KeyboardInterrupt  # Ctrl-C, after epoch 1's checkpoints

    with pytest.raises(KeyboardInterrupt):
        cnnlab.train(base(mnist_small, tmp_path), callbacks=[Interrupt()], quiet=True)
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert cnnlab.Run(run_dir).status == "interrupted"
    counter = Count()
    resumed = cnnlab.resume(run_dir, callbacks=[counter], quiet=True)
    assert resumed.status == "completed" and counter.steps == 6  # epoch 2 only
    whole = cnnlab.train(base(mnist_small, tmp_path), quiet=True)
    assert resumed.summary["test_acc"] == whole.summary["test_acc"]


def test_study_compare_analyze_report(mnist_small, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    table = cnnlab.study({"name": "api", "base": base(mnist_small, tmp_path, train={
        "epochs": 1, "batch_size": 50, "out_dir": "runs"}), "mode": "ablation",
        "axes": {"optim.lr": [0.01, 0.05]}, "seeds": [0, 1], "metric": "test_acc", "out_dir": str(tmp_path / "st")},
        quiet=True)
    assert list(table["variant"]) and len(table) == 2 and set(table["n"]) == {2}
    assert table.attrs["folder"] == tmp_path / "st" / "api" and len(table.attrs["runs"]) == 4
    results = table.attrs["runs"]
    seed0 = [tmp_path / "st" / "api" / r for r in results[results["seed"] == 0]["run"]]
    both = cnnlab.compare(*seed0)
    assert len(both) == 2 and sorted(both["optim.lr"]) == [0.01, 0.05]
    assert not any(c.startswith(("data.", "model.", "train.")) for c in both.columns)  # only what differs
    runs = seed0
    found = cnnlab.analyze(runs[0], "kernels", filters=4)
    assert found and (runs[0] / "analysis" / "kernels" / "report.json").is_file()
    page = cnnlab.report(runs[0])
    assert page.name == "report.html" and page.stat().st_size > 10_000
