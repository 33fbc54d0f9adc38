"""`cnnlab export`: ONNX (onnxruntime) and TorchScript models of real runs, fed [0, 1] images.

The exported files are used as a person outside cnnlab would: raw test pixels of the IDX files
divided by 255 go in, and the predicted classes score the accuracy `cnnlab evaluate` reports.
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime
import pytest
import torch
from conftest import read_idx, write_config

import cnnlab.export as export_module
from cnnlab.cli import main
from cnnlab.evaluate import evaluate_run
from cnnlab.rundir import Run


def train(tmp_path, path, **sections) -> Run:
    cfg = write_config(tmp_path / "cfg.yaml", {"format": "idx", "path": str(path), "val_fraction": 0.1,
                                               **sections.pop("data", {})},
                       train={"epochs": 1, "batch_size": 64, "out_dir": str(tmp_path / "runs"),
                              **sections.pop("train", {})}, **sections)
    assert main(["train", str(cfg), "-q"]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    return Run(run)


def raw_test(data) -> tuple[np.ndarray, np.ndarray]:
    """The test images as a user has them: uint8 IDX pixels, scaled to [0, 1] floats."""
    def read(name: str) -> np.ndarray:
        return read_idx(next(p for p in (data / name, data / f"{name}.gz") if p.is_file()))

    return read("t10k-images-idx3-ubyte")[:, None].astype(np.float32) / 255, read("t10k-labels-idx1-ubyte")


@pytest.mark.slow
def test_onnx_and_torchscript_of_a_torch_run(tmp_path, fashion_small, capsys):
    # BatchNorm, EMA weights and flip TTA: all of what evaluate scores is in the exported model.
    run = train(tmp_path, fashion_small, train={"ema": 0.9, "tta": "hflip"})
    expected = evaluate_run(run.path, "test", "best")
    x, y = raw_test(fashion_small)
    capsys.readouterr()

    assert main(["export", str(run.path), "--format", "onnx"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == str(run.export_file("best", "onnx")) and out[-1].endswith("export/model-best.onnx")
    assert out[0].startswith("parity on 256 test images (onnxruntime ") and "same class for 256/256" in out[0]
    info = json.loads(run.export_info_file("best", "onnx").read_text())
    assert info["classes"] == run.data_info["classes"] and info["input"]["range"] == [0.0, 1.0]
    assert info["folded_in"]["tta"] == "hflip" and info["parity"]["agree"] == 256
    assert info["parity"]["max_abs_diff"] <= 1e-3 * max(1.0, info["parity"]["max_abs_logit"])
    session = onnxruntime.InferenceSession(str(run.export_file("best", "onnx")), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"images": x})[0]
    assert abs((logits.argmax(1) == y).mean() - expected["acc"]) < 1e-9

    assert main(["export", str(run.path), "--format", "torchscript", "--checkpoint", "last"]) == 0
    path = run.export_file("last", "torchscript")
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(path) and path.name == "model-last.torchscript.pt"
    with pytest.warns(Warning):  # torch.jit is deprecated; it still loads what we wrote
        scripted = torch.jit.load(str(path))
    last = evaluate_run(run.path, "test", "last")
    with torch.inference_mode():
        preds = scripted(torch.from_numpy(x)).argmax(1).numpy()
    assert abs((preds == y).mean() - last["acc"]) < 1e-9


@pytest.mark.slow
def test_numpy_engine_run_exports_and_a_disagreement_is_refused(tmp_path, mnist_small, capsys, monkeypatch):
    run = train(tmp_path, mnist_small, engine="scratch", model={"name": "lenet", "dropout": 0.0}, data={"limit_train": 320},
                train={"epochs": 1, "batch_size": 32})
    capsys.readouterr()
    assert main(["export", str(run.path), "--format", "torchscript"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert "same class for 256/256" in line  # the NumPy engine's forward pass against torch's
    parity = json.loads(run.export_info_file("best", "torchscript").read_text())["parity"]
    assert 0 < parity["max_abs_diff"] < 1e-3  # two implementations: rounding differs, a little
    x, y = raw_test(mnist_small)
    with pytest.warns(Warning):
        scripted = torch.jit.load(str(run.export_file("best", "torchscript")))
    with torch.inference_mode():
        acc = (scripted(torch.from_numpy(x)).argmax(1).numpy() == y).mean()
    assert abs(acc - evaluate_run(run.path, "test", "best")["acc"]) < 1e-9

    # A model that does not match the run's (a zero tolerance here) is refused: one line, nothing kept.
    for f in run.export_file("best", "torchscript").parent.iterdir():
        f.unlink()
    monkeypatch.setattr(export_module, "TOLERANCE", 0.0)
    assert main(["export", str(run.path), "--format", "torchscript"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "disagrees with the run's model" in err[0] and "nothing was written" in err[0]
    assert list(run.export_file("best", "torchscript").parent.iterdir()) == []


def test_bad_export_options_are_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--format", "tflite"]) == 2
    assert capsys.readouterr().err.strip() == "cnnlab: error: --format: 'tflite' is not one of onnx, torchscript"
    assert main(["export", str(tmp_path / "nope")]) == 2
    assert "no such run directory" in capsys.readouterr().err
