"""Learning curves (`mode: learning_curve`): nested stratified subsets on real MNIST labels, the
power-law fit and its band, the per-size table with curves compared, a real study on MNIST whose
numbers are recomputed from results.csv, and bad input as one line."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import MNIST, read_idx, write_config
from scipy import stats as sps
from scipy.optimize import curve_fit

from cnnlab.cli import main
from cnnlab.config import DataConfig
from cnnlab.data.build import build_data
from cnnlab.data.split import nested_subset
from cnnlab.errors import DataError
from cnnlab.rundir import Run
from cnnlab.studies.learning_curve import analyse, fit_power_law
from cnnlab.studies.plan import build_plan
from cnnlab.studies.spec import load_study
from cnnlab.studies.stats import holm

# ----------------------------------------------------------------------------- nested subsets


def test_nested_subsets_on_real_mnist_labels():
    """The n-per-class subset of a seed is inside the larger ones' (one seeded order per class, the first n
    taken), every class gets exactly n, another seed draws other images, fractions nest the same way."""
    import torch

    y = torch.from_numpy(read_idx(MNIST / "train-labels-idx1-ubyte.gz").astype(np.int64))
    counts = np.bincount(y.numpy())
    for seed in (0, 1):
        subsets = [set(nested_subset(y, n, None, seed)) for n in (5, 50, 500)]
        for n, subset in zip((5, 50, 500), subsets):
            assert np.array_equal(np.bincount(y.numpy()[sorted(subset)], minlength=10), np.full(10, n))
        assert subsets[0] < subsets[1] < subsets[2]
    assert set(nested_subset(y, 50, None, 0)) != set(nested_subset(y, 50, None, 1))
    assert nested_subset(y, 50, None, 0) == nested_subset(y, 50, None, 0)  # seeded
    small, large = (set(nested_subset(y, None, f, 3)) for f in (0.1, 0.35))
    assert small < large
    got = np.bincount(y.numpy()[sorted(large)], minlength=10)
    assert np.array_equal(got, np.array([round(0.35 * c) for c in counts]))
    with pytest.raises(ValueError, match=f"{counts.min() + 1} is more than the {counts.min()} training images "
                                         f"of class {counts.argmin()}"):
        nested_subset(y, int(counts.min()) + 1, None, 0)


def test_sizes_are_drawn_after_the_validation_split(mnist_small):
    """Every size of a seed trains on a subset of the larger sizes' images and is measured on the very same
    validation images."""
    def bundle(n: int, seed: int = 0):
        return build_data(DataConfig(format="idx", path=str(mnist_small), val_fraction=0.25, train_per_class=n), seed)

    small, large = bundle(10), bundle(40)
    assert np.array_equal(np.bincount(small.train.y.numpy()), np.full(10, 10))
    assert small.val.x.shape[0] == 300 and bool((small.val.x == large.val.x).all())
    rows = lambda split: {bytes(img.numpy().tobytes()) for img in split.x}  # noqa: E731
    assert rows(small.train) <= rows(large.train) and len(rows(large.train)) == 400
    assert rows(bundle(10, seed=1).train) != rows(small.train)
    with pytest.raises(DataError, match=r"data\.train_per_class: 200 is more than the \d+ training images of class \d "
                                        r"\(after the validation split\); lower it"):
        bundle(200)


# ----------------------------------------------------------------------------- the fit


def test_power_law_fit_recovers_a_known_curve():
    rng = np.random.default_rng(7)
    a, b, c = 2.0, 0.5, 0.05
    sizes = np.repeat([10, 20, 40, 80, 160, 320], 5)
    errors = a * sizes ** -b + c + rng.normal(0, 0.004, len(sizes))
    fit = fit_power_law(list(sizes), list(errors))
    assert fit.floor and fit.dof == len(sizes) - 3 and "floor" in fit.note
    se = np.sqrt(np.diag(fit.cov))
    assert np.all(np.abs(fit.params - [a, b, c]) < 3 * se), (fit.params, se)
    grid = np.array([10, 50, 320])
    truth = a * grid ** -b + c
    covered = []
    for _ in range(200):  # the band is a 95% band: it covers the true curve in ~95% of datasets
        again = fit_power_law(list(sizes), list(a * sizes ** -b + c + rng.normal(0, 0.004, len(sizes))))
        lo, hi = again.band(grid)
        covered.append((lo < truth) & (truth < hi))
    coverage = np.mean(covered, axis=0)
    assert np.all((0.88 <= coverage) & (coverage <= 0.99)), coverage
    target = 0.1  # beyond the data: (a / (0.1 - c))^(1/b) = 1600
    n, low, high = fit.size_for(target)
    fa, fb, fc = fit.params
    assert n == pytest.approx((fa / (target - fc)) ** (1 / fb))
    assert low < 1600 < high and low < n < high
    assert math.isinf(fit.size_for(0.9 * fc)[0])  # below the floor: never

    three = fit_power_law([10] * 3 + [40] * 3 + [160] * 3, [0.6, 0.62, 0.61, 0.3, 0.31, 0.29, 0.16, 0.15, 0.15])
    assert not three.floor and three.note.startswith("no floor: 3 sizes are too few")
    p, _ = curve_fit(lambda x, a, b: a * x ** -b, np.repeat([10, 40, 160], 3),
                     [0.6, 0.62, 0.61, 0.3, 0.31, 0.29, 0.16, 0.15, 0.15], p0=[2, 0.5])
    assert three.params == pytest.approx(p, rel=1e-5)


# ----------------------------------------------------------------------------- curves compared


@pytest.fixture
def base(tmp_path, mnist_small) -> Path:
    return write_config(tmp_path / "base.yaml", {"format": "idx", "path": str(mnist_small), "val_fraction": 0.25},
                        model={"name": "cnn", "channels": [4], "norm": "batch"}, train={"epochs": 1, "batch_size": 50})


def study_file(tmp_path: Path, **spec) -> Path:
    path = tmp_path / "curve.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", "mode": "learning_curve", "out_dir": str(tmp_path / "studies"),
                                    "seeds": [0, 1], **spec}, sort_keys=False))
    return path


def test_a_curve_per_variant_compared_at_every_size(tmp_path, base):
    """With an axis, each level is a curve; at each size the other curves are compared with the first
    (paired by seed), Holm-corrected over every size and curve."""
    path = study_file(tmp_path, sizes=[10, 20, 40], seeds=[0, 1, 2], target=0.8, axes={"model.norm": ["batch", "none"]})
    plan = build_plan(load_study(path))
    assert [v.label for v in plan.variants][:3] == ["model.norm=batch, n=10/class", "model.norm=batch, n=20/class",
                                                    "model.norm=batch, n=40/class"]
    assert plan.variants[0].overrides == {"model.norm": "batch", "data.train_per_class": 10}
    acc = {("batch", 10): [0.60, 0.64, 0.61], ("batch", 20): [0.72, 0.70, 0.75], ("batch", 40): [0.80, 0.82, 0.81],
           ("none", 10): [0.50, 0.57, 0.52], ("none", 20): [0.66, 0.67, 0.69], ("none", 40): [0.79, 0.80, 0.81]}
    rows = [{"variant": v.label, "seed": s, "fold": None, "status": "completed",
             "val_acc": acc[(v.levels["model.norm"], v.size)][s]} for v in plan.variants for s in (0, 1, 2)]
    lc = analyse(plan, rows)
    assert [c.label for c in lc.curves] == ["model.norm=batch", "model.norm=none"]
    expected = [sps.ttest_rel(1 - np.array(acc[("none", n)]), 1 - np.array(acc[("batch", n)])).pvalue for n in (10, 20, 40)]
    got = [p.comparison.p for p in lc.curves[1].points]
    assert got == pytest.approx(expected, rel=1e-9)
    assert [p.p_holm for p in lc.curves[1].points] == pytest.approx(holm(expected), rel=1e-9)
    assert lc.curves[1].points[0].comparison.diff == pytest.approx(np.mean(acc[("batch", 10)]) - np.mean(acc[("none", 10)]))
    md = lc.to_markdown("t")
    assert "Δ model.norm=none vs model.norm=batch" in md and "| 40 |" in md
    answers = lc.answers()
    assert len(answers) == 2 and answers[0].startswith("Learning curve model.norm=batch: about ")
    assert "80.00% val acc (20.00% error)" in answers[0] and "(default target" not in answers[0]
    for c, answer in zip(lc.curves, answers):
        n = c.answer[0]
        assert (n > 40) == ("extrapolated beyond the largest size measured (40)" in answer)


# ----------------------------------------------------------------------------- a real study


@pytest.mark.slow
def test_learning_curve_study_on_mnist(tmp_path, base, capsys):
    path = study_file(tmp_path, sizes=[5, 10, 20], table=["val_acc"])
    assert main(["study", str(path)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    folder = tmp_path / "studies" / "curve"
    for name in ("learning_curve.md", "learning_curve.csv", "learning_curve.json", "learning_curve.png"):
        assert (folder / name).is_file(), name
    rows = list(csv.DictReader((folder / "results.csv").open()))
    assert len(rows) == 6 and all(r["status"] == "completed" for r in rows)
    vals = {}
    for r in rows:
        info = Run(folder / r["run"]).data_info
        n = int(r["variant"].split("=")[1].split("/")[0])
        assert info["class_counts"]["train"] == [n] * 10  # n images of every class
        vals.setdefault(int(r["seed"]), {})[n] = info["class_counts"]["val"]
        r["n"] = n
    assert all(len({json.dumps(v) for v in per.values()}) == 1 for per in vals.values())  # same val per seed
    table = {int(r["size"]): r for r in csv.DictReader((folder / "learning_curve.csv").open())}
    for n in (5, 10, 20):
        errors = [1 - float(r["val_acc"]) for r in rows if r["n"] == n]
        half = sps.t.ppf(0.975, 1) * np.std(errors, ddof=1) / math.sqrt(2)
        assert float(table[n]["val_error_mean"]) == pytest.approx(np.mean(errors), abs=1e-12)
        assert float(table[n]["ci_high"]) == pytest.approx(np.mean(errors) + half, abs=1e-12)
    x = np.array([r["n"] for r in rows], dtype=float)
    y = np.array([1 - float(r["val_acc"]) for r in rows])
    p, cov = curve_fit(lambda n, a, b: a * n ** -b, x, y, p0=[1, 0.3], bounds=([0, 0], [np.inf, 4]))
    saved = json.loads((folder / "learning_curve.json").read_text())
    fit = saved["curves"][0]["fit"]
    assert fit["model"] == "error = a·n^(-b)" and fit["note"].startswith("no floor: 3 sizes")
    assert [fit["params"]["a"], fit["params"]["b"]] == pytest.approx(p, rel=1e-4)
    assert np.array(fit["cov"]) == pytest.approx(cov, rel=1e-3)
    target = 0.9 * min(np.mean([v for xi, v in zip(x, y) if xi == 20]), 1.0)  # the default target
    assert saved["target"] == pytest.approx(target) and not saved["target_given"]
    n_target = (p[0] / target) ** (1 / p[1])
    assert saved["curves"][0]["size_for_target"]["n"] == pytest.approx(n_target, rel=1e-3)
    answer = saved["answers"][0]
    assert answer in out  # printed under the table
    assert ("extrapolated beyond the largest size measured (20)" in answer) == (n_target > 20)


# ----------------------------------------------------------------------------- bad input


def _smallest_class(mnist_small: Path) -> tuple[int, int]:
    """The smallest class and its count in mnist_small's training split less the seed-0 validation split."""
    bundle = build_data(DataConfig(format="idx", path=str(mnist_small), val_fraction=0.25), 0)
    counts = np.bincount(bundle.train.y.numpy())
    return int(counts.argmin()), int(counts.min())


