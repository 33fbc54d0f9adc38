"""engine: scratch: the NumPy engine through cnnlab train / resume / evaluate / predict."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, read_idx, write_config

from cnnlab.cli import main
from cnnlab.errors import ConfigError
from cnnlab.resolve import load_config
from cnnlab.training import runner
from cnnlab.training.session import build_session

LENET = {"name": "lenet", "dropout": 0.0}


def lenet_config(tmp_path, mnist_small, name="c.yaml", **sections):
    # The first 800 (limit_mode first): the tolerances below were measured on that slice.
    data = {"format": "idx", "path": str(mnist_small), "limit_train": 800, "limit_mode": "first"}
    sections.setdefault("model", LENET)
    sections.setdefault("optim", {"name": "sgd", "lr": 0.05, "momentum": 0.9})
    sections.setdefault("train", {"epochs": 2, "batch_size": 32})
    return write_config(tmp_path / name, data, **sections)


def metrics(run_dir):
    return [{k: v for k, v in json.loads(x).items() if k != "seconds"}
            for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_both_engines_start_from_the_same_weights_and_follow_the_same_curve(mnist_small, tmp_path):
    path = lenet_config(tmp_path, mnist_small, train={"epochs": 1, "batch_size": 32})
    torch_session = build_session(load_config(path))
    scratch_session = build_session(load_config(path, ["engine=scratch"]))
    net = scratch_session.engine.net
    theirs = {k: v.detach().numpy() for k, v in torch_session.model.state_dict().items()}
    ours = net.state_dict()
    # LeNet's Sequential indices are the same in both engines; the engine's first conv has a
    # (zero) bias where torch's has none because BatchNorm follows it.
    for key, value in theirs.items():
        assert np.array_equal(ours[key], value), key
    assert set(ours) - set(theirs) == {"0.bias"} and not ours["0.bias"].any()

    # torch on one thread, as the NumPy engine runs it: a multi-threaded conv sums in another order,
    # and 23 steps of momentum 0.9 carry that rounding to 2e-3 of the loss.
    before = torch.get_num_threads()
    try:
        a = runner.train(load_config(path, ["name=torch_engine", "train.threads=1"]), quiet=True).run_dir
    finally:
        torch.set_num_threads(before)  # train.threads holds for the process; the next test's runs get it back
    b = runner.train(load_config(path, ["engine=scratch", "name=numpy_engine"]), quiet=True).run_dir
    ma, mb = metrics(a)[0], metrics(b)[0]
    # Same data order, same weights, float32 in both: the curves agree to rounding.
    assert mb["train_loss"] == pytest.approx(ma["train_loss"], rel=1e-3)
    assert abs(mb["val_acc"] - ma["val_acc"]) <= 3 / 80 and abs(mb["test_acc"] - ma["test_acc"]) <= 0.02
    steps_a = torch.load(a / "last.pt", weights_only=True)["step_losses"].numpy()
    with np.load(b / "last.npz", allow_pickle=False) as z:
        steps_b = np.array(json.loads(str(z["state"]))["step_losses"])
    assert len(steps_a) == len(steps_b) == 23
    assert np.allclose(steps_a[:5], steps_b[:5], rtol=1e-4)  # step by step, the same training
    assert mb["test_acc"] > 0.8
    summary = json.loads((b / "summary.json").read_text())
    assert summary["engine"] == "scratch" and summary["params"] == 5154
    assert {p.name for p in b.iterdir()} >= {"best.npz", "last.npz", "metrics.jsonl", "curves.png", "summary.json"}
    with np.load(b / "best.npz", allow_pickle=False) as z:
        assert json.loads(str(z["meta"]))["engine"] == "scratch"


def test_resume_evaluate_and_predict_on_the_engine(mnist_small, tmp_path, capsys):
    common = dict(model={"name": "lenet", "dropout": 0.3}, augment=["hflip", {"random_crop": 2}],
                  schedule={"name": "exponential", "gamma": 0.7}, train={"epochs": 3, "batch_size": 32})
    whole = runner.train(load_config(lenet_config(tmp_path / "a", mnist_small, **common), ["engine=scratch"]),
                         quiet=True).run_dir

    def interrupt(epoch, m):
        if epoch == 2:
            raise KeyboardInterrupt

    cfg = load_config(lenet_config(tmp_path / "b", mnist_small, **common), ["engine=scratch"])
    with pytest.raises(KeyboardInterrupt):
        runner.train(cfg, quiet=True, callbacks=[interrupt])
    cut = next((tmp_path / "b" / "runs").iterdir())
    assert len(metrics(cut)) == 1
    assert main(["resume", str(cut), "-q"]) == 0
    assert metrics(cut) == metrics(whole)  # dropout masks, batches and lr all replayed exactly
    with np.load(whole / "last.npz") as za, np.load(cut / "last.npz") as zb:
        assert all(np.array_equal(za[k], zb[k]) for k in za.files if k.startswith("model/"))
    capsys.readouterr()

    assert main(["evaluate", str(cut)]) == 0
    report = json.loads((cut / "eval-test-best.json").read_text())
    summary = json.loads((cut / "summary.json").read_text())
    assert report["acc"] == pytest.approx(summary["test_acc"], abs=1e-12)

    x = read_idx(mnist_small / "t10k-images-idx3-ubyte.gz")
    y = read_idx(mnist_small / "t10k-labels-idx1-ubyte.gz")
    np.save(tmp_path / "test.npy", x)
    assert main(["predict", str(cut), str(tmp_path / "test.npy"), "--out", str(tmp_path / "s.csv")]) == 0
    pred = np.array([int(r[1]) for r in list(csv.reader((tmp_path / "s.csv").open()))[1:]])
    assert (pred == y).mean() == pytest.approx(summary["test_acc"], abs=1e-9)


def test_options_the_engine_lacks_are_refused_before_any_work(mnist_small, tmp_path):
    path = lenet_config(tmp_path, mnist_small)
    for override, message in [
        ("optim.name=rmsprop", "engine: scratch implements sgd and adam"),
        ("train.ema=0.99", "train.ema: not available with engine: scratch"),
        ("loss.l2=0.01", "loss.l2: not available"),
        ("model.name=resnet", "cannot run layer"),
        ("augment=[mixup]", "augment: not available"),
    ]:
        with pytest.raises(ConfigError, match=message):
            build_session(load_config(path, ["engine=scratch", override]))
    assert not (tmp_path / "runs").exists()


def test_cnn_configs_and_clipping_run_on_the_engine(mnist_small, tmp_path):
    model = {"name": "cnn", "channels": [4, 8], "norm": "batch", "pool": "avg", "activation": "tanh",
             "fc_hidden": [16], "fc_norm": True, "dropout": 0.1}
    path = lenet_config(tmp_path, mnist_small, model=model, train={"epochs": 1, "batch_size": 32,
                                                                   "grad_clip": 0.5, "grad_clip_value": 0.1})
    session = build_session(load_config(path, ["engine=scratch", "optim.name=adam", "optim.lr=0.003"]))
    ours, theirs = session.engine.net, session.model
    x = torch.randn(4, 1, 28, 28)
    theirs.eval()
    with torch.no_grad():
        expected = theirs(x).numpy()
    got = ours.forward(x.numpy(), training=False)
    assert np.allclose(got, expected, atol=1e-5)  # the converted network computes what torch's does
    result = runner.train(load_config(path, ["engine=scratch", "optim.name=adam", "optim.lr=0.003"]), quiet=True)
    assert result.summary["status"] == "completed" and result.summary["test_acc"] > 0.5


@pytest.mark.heavy  # `make test-all`: the engine trains, resumes and evaluates in the tests above
def test_grid_search_over_lr_dropout_epochs_and_batch_size_runs_on_the_engine(tmp_path, mnist_small):
    """The NumPy engine through `cnnlab study`: the example grid file, on an MNIST slice."""
    import yaml

    spec = yaml.safe_load((ROOT / "configs" / "studies" / "mnist_lenet_scratch_grid.yaml").read_text())
    spec["base"] = str(ROOT / "configs" / "mnist_lenet.yaml")
    spec["overrides"].update({"data.path": str(mnist_small), "data.limit_train": 400, "data.val_fraction": 0.25,
                              "device": "cpu"})
    spec["axes"].update({"train.batch_size": [25, 50], "train.epochs": [1, 2]})
    spec.update(seeds=[0], out_dir=str(tmp_path / "studies"))
    study = tmp_path / "grid.yaml"
    study.write_text(yaml.safe_dump(spec))
    assert main(["study", str(study), "--workers", "1"]) == 0
    folder = tmp_path / "studies" / "grid"
    rows = list(csv.DictReader((folder / "results.csv").open()))
    assert len(rows) == 16 and {r["status"] for r in rows} == {"completed"}
    assert {(r["optim.lr"], r["model.dropout"], r["train.batch_size"], r["train.epochs"]) for r in rows} == {
        (lr, d, b, e) for lr in ("0.01", "0.05") for d in ("0", "0.25") for b in ("25", "50") for e in ("1", "2")}
    for r in rows:
        run = Path(r["run"]) if Path(r["run"]).is_absolute() else folder / r["run"]
        summary = json.loads((run / "summary.json").read_text())
        assert summary["engine"] == "scratch" and (run / "best.npz").is_file() and not (run / "best.pt").exists()
        assert summary["epochs"] == int(r["train.epochs"])
        assert 0.0 <= float(r["val_acc"]) <= 1.0
    assert max(float(r["val_acc"]) for r in rows) > 0.6  # 300 images: far above chance, a real NumPy training
    assert "mean" in (folder / "table.md").read_text()


def test_a_numpy_engine_run_leaves_torchs_thread_count_as_it_found_it(mnist_small, tmp_path):
    """The engine runs torch on one thread while it trains (torch only prepares batches); the
    torch runs after it in the same process (a study's in-process worker) keep their threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cfg = load_config(lenet_config(tmp_path, mnist_small, train={"epochs": 1, "batch_size": 64}),
                          ["engine=scratch", f"train.out_dir={tmp_path / 'runs'}"])
        runner.train(cfg, quiet=True)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
