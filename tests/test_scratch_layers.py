"""Every layer against torch: forward, input gradient and parameter gradients in float64."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.scratch import layers as L

torch = pytest.importorskip("torch")
nn = torch.nn


def copy_params(scratch: L.Layer, module) -> None:
    """Copy the scratch layer's parameters and buffers into a torch module (float64)."""
    module.double()
    module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in
                            scratch.state_dict().items()}, strict=True)


def compare(scratch: L.Layer, module, x: np.ndarray, assert_close, rng, training=True) -> None:
    """Run both on x and a random upstream gradient; compare outputs and all gradients."""
    module.train(training)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out_t = module(xt)
    out = scratch.forward(x, training=training)
    assert_close(out, out_t, what="forward")
    upstream = rng.standard_normal(out.shape)
    out_t.backward(torch.from_numpy(upstream))
    grad_x = scratch.backward(upstream)
    assert_close(grad_x, xt.grad, what="input grad")
    for name, param in module.named_parameters():
        assert_close(scratch.grads[name], param.grad, what=f"{name} grad")
    for name, buf in module.named_buffers():
        assert_close(scratch.buffers[name], buf, what=f"buffer {name}")


CONV_CASES = [
    # in, out, kernel, stride, padding, input shape
    (3, 4, 3, 1, 1, (2, 3, 7, 9)),
    (2, 3, (3, 5), 2, (2, 1), (2, 2, 9, 8)),
    (1, 6, 5, 1, 0, (1, 1, 28, 28)),
    (6, 16, 5, 1, 0, (4, 6, 12, 12)),
    (3, 2, 3, 2, 0, (3, 3, 8, 11)),
    (3, 5, 1, 1, 0, (2, 3, 4, 5)),
    (2, 3, 4, 3, 2, (2, 2, 10, 7)),
]


@pytest.mark.parametrize("cin,cout,k,s,p,shape", CONV_CASES)
def test_conv2d_matches_torch(cin, cout, k, s, p, shape, rng, assert_close):
    layer = L.Conv2d(cin, cout, k, stride=s, padding=p, rng=rng).astype(np.float64)
    module = nn.Conv2d(cin, cout, k, stride=s, padding=p)
    copy_params(layer, module)
    compare(layer, module, rng.standard_normal(shape), assert_close, rng)


def test_conv2d_params_only_backward_gives_same_grads(rng):
    layer = L.Conv2d(2, 3, 3, padding=1, rng=rng).astype(np.float64)
    x, g = rng.standard_normal((2, 2, 6, 6)), rng.standard_normal((2, 3, 6, 6))
    layer.forward(x)
    layer.backward(g)
    full = {k: v.copy() for k, v in layer.grads.items()}
    layer.forward(x)
    assert layer.backward_params_only(g) is None
    for key in full:
        np.testing.assert_array_equal(layer.grads[key], full[key])


@pytest.mark.parametrize("k,s,shape", [(2, None, (2, 3, 7, 9)), (3, 2, (2, 2, 9, 8)),
                                       (2, 1, (1, 2, 5, 6)), ((2, 3), (2, 1), (2, 2, 7, 7))])
def test_maxpool_matches_torch(k, s, shape, rng, assert_close):
    compare(L.MaxPool2d(k, s), nn.MaxPool2d(k, s), rng.standard_normal(shape), assert_close, rng)


@pytest.mark.parametrize("k,s", [(2, None), (3, 2), (2, 1)])
def test_maxpool_ties_route_like_torch(k, s, rng, assert_close):
    # Small integers make many ties: the gradient must go to the same (first) element as torch.
    x = rng.integers(0, 3, (2, 3, 8, 7)).astype(np.float64)
    compare(L.MaxPool2d(k, s), nn.MaxPool2d(k, s), x, assert_close, rng)


@pytest.mark.parametrize("k,s,shape", [(2, None, (2, 3, 7, 9)), (3, 2, (2, 2, 9, 8)),
                                       (2, 1, (1, 2, 5, 6))])
def test_avgpool_matches_torch(k, s, shape, rng, assert_close):
    compare(L.AvgPool2d(k, s), nn.AvgPool2d(k, s), rng.standard_normal(shape), assert_close, rng)


@pytest.mark.parametrize("shape", [(5, 7), (1, 7)])
def test_linear_matches_torch(shape, rng, assert_close):
    layer = L.Linear(7, 4, rng=rng).astype(np.float64)
    module = nn.Linear(7, 4)
    copy_params(layer, module)
    compare(layer, module, rng.standard_normal(shape), assert_close, rng)


