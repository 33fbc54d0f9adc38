"""LeNet: the exact layout the NumPy engine mirrors, on real MNIST digits."""

from __future__ import annotations

import pytest
import torch
from real_images import mnist, train_step
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models import MODELS, build_model, count_parameters


def build(shape=(1, 28, 28), k=10, **opts):
    return build_model({"name": "lenet", **MODELS.validate("lenet", opts, "model")}, shape, k)


def test_lenet_layout_shapes_and_state_dict_names_on_mnist():
    torch.manual_seed(0)
    m = build(dropout=0.25)
    assert isinstance(m, nn.Sequential)
    kinds = [type(x) for x in m]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Dropout, nn.MaxPool2d,
                     nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Flatten, nn.Linear]
    assert m[3].p == 0.25
    x, y = mnist(16)
    shapes, h = [], x
    m.eval()
    with torch.no_grad():
        for layer in m:
            h = layer(h)
            shapes.append(tuple(h.shape[1:]))
    # 28 -> 24 (conv 5x5) -> 12 (pool) -> 8 (conv 5x5) -> 4 (pool) -> 16*4*4 = 256 -> 10
    assert shapes[0] == (6, 24, 24) and shapes[4] == (6, 12, 12)
    assert shapes[5] == (16, 8, 8) and shapes[7] == (16, 4, 4) and shapes[8] == (256,) and shapes[9] == (10,)
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == {
        "0.weight": (6, 1, 5, 5),
        "1.weight": (6,), "1.bias": (6,), "1.running_mean": (6,), "1.running_var": (6,), "1.num_batches_tracked": (),
        "5.weight": (16, 6, 5, 5), "5.bias": (16,),
        "9.weight": (10, 256), "9.bias": (10,),
    }
    # conv1 (no bias before BN) + BN + conv2 + FC, counted by hand.
    assert count_parameters(m) == 6 * 25 + 2 * 6 + (16 * 6 * 25 + 16) + (256 * 10 + 10) == 5148
    train_step(m, x, y, 10)


def test_lenet_without_bn_keeps_indices_and_learns_real_digits():
    torch.manual_seed(0)
    m = build(batch_norm=False, activation="tanh", init="xavier_uniform")
    assert isinstance(m[1], nn.Identity) and isinstance(m[2], nn.Tanh) and m[0].bias is not None
    assert set(m.state_dict()) == {"0.weight", "0.bias", "5.weight", "5.bias", "9.weight", "9.bias"}
    assert count_parameters(m) == (6 * 25 + 6) + (16 * 6 * 25 + 16) + (256 * 10 + 10) == 5142
    x, y = mnist(32)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    first = train_step(m, x, y, 10)
    for _ in range(15):
        opt.step()
        last = train_step(m, x, y, 10)
    assert last < 0.5 * first  # it fits 32 real digits: gradients flow through every layer


def test_lenet_flatten_size_follows_the_input():
    m = build(shape=(3, 32, 32), k=7)
    assert m[9].in_features == 16 * 5 * 5 and m[0].in_channels == 3
    assert build(shape=(1, 20, 36), k=3)[9].in_features == 16 * 2 * 6
    with pytest.raises(ConfigError, match="lenet needs images of at least 16x16 pixels, this data has 12x12"):
        build(shape=(1, 12, 12))
    with pytest.raises(ConfigError, match="model.dropout"):
        MODELS.validate("lenet", {"dropout": 1.5}, "model")


@pytest.mark.slow
def test_cnnlab_trains_lenet_on_real_mnist(tmp_path, mnist_small):
    import json

    import yaml
    from conftest import write_config

    from cnnlab.cli import main

    cfg_path = write_config(tmp_path / "lenet.yaml", {"format": "idx", "path": str(mnist_small), "val_fraction": 0.1})
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["model"] = {"name": "lenet", "dropout": 0.1}
    cfg_path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(cfg_path), "-q"]) == 0
    run = next((tmp_path / "runs").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["params"] == 5148
    assert summary["test_acc"] > 0.7  # 1,080 real digits, 2 epochs: far above the 10% of chance
