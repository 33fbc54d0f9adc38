"""`cnnlab model summary`: layer table, parameters and FLOPs, checked against hand counts."""

from __future__ import annotations

import math

import pytest
import yaml
from conftest import write_config
from torch import nn

from cnnlab.cli import main
from cnnlab.models import MODELS, build_model
from cnnlab.models.summary import summarize, summarize_config
from cnnlab.resolve import load_config


def lenet_config(path, data, **model):
    """write_config's layout with the model section replaced (write_config merges it into a cnn's)."""
    cfg = yaml.safe_load(write_config(path, data).read_text())
    cfg["model"] = {"name": "lenet", **model}
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def lenet_cfg(tmp_path_factory, mnist_small):
    d = tmp_path_factory.mktemp("summary")
    return lenet_config(d / "lenet.yaml", {"format": "idx", "path": str(mnist_small)}, dropout=0.2)


def test_lenet_on_real_mnist_flops_match_hand_counts(lenet_cfg):
    s = summarize_config(load_config(lenet_cfg))  # input shape and classes read from the MNIST slice
    assert s.input_shape == (1, 28, 28) and s.num_classes == 10
    rows = {x.name: x for x in s.layers}
    assert [rows[n].output_shape for n in ("0", "4", "5", "7", "8", "9")] == [(6, 24, 24), (6, 12, 12), (16, 8, 8), (16, 4, 4), (256,), (10,)]
    # A multiply-add is 2 FLOPs: outputs x (inputs per output); biases and BN are not counted by torch.
    conv1 = 2 * (6 * 24 * 24) * (1 * 5 * 5)
    conv2 = 2 * (16 * 8 * 8) * (6 * 5 * 5)
    fc = 2 * 256 * 10
    assert (rows["0"].flops, rows["5"].flops, rows["9"].flops) == (conv1, conv2, fc) == (172_800, 307_200, 5_120)
    assert s.flops == conv1 + conv2 + fc and s.unattributed_flops == 0
    assert s.params == s.trainable_params == 5148 and sum(x.params for x in s.layers) == 5148
    assert rows["3"].type == "Dropout" and rows["1"].params == 12


def test_every_resnet_conv_and_linear_costs_what_its_shape_says():
    m = build_model({"name": "resnet", **MODELS.validate("resnet", {"depth": 20}, "model")}, (3, 32, 32), 10)
    s = summarize(m, (3, 32, 32))
    modules = dict(m.named_modules())
    convs = 0
    for row in s.layers:
        layer = modules[row.name]
        if isinstance(layer, nn.Conv2d):
            k = layer.kernel_size[0] * layer.kernel_size[1] * layer.in_channels // layer.groups
            assert row.flops == 2 * math.prod(row.output_shape) * k, row.name
            convs += 1
        elif isinstance(layer, nn.Linear):
            assert row.flops == 2 * layer.in_features * layer.out_features
        else:
            assert row.flops == 0
    assert convs == 19 + 2  # 19 weighted convs + 2 shortcut projections
    assert s.flops == sum(x.flops for x in s.layers) and s.unattributed_flops == 0
    assert s.params == sum(p.numel() for p in m.parameters())
    assert not any(x.type == "Identity" for x in s.layers)  # placeholders are left out of the table


def run(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_prints_the_table_and_totals(capsys, lenet_cfg):
    code, out, err = run(capsys, "model", "summary", lenet_cfg)
    assert code == 0, err
    assert "input 1x28x28" in out and "classes 10" in out
    assert "5,148 trainable / 5,148 total" in out and "485.12K per image" in out
    assert "16x4x4" in out and "307.20K" in out


def test_cli_needs_no_data_with_input_and_classes(capsys, tmp_path):
    cfg = lenet_config(tmp_path / "c.yaml", {"format": "idx", "path": str(tmp_path / "nowhere")})
    code, out, err = run(capsys, "model", "summary", cfg, "model.batch_norm=false", "--input", "3x32x32", "--classes", "7")
    assert code == 0, err
    assert "input 3x32x32" in out and "classes 7" in out and "16x5x5" in out
    conv1, conv2, fc = 6 * 3 * 25 + 6, 16 * 6 * 25 + 16, 400 * 7 + 7
    assert f"{conv1 + conv2 + fc:,} trainable" in out
    code, out, err = run(capsys, "model", "summary", cfg)  # now it must read the data, which is not there
    assert code == 2 and "nowhere does not exist" in err and len(err.strip().splitlines()) == 1
    code, out, err = run(capsys, "model", "summary", cfg, "--input", "3x32", "--classes", "7")
    assert code == 2 and "--input: '3x32' is not a shape" in err
    code, out, err = run(capsys, "model", "summary", cfg, "--input", "1x8x8", "--classes", "7")
    assert code == 2 and "lenet needs images of at least 16x16" in err
