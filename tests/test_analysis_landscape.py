"""`cnnlab analyze RUN landscape`: the honesty checks of a loss landscape on real runs.

Filter-normalised directions are orthogonal and keep the trained filters' norms; a trained
model sits at the bottom of its random-direction curve; filter normalisation makes the
curve blind to the BN scale symmetry while a raw Gaussian direction is not; the command end
to end on a CIFAR-10 BN CNN and on a NumPy-engine LeNet, and its refusal of --grid 0.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cnnlab.analysis.landscape import (
    Probe,
    cosine,
    directions,
    filter_norms,
    line_point,
    random_direction,
)
from cnnlab.analysis.subject import load
from cnnlab.cli import main
from cnnlab.training.losses import LOSSES

pytestmark = pytest.mark.slow

SMALL = ["--images", "256", "--steps", "7", "--grid", "5"]


def rows(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open()))


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        return im.size


@pytest.fixture(scope="module")
def subject(cifar_run):
    return load(cifar_run)


@pytest.fixture(scope="module")
def data(subject):
    """256 stratified training images, as the analysis takes them, and the run's loss."""
    _, split = subject.split("train")
    x, y = subject.batch(split, subject.stratified(split, 256, 0))
    return x, y, LOSSES.build(subject.cfg.loss, num_classes=len(subject.classes))


def curve(model: nn.Module, d: dict, alphas, data) -> np.ndarray:
    x, y, loss_fn = data
    probe = Probe(model, x, y, loss_fn, group=32, batch=256)
    out = []
    for a in alphas:
        probe.move(float(a), d)
        out.append(probe.evaluate())
    probe.restore()
    return np.array(out)


