"""A landscape-probe study on real CIFAR-10 images (BN vs no BN x two lrs x two seeds, runs with
train.probe): `cnnlab study` writes the three probe figures and the probe table, and every
number in the table is recomputed here from the runs' probe.csv read by hand."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import write_config
from scipy import stats

from cnnlab.cli import main

pytestmark = pytest.mark.slow  # eight one-epoch runs of a tiny VGG, about 25 s
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def study(tmp_path_factory, cifar_zip_small) -> Path:
    folder = tmp_path_factory.mktemp("probe-study")
    write_config(folder / "base.yaml", {"format": "image_folder", "path": str(cifar_zip_small), "val_fraction": 0.0},
                 model={"name": "small_vgg", "hidden_channels": [4, 8], "hidden_neurons": [16, 16],
                        "convs_per_stage": 1, "bias": "always"},
                 optim={"name": "sgd", "lr": 0.1, "momentum": 0.0},
                 train={"epochs": 1, "batch_size": 32, "threads": 1, "probe": {"every": 4, "steps": 3}})
    path = folder / "s.yaml"
    path.write_text(yaml.safe_dump({
        "base": "base.yaml", "mode": "grid", "seeds": [0, 1], "metric": "test_acc", "out_dir": str(folder / "studies"),
        "axes": {"batch_norm": {"bn": {"model.conv_bn": True, "model.fc_bn": True},
                                "no_bn": {"model.conv_bn": False, "model.fc_bn": False}},
                 "optim.lr": [0.05, 0.2]}}, sort_keys=False))
    assert main(["study", str(path)]) == 0
    return folder / "studies" / "s"


def by_hand(run: Path) -> dict[str, float]:
    """Median over the probed steps of the band, the max gradient change and the max beta."""
    per: dict[int, list[dict]] = {}
    with open(run / "probe.csv") as f:
        for r in csv.DictReader(f):
            per.setdefault(int(r["step"]), []).append(r)
    band = [max(float(r["loss"]) for r in rs) - min(float(r["loss"]) for r in rs) for rs in per.values()]
    grad = [max(float(r["grad_change"]) for r in rs) for rs in per.values()]
    beta = [max(float(r["beta"]) for r in rs) for rs in per.values()]
    assert sorted(per) == [1, 5, 9, 13]  # 400 images in batches of 32: 13 steps, probed from the first
    return {"band": float(np.median(band)), "grad_change": float(np.median(grad)), "beta": float(np.median(beta))}


def test_the_probe_study_draws_its_figures(study):
    for name in ("probe-loss.png", "probe-grad-change.png", "probe-beta.png"):
        data = (study / name).read_bytes()
        assert data[:8] == PNG and len(data) > 20_000, name
    text = (study / "probe_table.md").read_text()
    assert "| optim.lr=0.05 | bn / no_bn | 2 pairs |" in text and "| all (pooled) | bn / no_bn | 4 pairs |" in text


def test_the_probe_table_is_the_runs_probe_csv(study):
    runs = {}
    with open(study / "results.csv") as f:
        for r in csv.DictReader(f):
            assert r["status"] == "completed"
            runs[(r["batch_norm"], r["optim.lr"], int(r["seed"]))] = by_hand(study / r["run"])
    with open(study / "probe_table.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4 + 2 + 1  # 2 lrs x 2 variants, a contrast per lr, the pooled contrast
    for q in ("band", "grad_change", "beta"):
        for row in [r for r in table if "/" not in r["variant"]]:
            values = [runs[(row["variant"], row["setting"].split("=")[1], s)][q] for s in (0, 1)]
            assert float(row[f"{q}_median"]) == pytest.approx(np.median(values), rel=1e-9)
            # Two seeds: the bootstrap interval of the median spans exactly the two values.
            assert float(row[f"{q}_ci_low"]) == pytest.approx(min(values), rel=1e-9)
            assert float(row[f"{q}_ci_high"]) == pytest.approx(max(values), rel=1e-9)
        for row in [r for r in table if "/" in r["variant"]]:
            lrs = ["0.05", "0.2"] if row["setting"] == "(pooled)" else [row["setting"].split("=")[1]]
            bn = [runs[("bn", lr, s)][q] for lr in lrs for s in (0, 1)]
            plain = [runs[("no_bn", lr, s)][q] for lr in lrs for s in (0, 1)]
            logs = np.log(bn) - np.log(plain)
            assert float(row[f"{q}_ratio"]) == pytest.approx(math.exp(logs.mean()), rel=1e-9)
            assert float(row[f"{q}_p"]) == pytest.approx(stats.ttest_rel(np.log(bn), np.log(plain)).pvalue, rel=1e-9)
