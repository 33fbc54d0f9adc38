"""`cnnlab study` end to end with real tiny trainings on an MNIST slice."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from conftest import write_config
from scipy import stats as sps

from cnnlab.cli import main

pytestmark = pytest.mark.slow

PNG = b"\x89PNG\r\n\x1a\n"


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def base(tmp_path, mnist_small) -> Path:
    """One epoch of a one-stage CNN on 180 MNIST images (60 validation, 300 test)."""
    return write_config(tmp_path / "base.yaml",
                        {"format": "idx", "path": str(mnist_small), "limit_train": 240, "val_fraction": 0.25},
                        model={"name": "cnn", "channels": [4], "norm": "batch"},
                        train={"epochs": 1, "batch_size": 60})


def write_study(tmp_path: Path, **spec) -> Path:
    path = tmp_path / f"{spec.pop('file', 'study')}.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", "out_dir": str(tmp_path / "studies"), **spec}, sort_keys=False))
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open()))


def journal_trials(folder: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(folder / "optuna-journal.log")))
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


ABLATION = {
    "mode": "ablation",
    "seeds": [0, 1],
    "axes": {
        "model.dropout": [0.0, 0.5],  # 0.0 is the base
        "optimizer": {"adam": {"optim.name": "adam", "optim.lr": 0.01}},
        "broken": {"too_deep": {"model.channels": [4, 4, 4, 4, 4, 4]}},  # six poolings of 28 px: fails
        "diverge": {"huge_lr": {"model.norm": "none", "model.activation": "tanh", "optim.lr": 1.0e38}},
    },
}


def test_ablation_table_statistics_reruns_and_added_seeds(tmp_path, base, capsys):
    path = write_study(tmp_path, file="abl", **ABLATION)
    code, out, err = run(capsys, "study", path)
    assert code == 0, err
    folder = Path(out.strip().splitlines()[-1])
    assert folder == tmp_path / "studies" / "abl"

    rows = read_csv(folder / "results.csv")
    assert len(rows) == 10 and len({r["key"] for r in rows}) == 10
    status = {(r["variant"], r["seed"]): r["status"] for r in rows}
    for v in ("base", "model.dropout=0.5", "optimizer=adam"):
        assert status[(v, "0")] == status[(v, "1")] == "completed"
    broken = [r for r in rows if r["variant"] == "broken=too_deep"]
    assert [r["status"] for r in broken] == ["failed", "failed"] and "cannot take 1x28x28" in broken[0]["reason"]
    diverged = [r for r in rows if r["variant"] == "diverge=huge_lr"]
    assert [r["status"] for r in diverged] == ["diverged", "diverged"] and "loss became nan" in diverged[0]["reason"]
    for r in rows:
        if r["status"] == "completed":
            summary = json.loads((folder / r["run"] / "summary.json").read_text())
            assert float(r["val_acc"]) == summary["val_acc"] and float(r["test_acc"]) == summary["test_acc"]
            assert int(r["params"]) == summary["params"] and r["epochs"] == "1"
            assert float(r["best_val_acc"]) >= float(r["final_val_acc"]) - 1e-12
    assert {r["model.dropout"] for r in rows if r["variant"] == "base"} == {"0"}  # the base's value

    # The full table: n, mean, std, CI and the paired test against the base, from the rows above.
    table = {r["variant"]: r for r in read_csv(folder / "table_full.csv")}
    acc = {v: np.array([float(r["val_acc"]) for r in sorted(rows, key=lambda r: r["seed"])
                        if r["variant"] == v and r["status"] == "completed"]) for v in table}
    # Ranked by the mean val_acc, best first; the variants without a completed run last, in file order.
    ranked = sorted(("base", "model.dropout=0.5", "optimizer=adam"), key=lambda v: -acc[v].mean())
    assert list(table) == [*ranked, "broken=too_deep", "diverge=huge_lr"]
    assert [r["variant"] for r in rows] == [v for v in table for _ in range(2)]  # results.csv ranked alike
    for v in ("base", "model.dropout=0.5", "optimizer=adam"):
        assert table[v]["n"] == "2"
        assert float(table[v]["val_acc_mean"]) == pytest.approx(acc[v].mean())
        assert float(table[v]["val_acc_std"]) == pytest.approx(acc[v].std(ddof=1))
    for v in ("model.dropout=0.5", "optimizer=adam"):
        assert float(table[v]["val_acc_diff"]) == pytest.approx(acc[v].mean() - acc["base"].mean())
        if table[v]["val_acc_p"]:  # empty only when both seeds differ by exactly the same amount
            assert float(table[v]["val_acc_p"]) == pytest.approx(sps.ttest_rel(acc[v], acc["base"]).pvalue)
        assert table[v]["val_acc_test"] == "paired"
    assert (table["broken=too_deep"]["n"], table["broken=too_deep"]["failed"]) == ("0", "2")
    assert (table["diverge=huge_lr"]["n"], table["diverge=huge_lr"]["diverged"]) == ("0", "2")
    full = (folder / "table_full.md").read_text()
    assert "| broken=too_deep | broken | too_deep | 0 | 2 failed |" in full and "2 diverged" in full
    md = (folder / "table.md").read_text()  # the compact table, as printed
    assert "| - | broken=too_deep | n/a | n/a | n/a | n/a | 0 | n/a | 2 failed |" in md and "| 2 diverged |" in md
    assert "6 done, 0 running, 4 failed, 0 left (of 10)" in md and md in out
    for name in ("bar-model.dropout.png", "bar-optimizer.png", "bar-broken.png", "curves.png", "table.png",
                 "table.tex", "table_full.tex"):
        assert (folder / name).stat().st_size > 1000
    assert (folder / "curves.png").read_bytes()[:8] == PNG
    assert not list(folder.glob(".*.tmp"))

    # --status: the same numbers, nothing run.
    code, out, _ = run(capsys, "study", path, "--status")
    assert code == 0 and "6 done, 0 running, 4 failed, 0 left (of 10)" in out and " seed 0: " not in out
    # Running it again repeats nothing.
    stamps = {r["run"]: (folder / r["run"] / "summary.json").stat().st_mtime_ns for r in rows if r["run"]}
    code, out, _ = run(capsys, "study", path)
    assert code == 0 and " seed " not in out
    assert len(journal_trials(folder, "abl")) == 10
    assert read_csv(folder / "results.csv") == rows

    # A third seed: only its five runs train; the first ten stay as they were.
    path.write_text(path.read_text().replace("seeds:\n- 0\n- 1\n", "seeds:\n- 0\n- 1\n- 2\n"))
    code, out, err = run(capsys, "study", path)
    assert code == 0, err
    assert out.count(" seed 2: ") == 5 and " seed 0: " not in out
    again = read_csv(folder / "results.csv")
    assert len(again) == 15 and len({r["key"] for r in again}) == 15
    assert {r["run"]: (folder / r["run"] / "summary.json").stat().st_mtime_ns for r in rows if r["run"]} == stamps
    assert next(r for r in read_csv(folder / "table.csv") if r["variant"] == "base")["n"] == "3"
    assert [r["variant"] for r in again] == [r["variant"] for r in read_csv(folder / "table.csv") for _ in range(3)]
    # A different base under the same study name would mix incomparable runs: refused.
    code, _, err = run(capsys, "study", path, "train.epochs=2")
    assert code == 2 and "changed since study 'abl' started" in err and err.count("\n") == 1


def test_grid_with_cross_validation(tmp_path, base, capsys):
    path = write_study(tmp_path, file="cv", mode="grid", cv=2, metric="val_loss",
                       axes={"model.dropout": [0.0, 0.5], "optim.lr": [0.05]})
    code, out, err = run(capsys, "study", path)
    assert code == 0, err
    folder = tmp_path / "studies" / "cv"
    rows = read_csv(folder / "results.csv")
    # Ranked: the variant with the lower mean val_loss first, then by fold.
    loss = {d: np.array([float(r["val_loss"]) for r in rows if r["model.dropout"] == d]) for d in ("0", "0.5")}
    first, second = sorted(loss, key=lambda d: loss[d].mean())
    assert [(r["model.dropout"], r["fold"], r["rank"]) for r in rows] == [
        (first, "0", "1"), (first, "1", "1"), (second, "0", "2"), (second, "1", "2")]
    data = json.loads((folder / rows[1]["run"] / "data.json").read_text())
    assert data["val_source"] == "fold" and data["sizes"] == {"train": 120, "val": 120, "test": 300}
    cfg = yaml.safe_load((folder / rows[1]["run"] / "config.yaml").read_text())
    assert (cfg["data"]["folds"], cfg["data"]["fold"]) == (2, 1)
    # The base (dropout 0) is a grid cell, so it is the reference; runs pair by fold.
    table = {r["variant"]: r for r in read_csv(folder / "table_full.csv")}
    ref, other = table["model.dropout=0, optim.lr=0.05"], table["model.dropout=0.5, optim.lr=0.05"]
    assert ref["reference"] == "True" and other["val_loss_test"] == "paired"
    assert float(other["val_loss_diff"]) == pytest.approx(loss["0.5"].mean() - loss["0"].mean())
    assert float(other["val_loss_p"]) == pytest.approx(sps.ttest_rel(loss["0.5"], loss["0"]).pvalue)
    best = "model.dropout=0.5, optim.lr=0.05" if loss["0.5"].mean() < loss["0"].mean() else "model.dropout=0, optim.lr=0.05"
    assert table[best]["val_loss_best"] == "True"  # lowest loss is best
    assert (folder / "heatmap.png").read_bytes()[:8] == PNG and (folder / "bar-model.dropout.png").is_file()


def test_search_with_pruning(tmp_path, base, capsys):
    path = write_study(tmp_path, file="search", mode="search", overrides={"train.epochs": 2},
                       search={"n_trials": 5, "sampler": "random", "pruner": "median", "startup_trials": 1,
                               "warmup_epochs": 0, "seed": 6,
                               "params": {"optim.lr": [0.1, 1.0e-7], "model.dropout": {"low": 0.0, "high": 0.5}}})
    code, out, err = run(capsys, "study", path)
    assert code == 0, err
    folder = tmp_path / "studies" / "search"
    rows = read_csv(folder / "results.csv")
    trials = {t.number: t for t in journal_trials(folder, "search")}
    assert len(rows) == 5 and sorted(int(r["trial"]) for r in rows) == list(range(5))
    for r in rows:
        assert r["optim.lr"] in ("0.1", "1e-07") and 0.0 <= float(r["model.dropout"]) <= 0.5
        t = trials[int(r["trial"])]
        cfg = yaml.safe_load((folder / r["run"] / "config.yaml").read_text())
        assert cfg["optim"]["lr"] == t.params["optim.lr"] and cfg["model"]["dropout"] == t.params["model.dropout"]
        if r["status"] == "pruned":
            assert t.state == optuna.trial.TrialState.PRUNED and sorted(t.intermediate_values) == list(range(1, int(r["epochs"]) + 1))
            assert t.intermediate_values[int(r["epochs"])] == pytest.approx(float(r["final_val_acc"]))
        else:
            assert r["status"] == "completed" and r["epochs"] == "2"
            assert t.state == optuna.trial.TrialState.COMPLETE and t.value == pytest.approx(float(r["val_acc"]))
    # Seed 6 samples lr 0.1, 1e-7, 0.1, 0.1, 1e-7. Trial 0 always completes (one start-up trial);
    # each 1e-7 trial learns nothing and is stopped after its first epoch, below trial 0's.
    by_trial = {int(r["trial"]): r for r in rows}
    assert by_trial[0]["status"] == "completed" and by_trial[0]["optim.lr"] == "0.1"
    for n in (1, 4):
        assert (by_trial[n]["optim.lr"], by_trial[n]["status"], by_trial[n]["epochs"]) == ("1e-07", "pruned", "1")
    table = read_csv(folder / "table_full.csv")
    assert table[0]["reference"] == "True" and table[0]["val_acc_best"] == "True"  # best trial first
    scored = [r for r in table if r["val_acc_mean"]]  # pruned trials have no completed run: unranked, last
    assert [r["rank"] for r in table] == [str(i) for i in range(1, len(scored) + 1)] + [""] * (5 - len(scored))
    means = [float(r["val_acc_mean"]) for r in scored]
    assert means == sorted(means, reverse=True)
    assert (folder / "history.png").read_bytes()[:8] == PNG
    complete = sum(r["status"] == "completed" for r in rows)
    assert (folder / "importance.png").is_file() == (complete >= 3)


def test_bad_input_is_one_line_and_creates_nothing(tmp_path, base, capsys):
    path = write_study(tmp_path, file="bad", mode="grid", axes={"model.dropuot": [0.1]})
    code, _, err = run(capsys, "study", path)
    assert code == 2 and err.count("\n") == 1 and "did you mean 'model.dropout'" in err
    # The metric needs a validation split that this data does not have.
    path = write_study(tmp_path, file="noval", mode="grid", overrides={"data.val_fraction": 0.0},
                       axes={"model.dropout": [0.1]})
    code, _, err = run(capsys, "study", path)
    assert code == 2 and "metric: 'val_acc' needs a val split" in err and err.count("\n") == 1
    code, out, _ = run(capsys, "study", write_study(tmp_path, file="fresh", mode="grid", axes={"model.dropout": [0.1]}), "--status")
    assert code == 0 and "not started (1 to run)" in out
    assert not (tmp_path / "studies").exists()


def test_a_run_cut_short_is_resumed_and_a_finished_one_reused(tmp_path, base):
    """What a rerun finds in a run folder: last.pt of a killed run (resume), a finished run (reuse)."""
    from cnnlab.resolve import load_config
    from cnnlab.studies.execute import previous, run_unit

    cfg = load_config(base, ["train.epochs=2"])
    whole = run_unit(cfg, tmp_path / "whole", [])

    def stop_after_first_epoch(epoch: int, metrics: dict) -> None:
        if epoch == 2:  # callbacks run before an epoch's files are written: epoch 1 is saved
            raise KeyboardInterrupt

    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        run_unit(cfg, cut, [stop_after_first_epoch])
    (cut / "summary.json").unlink()  # as after kill -9: checkpoints and metrics, no summary
    assert previous(cut, cfg) == "resumable"
    resumed = run_unit(cfg, cut, [])
    assert resumed["status"] == "completed" and not resumed["reused"] and resumed["epochs"] == 2
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    # Resuming from last.pt on CPU continues exactly where the uninterrupted run went.
    for key in ("val_acc", "final_val_loss", "final_train_loss", "test_acc"):
        assert resumed[key] == whole[key]

    stamp = (cut / "summary.json").stat().st_mtime_ns
    again = run_unit(cfg, cut, [])
    assert again["reused"] and again["val_acc"] == resumed["val_acc"]
    assert (cut / "summary.json").stat().st_mtime_ns == stamp
    # A folder left by a different config is not mixed in: it is replaced.
    other = load_config(base, ["train.epochs=2", "optim.lr=0.02"])
    assert previous(cut, other) == "none"
    replaced = run_unit(other, cut, [])
    assert not replaced["reused"] and yaml.safe_load((cut / "config.yaml").read_text())["optim"]["lr"] == 0.02


def test_search_trial_runs_every_seed_and_scores_their_mean(tmp_path, base, capsys):
    path = write_study(tmp_path, file="seeds", mode="search", seeds=[0, 1],
                       search={"n_trials": 2, "sampler": "random", "pruner": "none",
                               "params": {"optim.lr": {"low": 0.02, "high": 0.1, "log": True}}})
    code, _, err = run(capsys, "study", path)
    assert code == 0, err
    folder = tmp_path / "studies" / "seeds"
    rows = read_csv(folder / "results.csv")
    assert sorted((r["trial"], r["seed"]) for r in rows) == [("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")]
    for t in journal_trials(folder, "seeds"):
        mine = [r for r in rows if r["trial"] == str(t.number)]
        assert {r["optim.lr"] for r in mine} == {repr(t.params["optim.lr"])}
        assert t.value == pytest.approx(np.mean([float(r["val_acc"]) for r in mine]))
        # Epoch e of seed i is reported at step i * epochs + e, so trials compare seed by seed.
        assert sorted(t.intermediate_values) == [1, 2]
    table = {r["variant"]: r for r in read_csv(folder / "table.csv")}
    assert {r["n"] for r in table.values()} == {"2"}
    assert next(r for r in table.values() if r["reference"] == "True")["rank"] == "1"
    assert next(r for r in table.values() if r["reference"] == "True")["val_acc_test"] == ""
    assert {r["val_acc_test"] for r in table.values() if r["reference"] == "False"} == {"paired"}
