"""model.init_from: a run starts from another run's weights (or a state-dict file), copying what fits by
name and shape, reporting what it loaded, skipped and left new, with the source file's SHA-256."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from conftest import MNIST, read_idx, write_config, write_idx

from cnnlab.cli import main

MODEL = {"name": "cnn", "channels": [4, 8], "norm": "batch"}


@pytest.fixture(scope="module")
def source_run(tmp_path_factory, mnist_small):
    """A small CNN trained one epoch on real MNIST digits (10 classes)."""
    folder = tmp_path_factory.mktemp("source")
    cfg = write_config(folder / "c.yaml", {"format": "idx", "path": str(mnist_small), "limit_train": 300},
                       model=MODEL, train={"epochs": 1, "batch_size": 50})
    assert main(["train", str(cfg), "-q"]) == 0
    return next((folder / "runs").iterdir())


@pytest.fixture(scope="module")
def five_digits(tmp_path_factory):
    """Real MNIST digits 0-4 only: a dataset with other classes (a 5-way head)."""
    folder = tmp_path_factory.mktemp("five")
    for split, n in (("train", 2000), ("t10k", 300)):
        x, y = read_idx(MNIST / f"{split}-images-idx3-ubyte.gz")[:n], read_idx(MNIST / f"{split}-labels-idx1-ubyte.gz")[:n]
        keep = y < 5
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", x[keep])
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", y[keep])
    return folder


def _train(tmp_path, name, data, capsys=None, **model):
    cfg = write_config(tmp_path / name / "c.yaml", data, model={**MODEL, **model}, train={"epochs": 1, "batch_size": 50})
    assert main(["train", str(cfg)]) == 0
    return next((tmp_path / name / "runs").iterdir())


def test_a_run_starts_from_another_runs_weights_but_its_own_head(source_run, five_digits, tmp_path, capsys):
    data = {"format": "idx", "path": str(five_digits), "limit_train": 300}
    started = _train(tmp_path, "b", data, init_from=str(source_run))
    err = capsys.readouterr().err
    digest = hashlib.sha256((source_run / "best.pt").read_bytes()).hexdigest()
    assert f"note weights from {source_run} (sha256 {digest[:12]}): " in err and "skipped, shape differs" in err

    report = json.loads((started / "init_from.json").read_text())
    source = torch.load(source_run / "best.pt", weights_only=True)["model"]
    init = torch.load(started / "init.pt", weights_only=True)["model"]
    head = [k for k in init if init[k].shape != source[k].shape]
    assert report["sha256"] == digest and report["loaded"] == len(init) - len(head) and len(head) == 2
    assert sorted(s.split()[0] for s in report["skipped"]) == sorted(head) and report["new"] == []
    assert all(torch.equal(init[k], source[k]) for k in init if k not in head)  # the body: the source's
    fresh = torch.load(_train(tmp_path, "c", data) / "init.pt", weights_only=True)["model"]
    assert all(torch.equal(init[k], fresh[k]) for k in head)  # the head: what the seed gives without init_from
    summary = json.loads((started / "summary.json").read_text())
    assert summary["init_from"] == {"source": str(source_run), "sha256": digest, "loaded": report["loaded"], "skipped": 2}

    out = tmp_path / "r.md"
    assert main(["report", str(started), "--format", "md", "--out", str(out)]) == 0
    assert f"weights from {source_run} (sha256 {digest[:12]})" in out.read_text()


def test_init_head_new_leaves_a_head_of_the_same_shape_fresh(source_run, mnist_small, tmp_path, capsys):
    # The same ten classes (so the head's shapes fit): keep copies the head, new leaves it as the seed gives it.
    data = {"format": "idx", "path": str(mnist_small), "limit_train": 300}
    source = torch.load(source_run / "best.pt", weights_only=True)["model"]
    kept = torch.load(_train(tmp_path, "keep", data, init_from=str(source_run)) / "init.pt", weights_only=True)["model"]
    assert all(torch.equal(kept[k], source[k]) for k in source)
    run = _train(tmp_path, "new", data, init_from=str(source_run), init_head="new")
    new = torch.load(run / "init.pt", weights_only=True)["model"]
    fresh = torch.load(_train(tmp_path, "fresh", data) / "init.pt", weights_only=True)["model"]
    head = [k for k in new if not torch.equal(new[k], source[k])]
    assert len(head) == 2 and all(torch.equal(new[k], fresh[k]) for k in head)  # the last Linear: weight, bias
    report = json.loads((run / "init_from.json").read_text())
    assert sorted(report["new"]) == sorted(head) and report["loaded"] == len(new) - 2
    cfg = write_config(tmp_path / "bad" / "c.yaml", data, model={**MODEL, "init_from": str(source_run), "init_head": "fresh"})
    capsys.readouterr()
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert "model.init_head" in err and "\n" not in err and not (tmp_path / "bad" / "runs").exists()


def test_a_plain_state_dict_with_wrapper_prefixes_and_a_resume_without_the_source(source_run, mnist_small, tmp_path,
                                                                                 capsys):
    weights = torch.load(source_run / "best.pt", weights_only=True)["model"]
    copy = tmp_path / "weights.pth"
    torch.save({f"module.{k}": v for k, v in weights.items()}, copy)  # as a DataParallel script saves them
    data = {"format": "idx", "path": str(mnist_small), "limit_train": 300}
    cfg = write_config(tmp_path / "a" / "c.yaml", data, model={**MODEL, "init_from": str(copy)},
                       train={"epochs": 2, "batch_size": 50})

    def stop_in_second(epoch, metrics):
        if epoch == 2:  # epoch 2's files are never written: last.pt holds epoch 1
            raise KeyboardInterrupt

    from cnnlab.resolve import load_config
    from cnnlab.training import runner

    with pytest.raises(KeyboardInterrupt):
        runner.train(load_config(cfg), quiet=True, callbacks=[stop_in_second])
    run = next((tmp_path / "a" / "runs").iterdir())
    init = torch.load(run / "init.pt", weights_only=True)["model"]
    assert all(torch.equal(init[k], weights[k]) for k in weights)  # every tensor fits: the same architecture
    copy.unlink()  # the source is gone: resuming from last.pt does not need it
    runner.resume(run, quiet=True)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["init_from"]["loaded"] == len(weights)


def test_a_missing_or_foreign_source_is_one_line_before_anything_is_written(source_run, mnist_small, tmp_path, capsys):
    data = {"format": "idx", "path": str(mnist_small), "limit_train": 100}
    for init_from, message in [
        (str(tmp_path / "nowhere"), "model.init_from: " + str(tmp_path / "nowhere") + ": no such run directory or weights file"),
        (str(source_run), "model.init_from: none of the"),
    ]:
        model = {"name": "lenet", "init_from": init_from} if "none" in message else {**MODEL, "init_from": init_from}
        cfg = write_config(tmp_path / "c.yaml", data, model=model)
        assert main(["train", str(cfg)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "runs").exists()
