"""Shared helpers for the NumPy-engine tests (torch is a test-only reference)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

MNIST_CANDIDATES = [
    os.environ.get("CNNLAB_MNIST_DIR", ""),
    "data/mnist",
    "/work/shared/datasets/mnist",
]


def relative_error(a, b) -> float:
    """max|a - b| / max(max|a|, max|b|, 1e-8): robust when gradients are tiny."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0), 1e-8)
    return float(np.abs(a - b).max(initial=0.0) / scale)


@pytest.fixture
def assert_close():
    """Assert two arrays agree to a relative tolerance (1e-10 by default, for float64)."""
    def check(actual, expected, rtol: float = 1e-10, what: str = "") -> None:
        actual = actual.detach().numpy() if hasattr(actual, "detach") else actual
        expected = expected.detach().numpy() if hasattr(expected, "detach") else expected
        assert np.shape(actual) == np.shape(expected), what
        err = relative_error(actual, expected)
        assert err <= rtol, f"{what}: relative error {err:.3e} > {rtol:.1e}"
    return check


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """Folder with the MNIST IDX .gz files, or skip."""
    for candidate in MNIST_CANDIDATES:
        if candidate and (Path(candidate) / "train-images-idx3-ubyte.gz").exists():
            return Path(candidate)
    pytest.skip("MNIST IDX files not found (set CNNLAB_MNIST_DIR)")
