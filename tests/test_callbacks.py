"""cnnlab.Callback: every hook called in order with the loop's numbers, stop requests (status
stopped, checkpoints valid, resume keeps it stopped), callbacks from the config with options, and
a callback that raises: the run fails with last.pt intact and the user's traceback."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from conftest import write_config

import cnnlab
from cnnlab.cli import main
from cnnlab.resolve import load_config
from cnnlab.training import runner
from cnnlab.usercode.blame import UserCodeError


def mnist(path):
    return {"format": "idx", "path": str(path), "limit_train": 256, "limit_test": 128}


class Recorder(cnnlab.Callback):
    def __init__(self):
        self.calls: list[tuple] = []

    def on_run_start(self, run):
        self.calls.append(("run_start", run.epochs, run.steps_per_epoch, run.resumed, run.classes[:2]))

    def on_epoch_start(self, epoch):
        self.calls.append(("epoch_start", epoch))

    def on_step_end(self, step, loss, lr):
        self.calls.append(("step", step, round(loss, 6), lr))

    def on_epoch_end(self, epoch, metrics):
        self.calls.append(("epoch_end", epoch, metrics["train_loss"]))

    def on_checkpoint(self, which, path):
        self.calls.append(("checkpoint", which, path.name))

    def on_run_end(self, status, summary):
        self.calls.append(("run_end", status, summary["epochs"]))


def test_every_hook_is_called_in_order_with_the_loops_numbers(tmp_path, mnist_small):
    cfg = load_config(write_config(tmp_path / "c.yaml", mnist(mnist_small), schedule={"name": "cosine"},
                                   train={"epochs": 2, "batch_size": 64, "out_dir": str(tmp_path / "runs")}))
    rec = Recorder()
    result = runner.train(cfg, quiet=True, callbacks=[rec])
    kinds = [c[0] for c in rec.calls]
    assert kinds[0] == "run_start" and kinds[-1] == "run_end" and kinds[1:3] == ["checkpoint", "epoch_start"]
    assert rec.calls[0][1:4] == (2, 4, False) and rec.calls[1] == ("checkpoint", "init", "init.pt")
    steps = [c for c in rec.calls if c[0] == "step"]
    losses = [float(line.split(",")[2]) for line in (result.run_dir / "steps.csv").read_text().splitlines()[1:]]
    assert [s[1] for s in steps] == list(range(1, 9)) and [s[2] for s in steps] == pytest.approx(losses, abs=1e-5)
    assert steps[0][3] == pytest.approx(0.05) and steps[-1][3] < steps[0][3]  # the lr each step used: cosine decays
    history = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [c[2] for c in rec.calls if c[0] == "epoch_end"] == [h["train_loss"] for h in history]
    # after each epoch's evaluation: best (epoch 1 at least), then last
    ends = [i for i, c in enumerate(rec.calls) if c[0] == "epoch_end"]
    assert rec.calls[ends[0] + 1][:2] == ("checkpoint", "best") and ("checkpoint", "last", "last.pt") in rec.calls
    assert rec.calls[-1] == ("run_end", "completed", 2)


class StopAfter(cnnlab.Callback):
    def __init__(self, step: int):
        self.at = step

    def on_step_end(self, step, loss, lr):
        if step == self.at:
            self.stop(f"enough after step {step}")


def test_a_stop_request_ends_the_run_as_stopped_with_valid_checkpoints(tmp_path, mnist_small):
    cfg = load_config(write_config(tmp_path / "c.yaml", mnist(mnist_small),
                                   train={"epochs": 3, "batch_size": 64, "out_dir": str(tmp_path / "runs")}))
    result = runner.train(cfg, quiet=True, callbacks=[StopAfter(6)])  # in epoch 2, after its 2nd step
    s = result.summary
    assert s["status"] == "stopped" and s["reason"] == "enough after step 6 (in epoch 2 after step 2)"
    assert s["epochs"] == 1 and s["best_epoch"] == 1
    last = torch.load(result.run_dir / "last.pt", weights_only=True)
    assert last["partial"]["step"] == 2 and last["state"]["stop"][0] == "stopped"
    assert torch.load(result.run_dir / "best.pt", weights_only=True)["epoch"] == 1
    again = runner.resume(result.run_dir, quiet=True)  # stays stopped: nothing more is trained
    assert again.summary["status"] == "stopped" and again.summary["epochs"] == 1
    assert main(["evaluate", str(result.run_dir)]) == 0


class EndAtEpoch(cnnlab.Callback):
    def on_epoch_end(self, epoch, metrics):
        if epoch == 1:
            self.stop()


def test_a_stop_at_an_epochs_end_keeps_that_epoch(tmp_path, mnist_small):
    cfg = load_config(write_config(tmp_path / "c.yaml", mnist(mnist_small),
                                   train={"epochs": 3, "batch_size": 64, "out_dir": str(tmp_path / "runs")}))
    s = runner.train(cfg, quiet=True, callbacks=[EndAtEpoch()]).summary
    assert (s["status"], s["epochs"], s["reason"]) == ("stopped", 1, "stopped by EndAtEpoch")


CALLBACKS = '''
import cnnlab


class Boom(cnnlab.Callback):
    """Raises at the end of epoch `at`."""

    def __init__(self, at: int = 2):
        self.at = at

    def on_epoch_end(self, epoch, metrics):
        if epoch == self.at:
            self.explode(metrics)

    def explode(self, metrics):
        raise ValueError(f"my callback broke at {metrics['epoch']}")


class Counter(cnnlab.Callback):
    """Counts epochs across a resume."""

    def __init__(self):
        self.n = 0

    def on_epoch_end(self, epoch, metrics):
        self.n += 1

    def state_dict(self):
        return {"n": self.n}

    def load_state_dict(self, state):
        self.n = state["n"]
'''


def test_a_raising_callback_fails_the_run_with_last_pt_intact_and_its_traceback(tmp_path, mnist_small, capsys):
    (tmp_path / "cbs.py").write_text(textwrap.dedent(CALLBACKS))
    path = write_config(tmp_path / "c.yaml", mnist(mnist_small), imports=["cbs.py"],
                        callbacks=[{"name": "cbs.py:Boom", "at": 2}, "cbs.py:Counter"],
                        train={"epochs": 3, "batch_size": 64, "out_dir": str(tmp_path / "runs")})
    assert main(["train", str(path), "-q"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (your code only" in err and 'cbs.py", line 13, in on_epoch_end' in err
    assert 'cbs.py", line 16, in explode' in err and "cnnlab/training" not in err
    assert err.strip().splitlines()[-1] == ("cnnlab: error: callbacks: Boom.on_epoch_end raised: "
                                            "ValueError: my callback broke at 2")
    (run_dir,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "ValueError: my callback broke at 2" in summary["reason"]
    last = torch.load(run_dir / "last.pt", weights_only=True)
    assert last["state"]["epoch"] == 1 and last["callbacks"]["Counter"] == {"n": 1}  # epoch 1's, whole
    assert main(["evaluate", str(run_dir)]) == 0


def test_config_callbacks_are_checked_before_anything_is_written(tmp_path, mnist_small, capsys):
    (tmp_path / "cbs.py").write_text(textwrap.dedent(CALLBACKS))
    out = tmp_path / "runs"
    path = write_config(tmp_path / "c.yaml", mnist(mnist_small), imports=["cbs.py"],
                        callbacks=[{"name": "cbs.py:Boom", "att": 2}], train={"out_dir": str(out)})
    assert main(["train", str(path)]) == 2
    assert "callbacks[0].att: unknown key for cbs.py:Boom (did you mean 'callbacks[0].at'?)" in capsys.readouterr().err
    path = write_config(tmp_path / "c.yaml", mnist(mnist_small), callbacks=["early_stop"],
                        train={"early_stop": {"patience": 2}, "out_dir": str(out)})
    assert main(["train", str(path)]) == 2
    assert "callbacks: early_stop is also set by train.early_stop; keep one of them" in capsys.readouterr().err
    assert not out.exists()


def test_a_function_callback_and_the_builtin_callbacks_by_name(tmp_path, mnist_small):
    seen = []
    cfg = load_config(write_config(tmp_path / "c.yaml", mnist(mnist_small),
                                   callbacks=[{"name": "early_stop", "monitor": "train_loss", "patience": 1,
                                               "min_delta": 10}],
                                   train={"epochs": 4, "batch_size": 64, "out_dir": str(tmp_path / "runs")}))
    s = runner.train(cfg, quiet=True, callbacks=[lambda epoch, metrics: seen.append(epoch)]).summary
    assert s["status"] == "early_stopped" and s["epochs"] == 2 and seen == [1, 2]


def test_errors_in_user_hooks_name_the_hook(tmp_path):
    from cnnlab.training.hooks import Hooks

    (tmp_path / "cbs.py").write_text(textwrap.dedent(CALLBACKS))
    from cnnlab.usercode.imports import import_file

    boom = import_file(tmp_path / "cbs.py", "test").Boom(at=1)
    with pytest.raises(UserCodeError, match="callbacks: Boom.on_epoch_end raised: ValueError"):
        Hooks([boom]).call("on_epoch_end", 1, {"epoch": 1})
