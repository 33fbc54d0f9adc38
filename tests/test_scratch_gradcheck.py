"""The finite-difference gradient check passes, and it does catch a wrong gradient."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from cnnlab.scratch import gradcheck
from cnnlab.scratch.layers import ReLU

REPO = Path(__file__).resolve().parents[2]


def test_every_layer_and_loss_passes():
    results = gradcheck.run_gradcheck(seed=0, verbose=False)
    for name in ["Conv2d k(3,5) s2 p(2,1)", "MaxPool2d k3 s2 overlap", "AvgPool2d k2 odd",
                 "BatchNorm2d", "BatchNorm1d (N,C)", "Dropout p0.3 fixed mask", "Linear",
                 "Softplus", "SoftmaxCrossEntropy ls0.1", "MultiClassHinge",
                 "Sequential LeNet 16x16"]:
        assert name in results
    assert max(results.values()) <= gradcheck.TOLERANCE, results


def test_main_reports_a_broken_gradient(monkeypatch, capsys):
    class WrongReLU(ReLU):
        def backward(self, grad_out: np.ndarray) -> np.ndarray:
            return grad_out  # forgets the mask

    def cases(rng):
        x = gradcheck.away_from(rng.standard_normal((3, 4)), [0.0])
        return [gradcheck.Case("WrongReLU", WrongReLU, x), gradcheck.Case("ReLU", ReLU, x)]

    monkeypatch.setattr(gradcheck, "layer_cases", cases)
    assert gradcheck.main(["--seed", "3"]) == 1
    out = capsys.readouterr()
    assert "WrongReLU" in out.out and "NO" in out.out
    assert "FAILED" in out.err


def test_module_entry_point_exits_zero():
    proc = subprocess.run([sys.executable, "-m", "cnnlab.scratch.gradcheck", "--seed", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO), "OPENBLAS_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Conv2d k3 s1 p1" in proc.stdout and "all" in proc.stdout
