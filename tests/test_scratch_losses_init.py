"""Losses against torch, and initialiser distributions against torch's definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnnlab.scratch import MultiClassHinge, SoftmaxCrossEntropy
from cnnlab.scratch import init as I
from cnnlab.scratch.layers import Conv2d, Linear

torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("scale", [1.0, 300.0])  # large logits check the log-sum-exp shift
def test_cross_entropy_matches_torch(smoothing, scale, rng, assert_close):
    logits, y = scale * rng.standard_normal((9, 7)), rng.integers(0, 7, 9)
    loss = SoftmaxCrossEntropy(label_smoothing=smoothing)
    value = loss.forward(logits, y)
    lt = torch.from_numpy(logits).requires_grad_(True)
    ref = F.cross_entropy(lt, torch.from_numpy(y), label_smoothing=smoothing)
    ref.backward()
    assert np.isfinite(value)
    assert_close(np.array(value), ref, what="loss")
    assert_close(loss.backward(), lt.grad, what="dlogits")


@pytest.mark.parametrize("margin", [1.0, 0.5, 2.0])
def test_multiclass_hinge_matches_torch(margin, rng, assert_close):
    logits, y = rng.standard_normal((8, 5)), rng.integers(0, 5, 8)
    loss = MultiClassHinge(margin=margin)
    value = loss.forward(logits, y)
    lt = torch.from_numpy(logits).requires_grad_(True)
    ref = torch.nn.MultiMarginLoss(p=1, margin=margin)(lt, torch.from_numpy(y))
    ref.backward()
    assert_close(np.array(value), ref, what="loss")
    assert_close(loss.backward(), lt.grad, what="dlogits")


def test_losses_reject_bad_shapes():
    with pytest.raises(ValueError):
        SoftmaxCrossEntropy().forward(np.zeros((3, 4)), np.zeros(2, dtype=int))


def test_fans_match_torch():
    for shape in [(6, 1, 5, 5), (10, 256), (16, 6, 3, 5)]:
        expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
        assert I.fans(shape) == expected


@pytest.mark.parametrize("make,fan_in", [(lambda g: Conv2d(20, 30, 5, rng=g), 500),
                                         (lambda g: Linear(400, 300, rng=g), 400)])
def test_default_init_matches_torch_distribution(make, fan_in):
    layer = make(np.random.default_rng(0))
    bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform(a=sqrt(5)) reduces to this
    w, b = layer.params["weight"], layer.params["bias"]
    assert w.dtype == np.float32
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    # U(-a, a) has standard deviation a / sqrt(3); 120k samples pin it to ~0.5%.
    assert abs(w.std() / (bound / math.sqrt(3)) - 1) < 0.01
    reference = torch.nn.Conv2d(20, 30, 5) if w.ndim == 4 else torch.nn.Linear(400, 300)
    assert abs(reference.weight.abs().max().item() - bound) < 0.01 * bound


def test_xavier_and_kaiming_scales():
    g = np.random.default_rng(0)
    shape = (200, 100, 3, 3)
    fan_in, fan_out = 900, 1800
    xu = I.xavier_uniform(shape, g)
    assert np.abs(xu).max() <= math.sqrt(6 / (fan_in + fan_out))
    assert abs(xu.std() / math.sqrt(2 / (fan_in + fan_out)) - 1) < 0.01
    xn = I.xavier_normal(shape, g, gain=2.0)
    assert abs(xn.std() / (2 * math.sqrt(2 / (fan_in + fan_out))) - 1) < 0.01
    kn = I.kaiming_normal(shape, g, dtype=np.float64)
    assert kn.dtype == np.float64
    assert abs(kn.std() / math.sqrt(2 / fan_in) - 1) < 0.01
    same = I.kaiming_normal(shape, np.random.default_rng(3))
    np.testing.assert_array_equal(same, I.kaiming_normal(shape, np.random.default_rng(3)))


def test_named_init_sets_zero_bias_and_unknown_name_fails():
    layer = Linear(5, 3, init="xavier_normal", rng=np.random.default_rng(0))
    assert not layer.params["bias"].any()
    with pytest.raises(ValueError):
        Linear(5, 3, init="nope")
