"""Fine-tuning schedules: train.freeze (the body held fixed, its BatchNorm statistics too, for the
first epochs; then everything trains), optim.lr_mult and optim.layer_decay (per-parameter learning
rates the schedules scale), exact on resume and visible in the banner and `cnnlab model summary`."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import write_config

from cnnlab.cli import main
from cnnlab.config import ModelConfig, OptimConfig
from cnnlab.models import build_model
from cnnlab.training.param_groups import multipliers, param_groups

MODEL = {"name": "cnn", "channels": [4, 8], "norm": "batch"}
HEAD = ("1.1.weight", "1.1.bias")  # the cnn family's last Linear layer


def _run(tmp_path, name, data, epochs, capsys=None, **sections):
    cfg = write_config(tmp_path / name / "c.yaml", data, model=MODEL, train={"epochs": epochs, "batch_size": 50,
                                                                          **sections.pop("train", {})}, **sections)
    assert main(["train", str(cfg)]) == 0
    return next((tmp_path / name / "runs").iterdir())


def test_a_frozen_body_and_its_batch_norm_statistics_stay_put_then_train(mnist_small, tmp_path, capsys):
    data = {"format": "idx", "path": str(mnist_small), "limit_train": 300}
    one = _run(tmp_path, "one", data, 1, train={"freeze": {"epochs": 1}})
    assert "frozen for epoch(s) 1-1: " in capsys.readouterr().err
    init = torch.load(one / "init.pt", weights_only=True)["model"]
    after = torch.load(one / "last.pt", weights_only=True)["model"]
    body = [k for k in init if not k.startswith("1.1.")]
    assert any("running_mean" in k for k in body)
    assert all(torch.equal(init[k], after[k]) for k in body)  # weights and BN statistics alike
    assert not any(torch.equal(init[k], after[k]) for k in HEAD)  # the head trained

    two = _run(tmp_path, "two", data, 2, train={"freeze": {"epochs": 1}})
    later = torch.load(two / "last.pt", weights_only=True)["model"]
    assert not torch.equal(init["0.0.weight"], later["0.0.weight"])  # unfrozen in epoch 2
    assert not torch.equal(init["0.1.running_mean"], later["0.1.running_mean"])


def test_freeze_and_lr_multipliers_resume_exactly(mnist_small, tmp_path):
    from cnnlab.resolve import load_config
    from cnnlab.training import runner

    data = {"format": "idx", "path": str(mnist_small), "limit_train": 300}
    common = dict(model=MODEL, optim={"name": "sgd", "lr": 0.05, "momentum": 0.9, "lr_mult": {"1.*": 5.0},
                                      "layer_decay": 0.5},
                  schedule={"name": "cosine"}, train={"epochs": 3, "batch_size": 50, "freeze": {"epochs": 2}})
    whole = runner.train(load_config(write_config(tmp_path / "a" / "c.yaml", data, **common)), quiet=True).run_dir

    def cut(epoch, metrics):
        if epoch == 2:  # epoch 2's files never written: last.pt holds epoch 1, still frozen
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.train(load_config(write_config(tmp_path / "b" / "c.yaml", data, **common)), quiet=True, callbacks=[cut])
    run = next((tmp_path / "b" / "runs").iterdir())
    runner.resume(run, quiet=True)
    read = lambda d: [{k: v for k, v in json.loads(x).items() if k != "seconds"}
                      for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert read(run) == read(whole)
    wa, wb = (torch.load(d / "last.pt", weights_only=True) for d in (whole, run))
    assert all(torch.equal(wa["model"][k], wb["model"][k]) for k in wa["model"])
    groups = wb["optimizer"]["param_groups"]
    assert sorted(g["lr_mult"] for g in groups) == [0.5, 5.0]  # the body at decay^1, the head at 5 x 1


def test_layer_decay_and_lr_mult_give_each_parameter_its_rate():
    model = build_model(ModelConfig(name="resnet", blocks=[1, 1], widths=[8, 16]), (3, 32, 32), 10)
    tops = [n for n, _ in model.named_children() if any(True for _ in _.parameters())]
    mult = multipliers(model, OptimConfig(layer_decay=0.5, lr_mult={"0.*": 2.0}))  # the stem's conv twice as fast
    for name, m in mult.items():
        depth = len(tops) - 1 - tops.index(name.split(".")[0])
        assert m == pytest.approx(0.5**depth * (2.0 if name.startswith("0.") else 1.0))
    assert mult[next(n for n in mult if n.startswith(tops[-1]))] == 1.0  # the head: the full rate
    groups = param_groups(model, OptimConfig(layer_decay=0.5))
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    opt = torch.optim.SGD(groups, lr=1.0)
    from cnnlab.training.torch_engine import TorchEngine

    TorchEngine.set_lr(type("E", (), {"optimizer": opt})(), 0.1)
    assert sorted(g["lr"] for g in opt.param_groups) == pytest.approx(sorted(0.1 * g["lr_mult"] for g in groups))


def test_the_summary_says_what_is_frozen_and_bad_settings_are_one_line(mnist_small, tmp_path, capsys):
    data = {"format": "idx", "path": str(mnist_small)}
    cfg = write_config(tmp_path / "c.yaml", data, model=MODEL, train={"freeze": {"epochs": 2}})
    assert main(["model", "summary", str(cfg), "--input", "1x28x28", "--classes", "10"]) == 0
    out = capsys.readouterr().out
    assert "train.freeze: " in out and "trainable in epoch(s) 1-2 (until head)" in out
    for override, message in [("train.freeze.until=layer9", "train.freeze.until: 'layer9' names no layer of this model"),
                              ("optim.lr_mult={fc.*: 2}", "optim.lr_mult: 'fc.*' matches no parameter of this model"),
                              ("engine=scratch", "train.freeze: not available with engine: scratch")]:
        assert main(["train", str(cfg), override]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "runs").exists()
