"""Adaptive seeds (`seeds: {min, max, precision}`): Stein's two-stage rule decided from the storage,
honest p-values (false positives measured by simulation), several workers and a killed one, and a
real study on MNIST whose seed counts, CIs and p-values are recomputed by hand."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import write_config
from optuna.trial import TrialState
from scipy import stats as sps

from cnnlab import lease
from cnnlab.cli import main
from cnnlab.studies.adaptive import outlier_notes, results_by_key, seed_counts, wanted_units
from cnnlab.studies.launch import open_study
from cnnlab.studies.plan import build_plan, run_key
from cnnlab.studies.spec import load_study
from cnnlab.studies.store import key_of, winners
from cnnlab.studies.table import VariantInfo, build_table
from cnnlab.studies.worker import Worker

ALPHA = 0.05


@pytest.fixture
def base(tmp_path, mnist_small) -> Path:
    return write_config(tmp_path / "base.yaml", {"format": "idx", "path": str(mnist_small), "limit_train": 240,
                                                 "val_fraction": 0.25},
                        model={"name": "cnn", "channels": [4], "norm": "batch"}, train={"epochs": 1, "batch_size": 60})


def study_file(tmp_path: Path, seeds: dict, name: str = "adaptive", **extra) -> Path:
    path = tmp_path / f"{name}.yaml"
    spec = {"base": "base.yaml", "mode": "ablation", "out_dir": str(tmp_path / "studies"), "seeds": seeds,
            "axes": {"model.dropout": [0.0, 0.3, 0.6]}, **extra}  # 0.0 is the base's value: base + 2 variants
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


# ----------------------------------------------------------------------------- honesty, by simulation


def _naive_false_positives(rng: np.random.Generator, reps: int, rule: dict, sd_seed: float, sd_noise: float) -> float:
    """The tempting procedure: add seeds one at a time until the ordinary t CI of the paired difference
    is narrow enough, then an ordinary paired t-test (vectorised over the repetitions)."""
    n_max, n_min = rule["max"], rule["min"]
    seed_effect = rng.normal(0, sd_seed, (reps, n_max))
    d = (seed_effect + rng.normal(0, sd_noise, (reps, n_max))) - (seed_effect + rng.normal(0, sd_noise, (reps, n_max)))
    n = np.full(reps, n_max)
    for k in range(n_max - 1, n_min - 1, -1):  # the first k whose CI is narrow enough wins
        half = sps.t.ppf(0.975, k - 1) * d[:, :k].std(axis=1, ddof=1) / math.sqrt(k)
        n = np.where(half <= rule["precision"], k, n)
    mask = np.arange(n_max)[None, :] < n[:, None]
    mean = (d * mask).sum(axis=1) / n
    sd = np.sqrt((((d - mean[:, None]) * mask) ** 2).sum(axis=1) / (n - 1))
    p = 2 * sps.t.sf(np.abs(mean) * np.sqrt(n) / sd, n - 1)
    return float((p < ALPHA).mean())


def test_steins_rule_keeps_false_positives_at_alpha_where_naive_stopping_does_not(tmp_path, base):
    """Under the null (every variant as good as the base, seeds shared), the whole procedure as the study
    runs it (seed_counts on a real plan, the table's Stein tests) rejects at most ~5% of the time, and its
    CIs cover the true mean ~95% of the time; stopping on the ordinary CI's width inflates the same test."""
    rule = {"min": 3, "max": 12, "precision": 0.01}
    plan = build_plan(load_study(study_file(tmp_path, rule)))
    labels = [v.label for v in plan.variants]
    assert labels == ["base", "model.dropout=0.3", "model.dropout=0.6"]
    infos = [VariantInfo(v.label, {}, v.is_base) for v in plan.variants]
    pilot = {(s, None) for s in plan.seeds[:3]}
    rng = np.random.default_rng(20261207)
    reps, sd_seed, sd_noise = 1000, 0.004, 0.008  # the difference's spread ~ 1.1 x precision: counts vary 3..12
    rejected = covered = intervals = 0
    used: list[int] = []
    for _ in range(reps):
        values = 0.9 + rng.normal(0, sd_seed, 12)[None, :] + rng.normal(0, sd_noise, (3, 12))
        results: dict[str, list[dict]] = {}
        while True:  # what the workers do: run what is wanted, look again, until nothing new is wanted
            missing = [u for u in wanted_units(plan, results) if u.key not in results]
            if not missing:
                break
            for u in missing:
                results[u.key] = [{"status": "completed", "val_acc": float(values[labels.index(u.variant.label), u.seed])}]
        rows = [{"variant": v.label, "seed": s, "fold": None, "status": "completed", "val_acc": results[run_key(v.key, s, None)][0]["val_acc"]}
                for v in plan.variants for s in plan.seeds if run_key(v.key, s, None) in results]
        table = build_table(rows, infos, ["val_acc"], [], "base", True, pilot)
        for r in table.rows:
            s = r.cells["val_acc"].summary
            intervals += 1
            covered += s.ci_low <= 0.9 <= s.ci_high
            if not r.info.is_base:
                rejected += r.cells["val_acc"].comparison.p < ALPHA
        used += [r.n for r in table.rows]
    false_positives = rejected / (2 * reps)
    assert false_positives <= 0.06, false_positives
    assert 0.93 <= covered / intervals <= 0.97, covered / intervals
    assert 3 <= min(used) and max(used) == 12 and len(set(used)) >= 5  # the counts really adapt
    naive = _naive_false_positives(rng, 20000, rule, sd_seed, sd_noise)
    assert naive >= 0.07, naive  # the simulation sees inflation when there is some
    print(f"false positives: Stein {false_positives:.3f}, naive sequential {naive:.3f}; "
          f"CI coverage {covered / intervals:.3f}; seeds used {np.mean(used):.1f} on average")


def test_seed_counts_follow_steins_formula(tmp_path, base):
    rule = {"min": 3, "max": 8, "precision": 0.01}
    plan = build_plan(load_study(study_file(tmp_path, rule)))
    base_v, small, large = plan.variants
    pilot = {0: (0.90, 0.905, 0.91), 1: (0.902, 0.906, 0.911), 2: (0.80, 0.70, 0.90)}  # base, tight, very noisy
    results = {}
    for i, v in enumerate(plan.variants):
        for s, x in enumerate(pilot[i][:2]):
            results[run_key(v.key, s, None)] = [{"status": "completed", "val_acc": x}]
    counts = seed_counts(plan, results)
    assert all(c.wanted == 3 and not c.decided for c in counts.values())  # pilot still running
    for i, v in enumerate(plan.variants):
        results[run_key(v.key, 2, None)] = [{"status": "completed", "val_acc": pilot[i][2]}]
    counts = seed_counts(plan, results)
    q = sps.t.ppf(0.975, 2)
    own = np.std(pilot[1], ddof=1)
    diff = np.std(np.subtract(pilot[1], pilot[0]), ddof=1)
    expected = max(3, math.ceil((q * max(own, diff) / 0.01) ** 2))
    assert expected < 8 and counts[small.label].wanted == expected
    assert counts[small.label].reason == "precision ±0.01"
    assert counts[large.label].wanted == 8 and counts[large.label].reason.startswith("max 8 (±0.01 needs ")
    assert counts[base_v.label].wanted == 8 and counts[base_v.label].reason == "paired with the variants"
    assert len(wanted_units(plan, results)) == expected + 8 + 8


def test_a_later_seed_far_outside_the_pilot_is_pointed_out(tmp_path, base):
    rule = {"min": 3, "max": 8, "precision": 0.01}
    plan = build_plan(load_study(study_file(tmp_path, rule)))
    rng = np.random.default_rng(0)

    def results_for(values: dict[int, np.ndarray]) -> dict:
        return {run_key(v.key, s, None): [{"status": "completed", "val_acc": float(x)}]
                for i, v in enumerate(plan.variants) for s, x in enumerate(values[i])}

    values = {i: 0.9 + 0.005 * rng.standard_normal(6) for i in range(3)}
    assert outlier_notes(plan, results_for(values)) == []
    values[1][4] = 0.11  # a seed after the pilot that collapsed
    notes = outlier_notes(plan, results_for(values))
    assert len(notes) == 1 and plan.variants[1].label in notes[0] and "seed 4 0.1100" in notes[0]
    pilot = values[1][:3]
    m = 3 * 3  # three later seeds of three variants
    half = sps.t.ppf(1 - 0.05 / (2 * m), 2) * np.std(pilot, ddof=1) * np.sqrt(1 + 1 / 3)
    assert f"[{pilot.mean() - half:.4f}, {pilot.mean() + half:.4f}]" in notes[0] and "over the study's 9 later" in notes[0]

    # Normal noise of any size: a study gets a warning with probability at most 5% (Bonferroni).
    warned = 0
    for _ in range(400):
        sd = rng.uniform(0.001, 0.05)
        noisy = {i: 0.8 + sd * rng.standard_normal(8) for i in range(3)}
        warned += bool(outlier_notes(plan, results_for(noisy)))
    assert warned / 400 < 0.05 + 3 * math.sqrt(0.05 * 0.95 / 400)


# ----------------------------------------------------------------------------- the queue


def _worker(path: Path) -> Worker:
    opened = open_study(path, [], None)
    return Worker(opened.plan, opened.store, opened.folder, on_result=lambda: None, say=lambda s: None)


def _value(label: str, seed: int) -> float:
    """A run's val_acc, fixed by its variant and seed (what a deterministic run would give)."""
    wave = (7 * seed) % 5
    return {"base": 0.90 + 0.004 * wave, "model.dropout=0.3": 0.905 + 0.004 * wave + 0.001 * (seed % 2),
            "model.dropout=0.6": 0.80 + 0.012 * wave}[label]


def test_two_workers_and_a_killed_one_run_each_wanted_seed_once(tmp_path, base):
    """Workers claim in turn from one journal; one claims a pilot run and dies (kill -9: its lease names a
    gone process). Every seed the rule wants runs exactly once, and the counts are those the finished
    results ask for."""
    path = study_file(tmp_path, {"min": 3, "max": 6, "precision": 0.016})
    w1, w2 = _worker(path), _worker(path)
    w1.prepare()
    assert len(w1.store.trials()) == 9  # the pilot: 3 variants x 3 seeds
    died = w2._next()
    gone = {**lease.new_lease(), "pid": _dead_pid(), "start": None}
    w2.store.storage.set_trial_user_attr(w2.store.tid(died.number), "lease", gone)
    w2.store.holding = None
    turns = 0
    while True:
        w = (w1, w2)[turns % 2]
        claim = w._next()
        if claim is None:
            other = (w1, w2)[(turns + 1) % 2]._next()
            if other is None:
                break
            claim, w = other, (w1, w2)[(turns + 1) % 2]
        unit = claim.units[0]
        row = {"status": "completed", "val_acc": _value(unit.variant.label, unit.seed), "seed": unit.seed}
        assert w.store.finish(claim.number, {"state": "COMPLETE", "value": row["val_acc"], "rows": [row]})
        turns += 1
    trials = w1.store.trials()
    results = results_by_key(trials)
    wanted = {u.key for u in wanted_units(w1.plan, results)}
    assert set(winners(trials)) == wanted
    recorded = [key_of(t) for t in trials if "result" in t.user_attrs and "duplicate" not in t.user_attrs]
    assert sorted(recorded) == sorted(wanted)  # each once, the killed pilot run included (run again)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert any("lost" in t.user_attrs for t in trials)
    counts = seed_counts(w1.plan, results)
    assert counts["model.dropout=0.6"].wanted == 6 and counts["base"].wanted == 6  # noisy: max, base paired
    assert 3 <= counts["model.dropout=0.3"].wanted < 6
    assert len(wanted) == 6 + 6 + counts["model.dropout=0.3"].wanted


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    time.sleep(0.01)
    return proc.pid


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("seeds, extra, says", [
    ({"min": 4, "max": 3, "precision": 0.005}, {}, "seeds: max (3) is below min (4); give max >= min"),
    ({"min": 2, "max": 5}, {}, "seeds: precision is missing"),
    ({"min": 2, "max": 5, "precision": 0.01, "precison": 1}, {}, "seeds: unknown key 'precison'"),
    ({"min": 1, "max": 5, "precision": 0.01}, {}, "seeds: min: Input should be greater than or equal to 2"),
    ({"min": 2, "max": 5, "precision": 0.01}, {"cv": 3}, "adaptive seeds count independent runs"),
])
def test_bad_adaptive_seeds_are_one_line_and_exit_2(tmp_path, base, capsys, seeds, extra, says):
    path = study_file(tmp_path, seeds, **extra)
    assert main(["study", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err and str(path) in err, err
    assert not (tmp_path / "studies").exists()  # nothing written


# ----------------------------------------------------------------------------- a real study


@pytest.mark.slow
def test_adaptive_study_on_mnist_matches_steins_numbers_by_hand(tmp_path, base, capsys):
    path = study_file(tmp_path, {"min": 2, "max": 3, "precision": 0.05}, table=["val_acc"],
                      axes={"model.dropout": [0.0, 0.5]})
    assert main(["study", str(path)]) == 0, capsys.readouterr().err
    folder = tmp_path / "studies" / "adaptive"
    rows = list(csv.DictReader((folder / "results.csv").open()))
    by = {}
    for r in rows:
        assert r["status"] == "completed"
        by.setdefault(r["variant"], {})[int(r["seed"])] = float(r["val_acc"])
    assert all(sorted(v) == list(range(len(v))) for v in by.values())  # each a prefix of the seeds
    q = sps.t.ppf(0.975, 1)
    ref = by["base"]
    wanted = {}
    for label, values in by.items():
        if label == "base":
            continue
        spreads = [np.std([values[0], values[1]], ddof=1), np.std([values[s] - ref[s] for s in (0, 1)], ddof=1)]
        need = math.inf if min(spreads) == 0 else max(2, *(math.ceil((q * s / 0.05) ** 2) for s in spreads))
        wanted[label] = min(need, 3)
        assert len(values) == wanted[label], (label, values)
    assert len(ref) == max(wanted.values()) or len(ref) == 3
    table = {r["variant"]: r for r in csv.DictReader((folder / "table.csv").open())}
    for label, values in by.items():
        x = np.array([values[s] for s in sorted(values)])
        half = q * np.std(x[:2], ddof=1) / math.sqrt(len(x))
        t = table[label]
        assert int(t["n"]) == len(x) and t["seeds"].startswith(f"{len(x)}: ")
        assert float(t["val_acc_mean"]) == pytest.approx(x.mean(), abs=1e-12)
        if half > 0:
            assert float(t["val_acc_ci_low"]) == pytest.approx(x.mean() - half, abs=1e-12)
        if label != "base":
            d = np.array([values[s] - ref[s] for s in sorted(values)])
            sd = np.std(d[:2], ddof=1)
            assert float(t["val_acc_diff"]) == pytest.approx(d.mean(), abs=1e-12)
            if sd > 0:
                p = 2 * sps.t.sf(abs(d.mean()) * math.sqrt(len(d)) / sd, 1)
                assert float(t["val_acc_p"]) == pytest.approx(p, rel=1e-9) and t["val_acc_test"] == "Stein"
            else:  # identical pilot differences: no spread, no test
                assert t["val_acc_p"] == ""
    md = (folder / "table.md").read_text()
    assert "seeds: why stopped" in md and "Stein's two-stage procedure" in md
    assert "adaptive seeds 0.. (2 to 3, 95% CI ±0.05)" in md
