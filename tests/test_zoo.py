"""Pretrained weights of the model zoos: `timm:NAME` with `pretrained:`, `torchvision:NAME` with
`weights:`. The weights are local files made here (the machine is offline), as a user who downloaded
them elsewhere would give them; the tensors a run starts from are checked against the file, and
the inputs against the weights' own metadata."""

from __future__ import annotations

import json

import pytest
import timm
import torch
import torchvision
import yaml
from conftest import write_config
from safetensors.torch import load_file, save_file

from cnnlab.cli import main

TIMM_DATA = {"format": "idx", "limit_train": 300, "limit_test": 100, "val_fraction": 0.2}


@pytest.fixture(scope="module")
def timm_file(tmp_path_factory):
    """timm's tiny test_resnet with 1,000-class weights, saved as model.safetensors is on the hub."""
    torch.manual_seed(7)
    path = tmp_path_factory.mktemp("timm") / "model.safetensors"
    save_file(timm.create_model("test_resnet", num_classes=1000).state_dict(), str(path))
    return path


def test_timm_weights_from_a_file_start_the_backbone_and_leave_a_new_head(timm_file, mnist_small, tmp_path, capsys):
    cfg = write_config(tmp_path / "c.yaml", {**TIMM_DATA, "path": str(mnist_small)},
                       model={"name": "timm:test_resnet", "pretrained": str(timm_file), "input_size": "data"},
                       train={"epochs": 1, "batch_size": 50, "freeze": {"epochs": 1, "until": "stage2"}})
    assert main(["train", str(cfg)]) == 0
    err = capsys.readouterr().err
    run = next((tmp_path / "runs").iterdir())
    assert "pretrained inputs: 28x28 (the weights were trained at 160)" in err
    assert "the weights' own, from timm pretrained_cfg of test_resnet.r160_in1k" in err

    source = load_file(str(timm_file))
    init = torch.load(run / "init.pt", weights_only=True)["model"]
    report = json.loads((run / "init_from.json").read_text())
    assert report["adapted"] == ["conv1.0.weight"]  # the RGB stem summed over its input channels for grey digits
    torch.testing.assert_close(init["conv1.0.weight"], source["conv1.0.weight"].sum(dim=1, keepdim=True))
    head = ["fc.bias", "fc.weight"]
    assert sorted(s.split()[0] for s in report["skipped"]) == head and init["fc.weight"].shape == (10, 96)
    body = [k for k in init if k not in head and k != "conv1.0.weight"]
    assert report["loaded"] == len(body) and all(torch.equal(init[k], source[k]) for k in body)
    # The weights' statistics (0.5 / 0.5 for this net), averaged for one channel, normalise the inputs.
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["mean"] == [0.5, 0.5, 0.5] and (run / "data.json").is_file()
    assert json.loads((run / "data.json").read_text())["mean"] == [0.5]
    # freeze until stage2: the stem, layer1 and layer2 stayed as loaded through the frozen epoch.
    best = torch.load(run / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(best[k], init[k]) for k in init if k.startswith(("layer1.", "layer2.")) and "bn" not in k)
    assert not torch.equal(best["layer3.0.conv1.weight"], init["layer3.0.conv1.weight"])


def test_the_weights_input_size_and_statistics_fill_the_config_unless_it_sets_them(timm_file, mnist_small, tmp_path):
    from cnnlab.resolve import load_config

    base = {**TIMM_DATA, "path": str(mnist_small)}
    cfg = load_config(write_config(tmp_path / "a.yaml", base, model={"name": "timm:test_resnet",
                                                                     "pretrained": str(timm_file)}), [])
    assert cfg.augment[-1] == {"name": "resize", "size": 160} and cfg.data.mean == [0.5] * 3
    again = load_config(write_config(tmp_path / "b.yaml", {**base, "mean": [0.1], "std": [0.2]},
                                     model={"name": "timm:test_resnet", "pretrained": str(timm_file)},
                                     augment=[{"resize": 64}]), [])
    assert again.augment == [{"name": "resize", "size": 64}] and again.data.mean == [0.1]  # the config's own


def test_torchvision_weights_from_a_file_and_the_offline_message(mnist_small, tmp_path, capsys, monkeypatch):
    torch.manual_seed(3)
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    model = {"name": "torchvision:resnet18", "weights": str(path), "input_size": "data"}
    cfg = write_config(tmp_path / "c.yaml", {**TIMM_DATA, "path": str(mnist_small), "limit_train": 100},
                       model=model, train={"epochs": 1, "batch_size": 50})
    assert main(["train", str(cfg)]) == 0
    assert "torchvision ResNet18_Weights.IMAGENET1K_V1" in capsys.readouterr().err
    run = next((tmp_path / "runs").iterdir())
    init = torch.load(run / "init.pt", weights_only=True)["model"]
    source = torch.load(path, weights_only=True)
    assert all(torch.equal(init[f"model.{k}"], v) for k, v in source.items() if not k.startswith("fc."))
    assert init["model.fc.weight"].shape == (10, 512)

    # Offline with an empty cache: one line naming the file to fetch and where it goes, exit 2.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    model["weights"] = True
    cfg = write_config(tmp_path / "d.yaml", {**TIMM_DATA, "path": str(mnist_small)}, model=model)
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "fetch https://download.pytorch.org/models/resnet18-f37072fd.pth" in err
    assert str(tmp_path / "hub" / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in err  # TORCH_HOME/hub


def test_bad_pretrained_choices_are_one_line(mnist_small, tmp_path, capsys):
    data = {**TIMM_DATA, "path": str(mnist_small)}
    for model, words in (({"name": "timm:test_resnet", "pretrained": str(tmp_path / "nope.safetensors")}, "no such weights file"),
                         ({"name": "timm:test_resnett"}, "timm has no model 'test_resnett'"),
                         ({"name": "torchvision:resnet18", "weights": "IMAGENET9K"}, "not one of resnet18's weights"),
                         ({"name": "timm:test_resnet", "pretrained": "no_such_tag"}, "timm has no pretrained weights")):
        assert main(["train", str(write_config(tmp_path / "c.yaml", data, model=model))]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, err
