"""Whole LeNet (cnnlab's, copied into the engine) against torch, torch -> NumPy conversion, npz io, conv chunking."""

from __future__ import annotations

import os

import numpy as np
import pytest

from bench.scratch.stack import lenet
from cnnlab.errors import ConfigError
from cnnlab.scratch import SoftmaxCrossEntropy, load_model, load_npz, save_model, save_npz
from cnnlab.scratch.layers import BatchNorm1d, Conv2d, Dropout, Linear, MaxPool2d, conv
from cnnlab.training.numpy_engine import convert

torch = pytest.importorskip("torch")
nn = torch.nn


class FixedMask(nn.Module):
    """Dropout stand-in for torch that replays the mask the scratch layer drew."""

    def __init__(self, mask: np.ndarray) -> None:
        super().__init__()
        self.mask = torch.from_numpy(mask)

    def forward(self, x):
        return x * self.mask


def torch_lenet(dropout_mask=None) -> nn.Sequential:
    """The same layer order as cnnlab's lenet model (a conv bias where the engine has a zero one)."""
    middle = [FixedMask(dropout_mask)] if dropout_mask is not None else []
    return nn.Sequential(nn.Conv2d(1, 6, 5), nn.BatchNorm2d(6), nn.ReLU(), *middle,
                         nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(256, 10))


def to_torch_state(state):
    return {k: torch.from_numpy(np.array(v)) for k, v in state.items()}


def test_lenet_shapes_and_names():
    model = lenet(rng=np.random.default_rng(0))
    assert model.forward(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)
    assert list(model.state_dict()) == list(torch_lenet(np.ones(1)).state_dict())
    assert model.params["9.weight"].shape == (10, 256)
    cifar = lenet(in_channels=3, input_size=32, batch_norm=False, dropout=0.0,
                  activation="tanh", num_classes=5)
    assert cifar.params["9.weight"].shape == (5, 400)  # 32 -> 28 -> 14 -> 10 -> 5; indices never move
    assert cifar.forward(np.zeros((1, 3, 32, 32), np.float32)).shape == (1, 5)


def test_lenet_forward_backward_matches_torch(rng, assert_close):
    model = lenet(rng=rng, dropout=0.5).astype(np.float64)
    x, y = rng.standard_normal((5, 1, 28, 28)), rng.integers(0, 10, 5)
    model[3].rng = np.random.default_rng(9)
    initial = model.state_dict()  # before forward moves the BN running statistics
    logits = model.forward(x)
    reference = torch_lenet(model[3]._mask).double()
    reference.load_state_dict(to_torch_state(initial))
    xt = torch.from_numpy(x).requires_grad_(True)
    ref_logits = reference(xt)
    assert_close(logits, ref_logits, what="logits")
    loss_fn = SoftmaxCrossEntropy(label_smoothing=0.1)
    loss = loss_fn.forward(logits, y)
    ref_loss = nn.functional.cross_entropy(ref_logits, torch.from_numpy(y), label_smoothing=0.1)
    assert_close(np.array(loss), ref_loss, what="loss")
    ref_loss.backward()
    grad_x = model.backward(loss_fn.backward())
    assert_close(grad_x, xt.grad, what="input grad")
    ref_grads = {name: p.grad for name, p in reference.named_parameters()}
    assert set(model.grads) == set(ref_grads)
    scale = max(np.abs(g).max() for g in model.grads.values())
    for name, grad in model.grads.items():
        # The conv bias feeding BatchNorm has an exactly-zero true gradient (BN removes the
        # mean), so compare every tensor against the scale of the whole gradient.
        diff = np.abs(grad - ref_grads[name].numpy()).max()
        assert diff <= 1e-10 * max(scale, np.abs(grad).max()), name
    for name, buf in reference.named_buffers():
        assert_close(model.buffers[name], buf, what=name)


def test_weights_copied_from_torch_give_torch_outputs(assert_close, rng):
    torch.manual_seed(0)
    reference = torch_lenet(np.ones(1, np.float32)).eval()  # dropout 0 keeps its place in cnnlab's LeNet
    with torch.no_grad():  # non-trivial running statistics
        reference[1].running_mean.uniform_(-0.5, 0.5)
        reference[1].running_var.uniform_(0.5, 2.0)
    model = lenet(dropout=0.0)
    model.load_state_dict({k: v.numpy() for k, v in reference.state_dict().items()})
    x = rng.standard_normal((3, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x))
    assert_close(model.forward(x, training=False), expected, rtol=1e-5)
    back = torch_lenet(np.ones(1, np.float32))
    back.load_state_dict(to_torch_state(model.state_dict()))
    for key, value in reference.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key


def test_params_only_backward_matches_full_backward(rng):
    model = lenet(rng=rng, dropout=0.0).astype(np.float64)
    x, g = rng.standard_normal((3, 1, 28, 28)), rng.standard_normal((3, 10))
    model.forward(x)
    model.backward(g)
    full = {k: v.copy() for k, v in model.grads.items()}
    model.forward(x)
    assert model.backward(g, input_grad=False) is None
    for key, value in full.items():
        np.testing.assert_allclose(model.grads[key], value, rtol=1e-12, atol=1e-18)