def conv_bn_pairs(model: nn.Module, x: torch.Tensor) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """Each conv whose output tensor is exactly the input of a BatchNorm2d (found by hooks)."""
    produced: dict[int, nn.Conv2d] = {}
    pairs = []
    hooks = [m.register_forward_hook(lambda m, i, o: produced.__setitem__(id(o), m))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_pre_hook(lambda m, i: pairs.append((produced[id(i[0])], m)) if id(i[0]) in produced else None)
              for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return pairs


def test_filter_normalised_directions_are_orthogonal_and_keep_filter_norms(subject):
    model = subject.network()
    d1, d2 = directions(model, seed=0)
    assert abs(cosine(d1, d2)) < 1e-6
    g = torch.Generator().manual_seed(0)
    raw1, raw2 = random_direction(model, g, "filter"), random_direction(model, g, "filter")
    assert abs(cosine(raw1, raw2)) > 1e-6  # the orthogonalisation is what makes it hold
    assert all(torch.equal(d1[k], raw1[k]) for k in d1)  # d1 is the plain filter-normalised draw
    for name, p in model.named_parameters():
        if p.dim() < 2:  # biases, BN weights and biases: left out of the directions
            assert not d1[name].any() and not d2[name].any(), name
            continue
        trained = filter_norms(p.detach())
        for d in (d1, d2):
            assert torch.allclose(filter_norms(d[name]), trained, rtol=1e-10, atol=0), name
    again = directions(model, seed=0)[1]
    assert all(torch.equal(again[k], d2[k]) for k in d2)  # seeded: the same directions every time


def test_trained_weights_sit_at_the_bottom_of_the_random_direction(subject, data):
    model = subject.network()
    d1, _ = directions(model, seed=0)
    alphas = np.linspace(-1, 1, 11)
    c = curve(model, d1, alphas, data)
    assert alphas[int(np.argmin(c[:, 0]))] == 0.0, c[:, 0]
    assert c[0, 0] > c[5, 0] + 2 * c[5, 1] and c[-1, 0] > c[5, 0] + 2 * c[5, 1]  # not a flat, noisy curve


def test_filter_normalisation_is_blind_to_the_bn_scale_symmetry(subject, data):
    """Every conv filter that feeds a BN layer is multiplied by 10. In eval mode BN divides by
    its running statistics, not the batch's, so the network's function is unchanged only when
    those statistics scale with the filters (running_mean x 10, running_var x 100, as training
    the scaled network would have found them); it then differs only through BN's eps
    (sqrt(100 v + eps) = 10 sqrt(v + eps/100)), far below the tolerance used. Scaling the
    filters without the statistics does change it. With the symmetry in place, the
    filter-normalised direction scales with the filters (10 d), so theta' + a d' =
    10 (theta + a d) and the curve stays within 2 SE of the original; a raw Gaussian direction
    of the same seed moves the scaled network 10 times less, and its curve changes."""
    x, _, _ = data
    model, scaled, naive = subject.network(), subject.network(), subject.network()
    pairs = {id(c): (c, b) for c, b in conv_bn_pairs(scaled, x[:8])}
    assert pairs
    with torch.no_grad():
        for conv, bn in pairs.values():
            conv.weight.mul_(10)
            if conv.bias is not None:
                conv.bias.mul_(10)
            bn.running_mean.mul_(10)
            bn.running_var.mul_(100)
        for conv, _ in conv_bn_pairs(naive, x[:8]):
            conv.weight.mul_(10)
        base, same, changed = model(x), scaled(x), naive(x)
    assert torch.allclose(same, base, rtol=1e-3, atol=1e-3), (same - base).abs().max()
    assert not torch.allclose(changed, base, rtol=1e-1, atol=1e-1)

    alphas = np.linspace(-1, 1, 5)
    c0 = curve(model, directions(model, seed=3)[0], alphas, data)
    c1 = curve(scaled, directions(scaled, seed=3)[0], alphas, data)
    assert np.all(np.abs(c1[:, 0] - c0[:, 0]) <= 2 * c0[:, 1]), (c0[:, 0], c1[:, 0], c0[:, 1])

    raw_alphas = np.linspace(-0.1, 0.1, 5)
    r0 = curve(model, random_direction(model, torch.Generator().manual_seed(3), "none"), raw_alphas, data)
    r1 = curve(scaled, random_direction(scaled, torch.Generator().manual_seed(3), "none"), raw_alphas, data)
    assert np.abs(r0[2, 0] - r1[2, 0]) <= 1e-3  # alpha 0: the same network
    assert np.max(np.abs(r1[:, 0] - r0[:, 0]) / r0[:, 1]) > 5, (r0[:, 0], r1[:, 0], r0[:, 1])
    rise0, rise1 = r0[[0, -1], 0] - r0[2, 0], r1[[0, -1], 0] - r1[2, 0]
    assert np.all(rise1 < rise0 / 2), (rise0, rise1)  # the scaled network looks flatter


def test_compiled_evaluation_is_the_eager_one(subject, data):
    """torch.compile (what a long landscape uses) sees the parameters and BN statistics the
    probe moves in place: the same numbers as eager at every kind of point."""
    x, y, loss_fn = data
    eager = Probe(subject.network(), x, y, loss_fn, group=32, batch=128)
    fast = Probe(subject.network(), x, y, loss_fn, group=32, batch=128)
    ok, how = fast.compile()
    assert ok, how
    d1, d2 = directions(eager.model, seed=1)
    init = subject.network("init")
    start = {k: v.detach() for k, v in init.named_parameters()}
    start_buf = {k: v.detach() for k, v in init.named_buffers()}
    for a, b in [(0.0, 0.0), (0.5, -0.3), (-1.0, 1.0)]:
        for probe in (eager, fast):
            probe.move(a, d1, b, d2)
        assert np.allclose(fast.evaluate(), eager.evaluate(), rtol=1e-5, atol=1e-6)
    for a in (0.0, 0.4, 1.25):
        for probe in (eager, fast):
            probe.place(*line_point(a, start, probe.base, start_buf, probe.base_buffers))
        assert np.allclose(fast.evaluate(), eager.evaluate(), rtol=1e-5, atol=1e-6)


def test_the_command_end_to_end(cifar_run, subject, capsys):
    before = {k: v.clone() for k, v in subject.model.state_dict().items()}
    code = main(["analyze", str(cifar_run), "landscape", *SMALL])
    out, err = capsys.readouterr()
    assert code == 0, err
    folder = cifar_run / "analysis" / "landscape"
    assert out.strip().splitlines()[-1] == str(folder)
    for name in ("lines.png", "contour.png", "surface.png"):
        assert png_size(folder / name)[0] > 500, name
    grid = rows(folder / "grid.csv")
    assert len(grid) == 25 and set(grid[0]) == {"alpha", "beta", "loss", "loss_se", "acc", "acc_se"}
    line = rows(folder / "line.csv")
    alphas = [float(r["alpha"]) for r in line]
    assert alphas[0] == -0.25 and alphas[-1] == 1.25 and 0.0 in alphas and 1.0 in alphas
    z = np.load(folder / "landscape.npz", allow_pickle=False)
    assert z["loss"].shape == z["acc"].shape == z["loss_se"].shape == (5, 5)
    assert np.all(z["loss_se"] > 0) and np.isfinite(z["loss"]).all() and abs(float(z["cosine"])) < 1e-6
    # The centre of the grid, alpha 0 on the random direction and alpha 1 on the line are
    # the trained network: one value, three ways.
    centre = z["loss"][2, 2]
    assert z["direction_loss"][3] == pytest.approx(centre, abs=1e-6)
    assert float(line[alphas.index(1.0)]["loss"]) == pytest.approx(centre, rel=1e-4)
    # alpha 0 on the line is the initial network: near chance for 10 classes
    assert float(line[alphas.index(0.0)]["loss"]) == pytest.approx(np.log(10), rel=0.15)
    report = json.loads((folder / "report.json").read_text())
    assert report["forward_passes"] == (len(line) + 7 + 25) * 256
    assert any(f.startswith("cost: ") for f in report["findings"])
    after = load(cifar_run).model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(before[k], v) for k, v in subject.model.state_dict().items())


def test_numpy_engine_run_and_a_run_without_init(scratch_run, cifar_run, tmp_path, capsys):
    code = main(["analyze", str(scratch_run), "landscape", *SMALL])
    _, err = capsys.readouterr()
    assert code == 0, err
    z = np.load(scratch_run / "analysis" / "landscape" / "landscape.npz", allow_pickle=False)
    assert np.isfinite(z["loss"]).all() and "line_loss" in z.files

    old = tmp_path / "old"
    shutil.copytree(cifar_run, old, ignore=shutil.ignore_patterns("init.*", "analysis"))
    code = main(["analyze", str(old), "landscape", *SMALL])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "init->final line: skipped" in out
    assert not (old / "analysis" / "landscape" / "line.csv").exists()
    assert png_size(old / "analysis" / "landscape" / "lines.png")


@pytest.mark.parametrize("args, message", [
    (["--grid", "0"], "--grid: Input should be greater than or equal to 3"),
    (["--grid", "1"], "--grid: Input should be greater than or equal to 3"),
    (["--steps", "2"], "--steps: Input should be greater than or equal to 3"),
    (["--span", "0"], "--span: Input should be greater than 0"),
])
def test_bad_options_are_one_line_and_write_nothing(cifar_run, tmp_path, capsys, args, message):
    run = tmp_path / "run"
    shutil.copytree(cifar_run, run, ignore=shutil.ignore_patterns("analysis"))
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    code = main(["analyze", str(run), "landscape", *args])
    _, err = capsys.readouterr()
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    assert not (run / "analysis" / "landscape").exists()
