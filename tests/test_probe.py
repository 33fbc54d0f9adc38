"""The landscape probe (train.probe) on real MNIST runs of both engines: a run with it is the
run without it, bit for bit (metrics, steps.csv, every checkpoint's weights, BN statistics,
optimizer and random state); its numbers are the ones computed by hand with torch.func; a
resumed run writes each probe once; bad settings and a model with hidden state are one line,
exit 2, before any run directory exists."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import write_config
from torch.func import functional_call

from cnnlab.cli import main
from cnnlab.models.registry import CONTEXT, MODELS
from cnnlab.resolve import load_config
from cnnlab.rundir import Run
from cnnlab.training import runner
from cnnlab.training.session import build_session

PROBE = {"every": 4, "steps": 3, "range": [0.5, 4.0]}
LR = 0.05


def config(folder: Path, mnist: Path, probe: dict | None, engine: str = "torch", **train) -> Path:
    data = {"format": "idx", "path": str(mnist), "val_fraction": 0.1, "limit_train": 640, "limit_test": 100}
    if engine == "torch":  # BN and dropout both: the two kinds of state a train-mode forward touches
        model = {"name": "cnn", "channels": [8, 16], "norm": "batch", "dropout": 0.3, "fc_hidden": [32]}
    else:
        model = {"name": "lenet", "batch_norm": True, "dropout": 0.3}
    # One thread for every run: the NumPy engine sets torch's threads to 1 in this process, and a
    # different count sums in a different order (runs compared bit for bit must share it).
    train = {"epochs": 2, "batch_size": 64, "threads": 1, **({"probe": probe} if probe else {}), **train}
    path = write_config(folder / "c.yaml", data, model=model, optim={"name": "sgd", "lr": LR, "momentum": 0.9},
                        train=train)
    if engine != "torch":
        path.write_text(path.read_text() + f"engine: {engine}\n")
    return path


def train(cfg: Path) -> Path:
    assert main(["train", str(cfg), "-q"]) == 0
    return next((cfg.parent / "runs").iterdir())


def metrics(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def core(payload: dict) -> dict:
    """A checkpoint's payload without what names the run's settings or its wall time."""
    out = {k: v for k, v in payload.items() if k not in ("config", "callbacks")}
    if "state" in out:
        out["state"] = {k: v for k, v in out["state"].items() if k != "elapsed"}
        out["state"]["history"] = [{k: v for k, v in h.items() if k != "seconds"} for h in out["state"]["history"]]
    if "metrics" in out:
        out["metrics"] = {k: v for k, v in out["metrics"].items() if k != "seconds"}
    return out


def assert_same(a, b, where: str = "") -> None:
    if isinstance(a, dict):
        assert sorted(a, key=str) == sorted(b, key=str), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b)):
            assert_same(u, v, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b), where
    else:
        assert a == b, where


def assert_runs_identical(off: Path, on: Path) -> None:
    assert metrics(on) == metrics(off)
    assert (on / "steps.csv").read_bytes() == (off / "steps.csv").read_bytes()
    for which in ("init", "best", "last"):
        assert_same(core(Run(on).checkpoint(which)), core(Run(off).checkpoint(which)), which)


def probe_rows(run: Path) -> list[dict]:
    with open(run / "probe.csv") as f:
        return list(csv.DictReader(f))


def check_probe_file(run: Path, every: int) -> None:
    """probe.csv: a probe before steps 1, 1 + every, ...; loss0 is that step's own training loss."""
    steps = {int(r["step"]): float(r["train_loss"]) for r in csv.DictReader(open(run / "steps.csv"))}
    rows = probe_rows(run)
    probed = sorted({int(r["step"]) for r in rows})
    assert probed == list(range(1, len(steps) + 1, every))
    sizes = np.geomspace(0.5, 4.0, 3)
    for r in rows:
        k = int(r["size"]) - 1
        assert float(r["lr"]) == LR and float(r["eta"]) == pytest.approx(LR * sizes[k], rel=1e-8)
        assert float(r["loss0"]) == pytest.approx(steps[int(r["step"])], rel=1e-5)
        beta = float(r["grad_change"]) / (float(r["eta"]) * float(r["grad_norm"]))
        assert float(r["beta"]) == pytest.approx(beta, rel=1e-7)
        assert float(r["grad_change"]) > 0 and math.isfinite(float(r["loss"]))
    assert len(rows) == 3 * len(probed)


@pytest.fixture(scope="module")
def torch_runs(tmp_path_factory, mnist_small) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("probe-torch")
    return {name: train(config(folder / name, mnist_small, probe)) for name, probe in (("off", None), ("on", PROBE))}


@pytest.mark.slow  # real runs: about 30 s for the four slow tests together
def test_a_torch_run_with_the_probe_is_the_run_without_it(torch_runs):
    assert_runs_identical(torch_runs["off"], torch_runs["on"])
    assert not (torch_runs["off"] / "probe.csv").exists()
    check_probe_file(torch_runs["on"], PROBE["every"])