def test_convert_copies_every_supported_layer_and_refuses_the_rest(rng, assert_close):
    torch.manual_seed(0)
    reference = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.LeakyReLU(0.1), nn.AvgPool2d(2),
        nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, bias=False), nn.BatchNorm2d(8), nn.ReLU()),  # nested, as builders nest
        nn.Dropout(0.2), nn.Flatten(), nn.Linear(8 * 2 * 2, 16), nn.BatchNorm1d(16), nn.Softplus(),
        nn.Identity(), nn.Sigmoid(), nn.Tanh(), nn.Linear(16, 3),
    ).eval()
    with torch.no_grad():
        reference[3][1].running_var.uniform_(0.5, 2.0)
    model, names = convert(reference, np.random.default_rng(0))
    assert len(model) == 15 and isinstance(model[6], Dropout) and isinstance(model[9], BatchNorm1d)
    assert names["3.weight"] == "3.0.weight" and names["9.running_var"] == "7.running_var"
    x = rng.standard_normal((2, 2, 12, 10)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x))
    assert_close(model.forward(x, training=False), expected, rtol=1e-5)
    with pytest.raises(ConfigError, match=r"cannot run layer '0' \(Conv2d\)"):
        convert(nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)), rng)
    with pytest.raises(ConfigError, match=r"cannot run layer '1' \(GELU\)"):
        convert(nn.Sequential(nn.Linear(2, 2), nn.GELU()), rng)


def test_save_load_roundtrip(tmp_path, rng):
    model = lenet(rng=rng)
    model.forward(rng.standard_normal((4, 1, 28, 28)).astype(np.float32))  # move BN stats
    path = save_model(model, tmp_path / "ckpt" / "model.npz")
    assert sorted(os.listdir(path.parent)) == ["model.npz"]  # no temp file left behind
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == sorted(model.state_dict())
    other = lenet(rng=np.random.default_rng(99))
    weight = other.params["0.weight"]
    load_model(other, path)
    assert other.params["0.weight"] is weight  # loaded in place: optimizers stay valid
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[key], value)
        assert other.state_dict()[key].dtype == value.dtype
    with pytest.raises(KeyError):
        load_model(lenet(batch_norm=False), path)


def test_failed_save_keeps_previous_file(tmp_path):
    path = save_npz(tmp_path / "a.npz", {"x": np.arange(3)})
    with pytest.raises(TypeError):
        save_npz(path, {"x": np.array([object()], dtype=object)})
    np.testing.assert_array_equal(load_npz(path)["x"], np.arange(3))
    assert os.listdir(tmp_path) == ["a.npz"]


@pytest.mark.parametrize("stride,padding", [(1, 0), (1, 2), (2, 1)])
@pytest.mark.parametrize("training", [True, False])
def test_chunked_conv_equals_unchunked(stride, padding, training, rng, monkeypatch):
    layer = Conv2d(3, 5, 3, stride=stride, padding=padding, rng=rng).astype(np.float64)
    x, n = rng.standard_normal((11, 3, 9, 8)), 11
    ho = (9 + 2 * padding - 3) // stride + 1
    wo = (8 + 2 * padding - 3) // stride + 1
    g = rng.standard_normal((n, 5, ho, wo))
    out_full = layer.forward(x, training)
    grad_full = layer.backward(g)
    grads_full = {k: v.copy() for k, v in layer.grads.items()}
    per_sample = layer.bytes_per_sample(x, ho, wo)
    monkeypatch.setattr(conv, "COLUMN_BUDGET_BYTES", 3 * per_sample)  # chunks of 3 samples
    assert layer._chunk(x, ho, wo) == 3
    out = layer.forward(x, training)
    assert layer._cols is None  # several chunks: columns are rebuilt in backward, not kept
    np.testing.assert_allclose(out, out_full, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(layer.backward(g), grad_full, rtol=1e-12, atol=1e-13)
    for key, value in grads_full.items():
        np.testing.assert_allclose(layer.grads[key], value, rtol=1e-12, atol=1e-13)


def test_big_batch_inference_is_chunked(monkeypatch):
    monkeypatch.setattr(conv, "COLUMN_BUDGET_BYTES", 2**20)
    layer = Conv2d(1, 6, 5, rng=np.random.default_rng(0))
    calls = []
    original = Conv2d._columns

    def spy(self, windows, start, stop, buffer):
        cols = original(self, windows, start, stop, buffer)
        calls.append(cols.nbytes)
        return cols

    monkeypatch.setattr(Conv2d, "_columns", spy)
    layer.forward(np.zeros((500, 1, 28, 28), np.float32), training=False)
    assert len(calls) > 1 and max(calls) <= 2**20


def test_unknown_layers_and_mismatch_errors():
    with pytest.raises(ValueError):
        Conv2d(2, 3, 3).forward(np.zeros((1, 1, 5, 5), np.float32))
    with pytest.raises(ValueError):
        Linear(3, 2).load_state_dict({"weight": np.zeros((3, 3)), "bias": np.zeros(2)})
    with pytest.raises(RuntimeError):
        MaxPool2d(2).backward(np.zeros((1, 1, 1, 1)))