@pytest.mark.parametrize("spec, says", [
    ({"sizes": "TOO_LARGE"}, "sizes: {n} images per class is more than class {k} ('{k}') has: {m} training images "
                             "after the validation split (data.val_fraction) (seed 0); keep sizes at or below {m}"),
    ({"sizes": [5, 10], "overrides": {"data.val_fraction": 0.0}},
     "mode: learning_curve measures val_acc on the val split, but {path} has no val split to measure on; set "
     "data.val_fraction > 0"),
    ({"sizes": [5, 0.5]}, "sizes: give whole numbers of images per class"),
    ({"sizes": [5]}, "sizes: a learning curve needs at least two sizes"),
    ({"sizes": [5, 5]}, "sizes: [5, 5] repeats a size"),
    ({"sizes": [5, 10], "metric": "train_acc"}, "metric: a learning curve measures held-out images"),
    ({"sizes": [5, 10], "target": 90}, "target: 90 is not an accuracy in (0, 1)"),
    ({"sizes": [5, 10], "mode": "grid", "axes": {"model.dropout": [0.1]}}, "sizes: only used with mode: learning_curve"),
    ({"sizes": [5, 10], "axes": {"size": [{"data.train_per_class": 3}]}}, "sets data.train_per_class, which sizes: sets"),
])
def test_bad_learning_curves_are_one_line_and_exit_2(tmp_path, base, mnist_small, capsys, spec, says):
    k, m = _smallest_class(mnist_small)
    if spec["sizes"] == "TOO_LARGE":
        spec = {**spec, "sizes": [5, m + 1]}
    path = study_file(tmp_path, **spec)
    assert main(["study", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    expected = says.format(n=m + 1, k=k, m=m, path=mnist_small)
    assert len(err.splitlines()) == 1 and expected in err and str(path) in err, err
    assert not (tmp_path / "studies").exists()  # nothing written