@pytest.mark.parametrize("make_scratch,make_torch,scale", [
    (L.ReLU, nn.ReLU, 1.0),
    (lambda: L.LeakyReLU(0.2), lambda: nn.LeakyReLU(0.2), 1.0),
    (L.LeakyReLU, nn.LeakyReLU, 1.0),
    (L.Sigmoid, nn.Sigmoid, 30.0),  # large magnitudes exercise the overflow-free branches
    (L.Tanh, nn.Tanh, 3.0),
    (L.Softplus, nn.Softplus, 15.0),  # crosses the linear threshold at 20
    (lambda: L.Softplus(beta=2.0, threshold=5.0), lambda: nn.Softplus(2.0, 5.0), 4.0),
    (L.Flatten, nn.Flatten, 1.0),
], ids=["relu", "leaky0.2", "leaky", "sigmoid", "tanh", "softplus", "softplus-b2", "flatten"])
def test_parameter_free_layers_match_torch(make_scratch, make_torch, scale, rng, assert_close):
    x = scale * rng.standard_normal((3, 4, 5, 6))
    compare(make_scratch(), make_torch(), x, assert_close, rng)


@pytest.mark.parametrize("kind,shape", [("1d", (6, 4)), ("1d", (5, 4, 3)), ("2d", (3, 4, 5, 7)),
                                        ("2d", (1, 4, 3, 3))])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_matches_torch(kind, shape, training, rng, assert_close):
    scratch_cls, torch_cls = {"1d": (L.BatchNorm1d, nn.BatchNorm1d),
                              "2d": (L.BatchNorm2d, nn.BatchNorm2d)}[kind]
    layer = scratch_cls(4).astype(np.float64)
    layer.params["weight"][...] = rng.uniform(0.5, 1.5, 4)
    layer.params["bias"][...] = rng.standard_normal(4)
    layer.buffers["running_mean"][...] = rng.standard_normal(4)
    layer.buffers["running_var"][...] = rng.uniform(0.5, 2, 4)
    module = torch_cls(4)
    copy_params(layer, module)
    compare(layer, module, 2 + 3 * rng.standard_normal(shape), assert_close, rng, training)


@pytest.mark.parametrize("kind,shape", [("1d", (8, 3)), ("2d", (4, 3, 5, 5))])
def test_batchnorm_running_stats_follow_torch_over_steps(kind, shape, rng, assert_close):
    scratch_cls, torch_cls = {"1d": (L.BatchNorm1d, nn.BatchNorm1d),
                              "2d": (L.BatchNorm2d, nn.BatchNorm2d)}[kind]
    layer, module = scratch_cls(3).astype(np.float64), torch_cls(3).double()
    module.train()
    for step in range(6):
        x = 1.5 + step * rng.standard_normal(shape)
        layer.forward(x, training=True)
        module(torch.from_numpy(x))
    assert int(layer.buffers["num_batches_tracked"]) == int(module.num_batches_tracked) == 6
    assert_close(layer.buffers["running_mean"], module.running_mean, rtol=1e-12)
    assert_close(layer.buffers["running_var"], module.running_var, rtol=1e-12)


def test_batchnorm_rejects_single_value_per_channel_in_training():
    with pytest.raises(ValueError):
        L.BatchNorm1d(3).forward(np.ones((1, 3)), training=True)


def test_dropout_is_inverted_seeded_and_identity_in_eval(rng):
    x = rng.standard_normal((200, 50))
    layer = L.Dropout(0.3, rng=np.random.default_rng(5))
    y = layer.forward(x, training=True)
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(y[kept], x[kept] / 0.7, rtol=1e-15)
    g = rng.standard_normal(x.shape)
    np.testing.assert_allclose(layer.backward(g), np.where(kept, g / 0.7, 0.0), rtol=1e-15)
    again = L.Dropout(0.3, rng=np.random.default_rng(5)).forward(x, training=True)
    np.testing.assert_array_equal(y, again)
    assert layer.forward(x, training=False) is x
    assert np.all(L.Dropout(1.0).forward(x) == 0)


def test_float32_stays_float32(rng):
    model = L.Sequential(L.Conv2d(1, 2, 3, rng=rng), L.BatchNorm2d(2), L.ReLU(),
                         L.Dropout(0.5, rng=rng), L.MaxPool2d(2), L.AvgPool2d(1), L.Flatten(),
                         L.Linear(2 * 9, 3, rng=rng), L.Sigmoid(), L.Tanh(), L.Softplus(),
                         L.LeakyReLU())
    x = rng.standard_normal((4, 1, 8, 8)).astype(np.float32)
    out = model.forward(x)
    assert out.dtype == np.float32
    assert model.backward(np.ones_like(out)).dtype == np.float32
    assert all(g.dtype == np.float32 for g in model.grads.values())
    model.astype(np.float64)
    assert all(p.dtype == np.float64 for p in model.params.values())
    assert model.buffers["1.num_batches_tracked"].dtype == np.int64