@pytest.mark.slow
def test_the_first_probe_equals_a_hand_computation(torch_runs):
    """Step 1's probe from the run's own first batch and initial weights, recomputed with
    torch.func and F.cross_entropy: the same dropout masks (torch's generator as at the step)."""
    session = build_session(load_config(torch_runs["on"] / "config.yaml"))
    x, y = next(iter(session.train_loader.batches()))
    rng = torch.get_rng_state()
    model = session.model.train()
    names = [n for n, _ in model.named_parameters()]

    def loss_grad(params: dict[str, torch.Tensor]) -> tuple[float, list[torch.Tensor]]:
        torch.set_rng_state(rng)
        params = {n: p.detach().requires_grad_() for n, p in params.items()}
        loss = F.cross_entropy(functional_call(model, params, (x,)), y)
        return float(loss.detach()), list(torch.autograd.grad(loss, [params[n] for n in names]))

    w0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss0, g0 = loss_grad(w0)
    norm = math.sqrt(sum(float((g.double() ** 2).sum()) for g in g0))
    rows = [r for r in probe_rows(torch_runs["on"]) if r["step"] == "1"]
    assert float(rows[0]["loss0"]) == pytest.approx(loss0, rel=1e-6)
    assert float(rows[0]["grad_norm"]) == pytest.approx(norm, rel=1e-5)
    for r in rows:
        eta = float(r["eta"])
        loss, g = loss_grad({n: w0[n] - eta * g0[i] for i, n in enumerate(names)})
        change = math.sqrt(sum(float(((a.double() - b.double()) ** 2).sum()) for a, b in zip(g, g0)))
        assert float(r["loss"]) == pytest.approx(loss, rel=1e-5)
        assert float(r["grad_change"]) == pytest.approx(change, rel=1e-4)
    # The loss does move along the gradient: the probe is not looking at a frozen copy.
    assert len({r["loss"] for r in rows}) == 3


@pytest.mark.slow
def test_a_numpy_engine_run_with_the_probe_is_the_run_without_it(tmp_path, mnist_small):
    every = 3
    probe = {**PROBE, "every": every}
    off = train(config(tmp_path / "off", mnist_small, None, engine="scratch", epochs=1))
    on = train(config(tmp_path / "on", mnist_small, probe, engine="scratch", epochs=1))
    assert_runs_identical(off, on)
    check_probe_file(on, every)


class StopAt:
    """Ctrl-C as the user would press it, before step `at` (the loop saved last.pt every 5 steps)."""

    def __init__(self, at: int):
        self.at = at

    def __call__(self, epoch: int, metrics: dict) -> None:
        pass

    def on_batch_start(self, step: int, x: torch.Tensor, y: torch.Tensor) -> None:
        if step == self.at:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_a_resumed_run_writes_each_probe_once(torch_runs, tmp_path, mnist_small):
    cfg = load_config(config(tmp_path, mnist_small, PROBE, checkpoint_every=5))
    run_dir = tmp_path / "runs" / "r"
    with pytest.raises(KeyboardInterrupt):
        runner.train(cfg, run_dir=run_dir, quiet=True, callbacks=[StopAt(13)])  # last.pt after step 10
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
    runner.resume(run_dir, quiet=True)
    assert (run_dir / "probe.csv").read_bytes() == (torch_runs["on"] / "probe.csv").read_bytes()
    assert metrics(run_dir) == metrics(torch_runs["on"])


@pytest.mark.parametrize("override, words", [
    ("train.probe.every=0", "train.probe.every: Input should be greater than or equal to 1"),
    ("train.probe.range=[]", "train.probe.range: give [low, high]"),
    ("train.probe.range=[4.0,0.5]", "train.probe.range: give [low, high]"),
    ("train.probe.range=[1,1]", "train.probe.range: give [low, high]"),
    ("train.probe.steps=1", "train.probe.steps: Input should be greater than or equal to 2"),
])
def test_bad_probe_settings_are_one_line_before_any_run_directory(tmp_path, mnist_small, capsys, override, words):
    cfg = config(tmp_path, mnist_small, PROBE)
    assert main(["train", str(cfg), override, "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()


if "probe_test_hidden_noise" not in MODELS:
    @MODELS.register("probe_test_hidden_noise", context=CONTEXT)
    def _hidden_noise(in_channels: int, num_classes: int, input_size: tuple[int, int]) -> torch.nn.Module:
        """A user's model that draws training noise from a generator of its own, which no probe can rewind."""

        class Noisy(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.fc = torch.nn.Linear(in_channels * input_size[0] * input_size[1], num_classes)
                self.noise = torch.Generator().manual_seed(0)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                if self.training:
                    x = x + 0.1 * torch.randn(x.shape, generator=self.noise)
                return self.fc(x.flatten(1))

        return Noisy()


def test_a_model_the_probe_cannot_restore_is_refused(tmp_path, mnist_small, capsys):
    cfg = config(tmp_path, mnist_small, PROBE)
    assert main(["train", str(cfg), "model.name=probe_test_hidden_noise", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train.probe: this model keeps state the probe cannot restore" in err, err
    assert not (tmp_path / "runs").exists()
    assert main(["train", str(cfg), "model.name=probe_test_hidden_noise", "train.probe=null", "train.epochs=1",
                 "-q"]) == 0  # without the probe it trains
