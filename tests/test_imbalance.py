"""Imbalanced classes: balanced accuracy and macro-F1 logged for every split each epoch,
`train.select` picking the best checkpoint by any logged metric, `loss.class_weights`, and
`data.sampler: balanced` (every class equally often, the same on both loaders, exact on resume)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import MNIST, read_idx, write_config, write_idx
from sklearn.metrics import balanced_accuracy_score, f1_score

from cnnlab.cli import main
from cnnlab.config import LossConfig
from cnnlab.data.batches.order import epoch_order
from cnnlab.training.losses import build_loss, class_weights
from cnnlab.training.metrics import balanced_metrics

# Training images per class of the imbalanced MNIST below: 1 common class, 3 middling, 6 rare.
COUNTS = [240, 120, 60, 40, 16, 12, 12, 12, 12, 12]


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory):
    """Real MNIST digits, the training split cut to COUNTS per class; the test split left as it is (400)."""
    folder = tmp_path_factory.mktemp("imbalanced")
    x, y = read_idx(MNIST / "train-images-idx3-ubyte.gz"), read_idx(MNIST / "train-labels-idx1-ubyte.gz")
    keep = np.concatenate([np.flatnonzero(y == c)[:n] for c, n in enumerate(COUNTS)])
    keep.sort()
    write_idx(folder / "train-images-idx3-ubyte.gz", x[keep])
    write_idx(folder / "train-labels-idx1-ubyte.gz", y[keep])
    write_idx(folder / "t10k-images-idx3-ubyte.gz", read_idx(MNIST / "t10k-images-idx3-ubyte.gz")[:400])
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", read_idx(MNIST / "t10k-labels-idx1-ubyte.gz")[:400])
    return folder


def test_balanced_metrics_are_scikit_learns(rng):
    for k, n in [(10, 500), (3, 40), (7, 9)]:
        y, pred = rng.integers(0, k, n), rng.integers(0, k, n)
        pred[: n // 2] = y[: n // 2]
        confusion = torch.bincount(torch.from_numpy(y * k + pred), minlength=k * k).view(k, k)
        balanced, f1 = balanced_metrics(confusion)
        assert balanced == pytest.approx(balanced_accuracy_score(y, pred), abs=1e-12)
        assert f1 == pytest.approx(f1_score(y, pred, average="macro", zero_division=0), abs=1e-12)


def test_a_balanced_epoch_draws_every_class_equally_often_from_its_own_images():
    labels = torch.tensor(sum(([c] * n for c, n in enumerate(COUNTS)), []))
    g = torch.Generator().manual_seed(3)
    order = epoch_order(len(labels), labels, g, "balanced")
    assert len(order) == len(labels) == 536
    per_class = torch.bincount(labels[order], minlength=10).tolist()
    assert max(per_class) - min(per_class) <= 1 and sum(per_class) == 536  # 536 = 10 x 53 + 6
    again = epoch_order(len(labels), labels, torch.Generator().manual_seed(3), "balanced")
    assert torch.equal(order, again)  # the generator's state decides everything
    # shuffle is the plain permutation every run made before the sampler existed
    assert torch.equal(epoch_order(536, labels, torch.Generator().manual_seed(3)),
                       torch.randperm(536, generator=torch.Generator().manual_seed(3)))


def test_class_weights_balanced_effective_and_given():
    counts = [300, 100, 50]
    balanced = class_weights(LossConfig(class_weights="balanced"), counts)
    assert balanced == pytest.approx([450 / 900, 450 / 300, 450 / 150])
    assert sum(w * n for w, n in zip(balanced, counts)) == pytest.approx(450)  # the average image weighs 1
    effective = class_weights(LossConfig(class_weights="effective", class_weights_beta=0.99), counts)
    raw = [(1 - 0.99) / (1 - 0.99**n) for n in counts]
    assert effective == pytest.approx([3 * r / sum(raw) for r in raw]) and effective[0] < effective[1] < effective[2]
    assert class_weights(LossConfig(class_weights=[1, 2, 3]), counts) == [1.0, 2.0, 3.0]
    from cnnlab.errors import ConfigError

    with pytest.raises(ConfigError, match="give 3 weights"):
        class_weights(LossConfig(class_weights=[1, 2]), counts)
    # The built loss weighs each image by its class, as a hand-written weighted mean does.
    fn = build_loss(LossConfig(class_weights="balanced"), 3, counts)
    logits, y = torch.randn(8, 3, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 0, 0, 1, 1, 2, 2, 0])
    w = torch.tensor(balanced)[y]
    nll = -torch.log_softmax(logits, 1)[torch.arange(8), y]
    assert float(fn(logits, y)) == pytest.approx(float((w * nll).sum() / w.sum()), rel=1e-6)


def test_an_imbalanced_run_logs_balanced_metrics_and_selects_by_macro_f1(imbalanced, tmp_path, capsys):
    cfg = write_config(tmp_path / "c.yaml", {"format": "idx", "path": str(imbalanced), "val_fraction": 0.25,
                                             "sampler": "balanced"},
                       model={"name": "cnn", "channels": [8, 16], "norm": "batch"},
                       optim={"name": "adam", "lr": 0.005}, loss={"class_weights": "balanced"},
                       train={"epochs": 2, "batch_size": 32, "select": "val_macro_f1"})
    assert main(["train", str(cfg)]) == 0
    err = capsys.readouterr().err
    assert "balanced sampler" in err and "class weights (balanced)" in err
    run = next((tmp_path / "runs").iterdir())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for split in ("train", "val", "test"):
        assert all(0 <= r[f"{split}_balanced_acc"] <= 1 and 0 <= r[f"{split}_macro_f1"] <= 1 for r in rows)
    summary = json.loads((run / "summary.json").read_text())
    best = max(rows, key=lambda r: r["val_macro_f1"])  # the first of equal values wins, as in training
    assert summary["selected_by"] == "val_macro_f1" and summary["best_epoch"] == best["epoch"]
    assert summary["best"]["test_macro_f1"]["value"] == max(r["test_macro_f1"] for r in rows)

    # The logged test numbers are those of the best checkpoint's predictions, recomputed by scikit-learn.
    assert main(["evaluate", str(run), "--split", "test"]) == 0
    confusion = np.asarray(json.loads((run / "eval-test-best.json").read_text())["confusion"])
    y_true = np.repeat(np.arange(10), confusion.sum(1))
    y_pred = np.concatenate([np.repeat(np.arange(10), row) for row in confusion])
    assert best["test_balanced_acc"] == pytest.approx(balanced_accuracy_score(y_true, y_pred), abs=1e-9)
    assert best["test_macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0), abs=1e-9)


def test_the_balanced_sampler_resumes_exactly_mid_epoch(imbalanced, tmp_path):
    from cnnlab.resolve import load_config
    from cnnlab.training import runner

    data = {"format": "idx", "path": str(imbalanced), "val_fraction": 0.25, "sampler": "balanced"}
    common = dict(augment=[{"random_crop": {"padding": 2}}], model={"name": "cnn", "channels": [4, 8]},
                  train={"epochs": 2, "batch_size": 32, "checkpoint_every": 1})
    whole = runner.train(load_config(write_config(tmp_path / "a" / "c.yaml", data, **common)), quiet=True).run_dir

    class CutInEpochTwo:
        def on_step_end(self, step, loss, lr):
            if step == 17:  # epoch 2 (13 steps an epoch), after its 4th step: last.pt holds the step
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.train(load_config(write_config(tmp_path / "b" / "c.yaml", data, **common)), quiet=True,
                     callbacks=[CutInEpochTwo()])
    cut = next((tmp_path / "b" / "runs").iterdir())
    runner.resume(cut, quiet=True)
    read = lambda d: [{k: v for k, v in json.loads(x).items() if k != "seconds"}
                      for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert read(cut) == read(whole)
    wa = torch.load(whole / "last.pt", weights_only=True)["model"]
    wb = torch.load(cut / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_both_loaders_draw_the_same_balanced_epochs(cifar_zip_small, tmp_path, capsys):
    data = {"format": "image_folder", "path": str(cifar_zip_small), "limit_train": 200, "sampler": "balanced",
            "workers": 0}
    cfg = write_config(tmp_path / "c.yaml", data, augment=[{"resize": 36}], train={"epochs": 2, "batch_size": 32})
    runs = []
    for mode in ("true", "false"):
        assert main(["train", str(cfg), "-q", f"data.in_memory={mode}", f"name=m{mode}"]) == 0
        runs.append(next((tmp_path / "runs").glob(f"m{mode}-*")))
    read = lambda d: [{k: v for k, v in json.loads(x).items() if k != "seconds"}
                      for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert read(runs[0]) == read(runs[1])


def test_select_names_a_logged_metric_or_is_refused(imbalanced, tmp_path, capsys):
    cfg = write_config(tmp_path / "c.yaml", {"format": "idx", "path": str(imbalanced)}, model={"name": "cnn"},
                       train={"select": "val_macro_f2"})
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.select: 'val_macro_f2' is not logged" in err[0] and "val_macro_f1" in err[0]
    for override, message in [("loss.class_weights=[1, 2]", "loss.class_weights: give 10 weights"),
                              ("data.sampler=balance", "data.sampler")]:
        assert main(["train", str(cfg), override, "train.select=null"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "runs").exists()


def test_curves_dash_balanced_accuracy_only_where_it_differs():
    from cnnlab.plots.curves import curves_figure

    rows = [{"epoch": e, "train_loss": 1.0, "train_acc": 0.9, "val_loss": 1.0, "val_acc": 0.8} for e in (1, 2)]
    for d, dashed in ((0.1, True), (0.005, False)):
        for r in rows:
            r["train_balanced_acc"], r["val_balanced_acc"] = r["train_acc"] - d, r["val_acc"] - d
        labels = [line.get_label() for line in curves_figure(rows, [], 1).axes[1].lines]
        assert ("val (balanced)" in labels) is dashed and "val" in labels


def test_a_study_ranks_and_tabulates_by_macro_f1(tmp_path):
    from cnnlab.studies.execute import make_row
    from cnnlab.studies.spec import load_study

    base = {"data": {"format": "idx", "path": "x"}, "model": {"name": "cnn"}}
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps({"base": base, "mode": "ablation", "axes": {"data.sampler": ["shuffle", "balanced"]},
                                "metric": "val_macro_f1", "table": ["test_balanced_acc", "test_acc"]}))
    study = load_study(path)
    assert study.direction == "maximize" and study.table_metrics == ["val_macro_f1", "test_balanced_acc", "test_acc"]
    history = [{"epoch": 1, "val_acc": 0.5, "val_macro_f1": 0.4, "test_balanced_acc": 0.45}]
    row = make_row({"status": "completed", "epochs": 1, "best_epoch": 1}, history)
    assert row["val_macro_f1"] == 0.4 and row["test_balanced_acc"] == 0.45
