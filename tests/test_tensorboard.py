"""train.tensorboard: the event files read back with TensorBoard's own readers (EventAccumulator,
EventMultiplexer) and checked against the run's metrics.jsonl, steps.csv, config and summary."""

from __future__ import annotations

import csv
import json
import os
import signal
from pathlib import Path

import pytest
import yaml
from conftest import write_config
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.util import tensor_util

from cnnlab.errors import Interrupted
from cnnlab.resolve import load_config
from cnnlab.training.runner import resume, train
from cnnlab.training.tensorboard import hparam_values

pytestmark = pytest.mark.slow  # end to end: real trainings and studies (the shared fixtures)


def events(run_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})  # 0: keep every event
    acc.Reload()
    return acc


def scalars(acc: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def session_start(acc: EventAccumulator) -> plugin_data_pb2.SessionStartInfo:
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    return plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info


def test_steps_epochs_and_hparams_equal_the_runs_files(report_run):
    acc = events(report_run)
    steps = [float(r["train_loss"]) for r in csv.DictReader((report_run / "steps.csv").open())]
    logged = scalars(acc, "step/train_loss")
    assert [s for s, _ in logged] == list(range(1, len(steps) + 1))
    assert [v for _, v in logged] == pytest.approx(steps, rel=1e-5)  # steps.csv keeps 6 digits
    history = [json.loads(line) for line in (report_run / "metrics.jsonl").read_text().splitlines()]
    for key in ("lr", "train_loss", "train_acc", "val_loss", "val_acc", "val_top5", "test_acc", "test_top5", "seconds"):
        assert scalars(acc, f"epoch/{key}") == [(h["epoch"], pytest.approx(h[key], rel=1e-6)) for h in history], key

    config = yaml.safe_load((report_run / "config.yaml").read_text())
    start = session_start(acc)
    hp = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}
    expected = {**hparam_values(config), "status": "completed"}
    assert hp.keys() == expected.keys()
    assert hp["optim.lr"] == 0.05 and hp["model.channels"] == "[4, 8]" and hp["train.tensorboard"] == 1.0  # torch logs bools as numbers
    assert hp["data.path"] == config["data"]["path"] and hp["status"] == "completed"
    summary = json.loads((report_run / "summary.json").read_text())
    for key, value in (("val_acc", summary["val_acc"]), ("test_acc", summary["test_acc"]),
                       ("best_test_error", summary["best_test_error"]),
                       ("final_val_loss", summary["final"]["val_loss"])):
        assert scalars(acc, f"hparams/{key}") == [(summary["epochs"], pytest.approx(value, rel=1e-6))], key


def test_a_resumed_run_continues_its_events_without_gaps_or_repeats(mnist_small, tmp_path):
    path = write_config(tmp_path / "c.yaml", {"format": "idx", "path": str(mnist_small), "limit_train": 200,
                                              "val_fraction": 0.2},
                        model={"name": "cnn", "channels": [4], "norm": "batch"},
                        train={"epochs": 3, "batch_size": 40, "tensorboard": True})
    cfg = load_config(path)

    def stop_after_first_epoch(epoch, metrics):
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # as `kill` would: the run stops after this epoch

    run_dir = tmp_path / "run"
    with pytest.raises(Interrupted):
        train(cfg, run_dir=run_dir, quiet=True, callbacks=[stop_after_first_epoch])
    first = events(run_dir)
    assert [s for s, _ in scalars(first, "epoch/val_acc")] == [1]
    with pytest.raises(KeyError):  # the hparams are written when the run ends, not when it is stopped
        first.PluginTagToContent("hparams")

    resume(run_dir, quiet=True)
    acc = events(run_dir)
    rows = list(csv.DictReader((run_dir / "steps.csv").open()))
    steps = [float(r["train_loss"]) for r in rows]
    assert {r["epoch"] for r in rows} == {"1", "2", "3"}
    assert [s for s, _ in scalars(acc, "step/train_loss")] == list(range(1, len(steps) + 1))
    assert [v for _, v in scalars(acc, "step/train_loss")] == pytest.approx(steps, rel=1e-5)
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert scalars(acc, "epoch/val_acc") == [(h["epoch"], pytest.approx(h["val_acc"], rel=1e-6)) for h in history]
    assert session_start(acc).hparams["status"].string_value == "completed"


def test_a_studys_runs_compare_under_one_logdir(report_study):
    """`tensorboard --logdir studies/NAME`: the multiplexer TensorBoard's server reads a logdir with finds
    every run of the study, with its curves and hparams."""
    mux = EventMultiplexer()
    mux.AddRunsFromDirectory(str(report_study))
    mux.Reload()
    run_dirs = sorted(p for p in (report_study / "runs").iterdir() if p.is_dir())
    assert sorted(mux.Runs()) == sorted(f"runs/{p.name}/tb" for p in run_dirs) and len(run_dirs) == 4
    for p in run_dirs:
        history = [json.loads(line) for line in (p / "metrics.jsonl").read_text().splitlines()]
        # the server's multiplexer holds scalars as tensors, as the dashboard reads them
        logged = [(e.step, float(tensor_util.make_ndarray(e.tensor_proto)))
                  for e in mux.Tensors(f"runs/{p.name}/tb", "epoch/val_acc")]
        assert logged == [(h["epoch"], pytest.approx(h["val_acc"], rel=1e-6)) for h in history]
        assert "_hparams_/session_start_info" in mux.PluginRunToTagToContent("hparams")[f"runs/{p.name}/tb"]
