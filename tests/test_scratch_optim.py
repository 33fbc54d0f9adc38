"""SGD/Adam trajectories and learning-rate schedules against torch.optim."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.scratch import SGD, Adam, Linear, load_npz, save_npz

torch = pytest.importorskip("torch")

STEPS = 6


def run_both(make_ours, make_theirs, rng):
    """Apply the same gradient sequence to a scratch Linear and to torch tensors."""
    layer = Linear(4, 3, rng=rng).astype(np.float64)
    tensors = [torch.from_numpy(layer.params[k].copy()).requires_grad_(True)
               for k in ("weight", "bias")]
    ours, theirs = make_ours(layer.parameters()), make_theirs(tensors)
    grads = [[rng.standard_normal(t.shape) for t in tensors] for _ in range(STEPS)]
    for step_grads in grads:
        for key, g in zip(("weight", "bias"), step_grads, strict=True):
            layer.grads[key] = g.copy()
        for tensor, g in zip(tensors, step_grads, strict=True):
            tensor.grad = torch.from_numpy(g.copy())
        ours.step()
        theirs.step()
    return layer, tensors, ours


SGD_CONFIGS = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.1, momentum=0.8, weight_decay=0.01),
    dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4),
    dict(lr=0.2, weight_decay=0.1),
]


@pytest.mark.parametrize("config", SGD_CONFIGS, ids=str)
def test_sgd_trajectory_matches_torch(config, rng, assert_close):
    layer, tensors, _ = run_both(lambda p: SGD(p, **config),
                                 lambda t: torch.optim.SGD(t, **config), rng)
    assert_close(layer.params["weight"], tensors[0], rtol=1e-12)
    assert_close(layer.params["bias"], tensors[1], rtol=1e-12)


ADAM_CONFIGS = [
    dict(lr=1e-2),
    dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6),
    dict(lr=1e-2, weight_decay=0.05),
]


@pytest.mark.parametrize("config", ADAM_CONFIGS, ids=str)
def test_adam_trajectory_matches_torch(config, rng, assert_close):
    layer, tensors, _ = run_both(lambda p: Adam(p, **config),
                                 lambda t: torch.optim.Adam(t, **config), rng)
    assert_close(layer.params["weight"], tensors[0], rtol=1e-12)
    assert_close(layer.params["bias"], tensors[1], rtol=1e-12)


@pytest.mark.parametrize("make", [lambda p: SGD(p, lr=0.1, momentum=0.9, nesterov=True),
                                  lambda p: Adam(p, lr=1e-2)], ids=["sgd", "adam"])
def test_optimizer_state_roundtrip_through_npz(make, rng, tmp_path):
    """Stopping after 3 steps, saving, restoring and continuing equals running straight on."""
    grads = [rng.standard_normal((3, 4)) for _ in range(5)]
    start = rng.standard_normal((3, 4))

    def fresh():
        layer = Linear(4, 3).astype(np.float64)
        layer.params["weight"][...] = start
        return layer, make(layer.parameters()[:1])

    straight, opt = fresh()
    for g in grads:
        straight.grads["weight"] = g
        opt.step()
    first, opt = fresh()
    for g in grads[:3]:
        first.grads["weight"] = g
        opt.step()
    save_npz(tmp_path / "opt.npz", opt.state_dict())
    resumed, opt2 = fresh()
    resumed.params["weight"][...] = first.params["weight"]
    opt2.load_state_dict(load_npz(tmp_path / "opt.npz"))
    for g in grads[3:]:
        resumed.grads["weight"] = g
        opt2.step()
    np.testing.assert_array_equal(resumed.params["weight"], straight.params["weight"])


def test_zero_grad_and_validation():
    layer = Linear(2, 2)
    layer.grads["weight"][...] = 1.0
    opt = SGD(layer.parameters(), lr=0.1)
    opt.zero_grad()
    assert not layer.grads["weight"].any()
    with pytest.raises(ValueError):
        SGD(layer.parameters(), lr=0.1, nesterov=True)
    with pytest.raises(ValueError):
        SGD([], lr=0.1)
