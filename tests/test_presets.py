"""Every preset in configs/ runs end to end on its workload's data layout, with only data.path changed.

The data are real images in each workload's layout (bench/standins.py), sliced small; a few
overrides (limit_train, epochs, batch size) keep each run to seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT

from bench import standins
from cnnlab.resolve import load_config
from cnnlab.training import runner

QUICK = ["data.limit_train=160", "train.epochs=1", "train.batch_size=32", "train.eval_batch_size=64"]


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    base = tmp_path_factory.mktemp("standins")
    return {
        "mat": standins.mnist_original_mat(base / "mnist-original.mat"),  # full size: test_from=60000
        "kaggle": standins.kaggle_npy_csv(base / "kaggle", n_train=600, n_test=50),
        "faces": standins.faces_folder(base / "faces", train_per_class=16, dev_per_class=4, test_per_class=4),
        "faces_sample": standins.faces_folder(base / "faces_sample", train_per_class=16, dev_per_class=4,
                                              test_per_class=4, names=("train_sample", "dev_sample", "test_sample")),
        "tiny": standins.tiny_imagenet_folder(base / "tiny-imagenet-200", train_per_class=16, val_per_class=4,
                                              test_images=10),
    }


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    """timm's resnet18 with 1,000-class weights in a .safetensors file, as the hub holds it."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "model.safetensors"
    save_file(timm.create_model("resnet18", num_classes=1000).state_dict(), str(path))
    return path


def test_every_preset_is_covered():
    presets = {p.name for p in (ROOT / "configs").glob("*.yaml")}
    assert presets == set(CASES) | {"fashion_mnist_cnn.yaml"}  # the main job is tested in test_cli / make train


CASES = {
    "faces_alexnet.yaml": ("faces", []),
    "fashion_mnist_npy_resnet.yaml": ("kaggle", []),
    "tiny_imagenet_cnn.yaml": ("tiny", ["data.limit_train=40"]),  # wide 64 px nets: a GPU workload
    "tiny_imagenet_resnet.yaml": ("tiny", ["data.limit_train=40"]),
    "mnist_lenet.yaml": ("mat", []),
    "cifar10_small_vgg.yaml": ("cifar", ["data.format=image_folder"]),
    "cifar10_vgg.yaml": ("cifar", ["data.format=image_folder"]),
    "cifar10_resnet.yaml": ("cifar", ["data.format=image_folder"]),
    "cifar10_fast.yaml": ("cifar", []),  # the JPEG zip's layout already; airbench-like, for a GPU
    # The write-ups as written (their fast twins above): the same layouts, the write-ups' own split names.
    "faces_alexnet_as_written.yaml": ("faces_sample", ["schedule.every=2"]),  # 5 batches an epoch here
    "fashion_mnist_npy_resnet_as_written.yaml": ("kaggle", []),
    "tiny_imagenet_cnn_as_written.yaml": ("tiny", ["data.limit_train=40"]),
    "tiny_imagenet_resnet_as_written.yaml": ("tiny", ["data.limit_train=40"]),
    "mnist_lenet_as_written.yaml": ("mat", ["data.limit_train=600"]),  # the preset's own 600 / 1,000, 2 epochs
    "cifar10_small_vgg_as_written.yaml": ("cifar", ["data.format=image_folder"]),
    # Fine-tuning from timm's resnet18: the weights are a local file here (offline), as a user without a
    # network gives them; the faces at 64 px instead of 224 to keep the test to seconds.
    "faces_finetune.yaml": ("faces", ["data.image_size=64"]),
    "kaggle_finetune.yaml": ("kaggle", []),
}
FINETUNE = {"faces_finetune.yaml", "kaggle_finetune.yaml"}


# The two costliest write-ups as written (a 224 px AlexNet, a 224 px ResNet-18), the 224 px fine-tuning
# preset and tiny_imagenet_resnet (its as-written twin runs the same blocks) are heavy: `make test-all`
# runs them; every preset is also resolved without torch in tests/test_architecture.py.
HEAVY = {"faces_alexnet_as_written.yaml", "fashion_mnist_npy_resnet_as_written.yaml", "faces_finetune.yaml",
         "tiny_imagenet_resnet.yaml"}


@pytest.mark.parametrize("preset", [pytest.param(p, marks=pytest.mark.heavy) if p in HEAVY else p for p in sorted(CASES)])
def test_preset_runs_end_to_end(preset, standin, cifar_zip_small, resnet18_file, tmp_path):
    key, extra = CASES[preset]
    if preset in FINETUNE:
        extra = [*extra, f"model.pretrained={resnet18_file}"]
    path = cifar_zip_small if key == "cifar" else standin[key]
    cfg = load_config(ROOT / "configs" / preset,
                      [f"data.path={path}", f"train.out_dir={tmp_path}", *QUICK, *extra])
    result = runner.train(cfg, quiet=True)
    s = result.summary
    assert s["status"] == "completed" and s["epochs"] == 1
    rows = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    held_out = "val_acc" if "val_acc" in rows[0] else "test_acc"  # the as-written CIFAR and MNIST nets have no val split
    assert 0 <= rows[0][held_out] <= 1 and rows[0]["train_loss"] > 0
    assert Path(result.run_dir / "best.pt").is_file() or Path(result.run_dir / "best.npz").is_file()  # engine: scratch
