"""Train every model family for two steps through cnnlab's own runner, in one memory layout.

Run as a subprocess by test_layouts.py, because what it guards against is a crash of the
process itself (a kernel that corrupts memory, as oneDNN's AVX-512 NHWC weight gradient does;
see cnnlab/device.py): `python tests/layout_probe.py CIFAR_ZIP MNIST_DIR OUT LAYOUT`, LAYOUT one of
auto, nchw, nhwc. It prints "start NAME" before each case and "done NAME LAYOUT" after, so the
parent can name the case a crash happened in.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from cnnlab.resolve import resolve
from cnnlab.training import runner
from cnnlab.training.session import build_session

# (name, model section, dataset: "cifar" 32 px RGB, "cifar64" upsampled to 64 px, "mnist" 28 px grey)
FAMILIES = [
    ("cnn", {"name": "cnn", "channels": [8, 16], "norm": "batch"}, "cifar"),
    ("cnn-depth8-gap", {"name": "cnn", "channels": [8, 16, 32, 64], "depth": 8, "fc_hidden": [32],
                        "conv_dropout": 0.1, "global_pool": True}, "cifar64"),
    ("lenet", {"name": "lenet", "dropout": 0.2}, "mnist"),
    ("alexnet-paper", {"name": "alexnet", "variant": "paper", "fc_hidden": [64, 64]}, "cifar64"),
    ("alexnet-bn4", {"name": "alexnet", "variant": "bn4", "widths": [8, 16, 32, 32], "fc_hidden": [32, 32]}, "cifar"),
    ("vgg-A-bn", {"name": "vgg", "variant": "A", "norm": "batch", "widths": [8, 16, 32, 32, 32]}, "cifar"),
    ("small_vgg", {"name": "small_vgg", "conv_bn": True, "fc_bn": True}, "cifar"),
    ("resnet20", {"name": "resnet", "depth": 20}, "cifar"),
    ("resnet11-w8", {"name": "resnet", "depth": 11, "widths": [8, 16, 32, 64], "dropout": 0.3,
                     "block_dropout": 0.1}, "cifar64"),
    ("resnet11-w16", {"name": "resnet", "depth": 11, "widths": [16, 32, 64, 128]}, "cifar64"),
    ("resnet-bottleneck", {"name": "resnet", "blocks": [1, 1], "widths": [8, 16], "block": "bottleneck"}, "cifar"),
    ("torchvision-resnet18", {"name": "torchvision:resnet18"}, "cifar"),
    ("torchvision-mobilenet", {"name": "torchvision:mobilenet_v3_small"}, "cifar64"),
]


def config(model: dict, dataset: str, cifar_zip: str, mnist: str, out: str, layout: str) -> dict:
    data = ({"format": "idx", "path": mnist} if dataset == "mnist" else
            {"format": "image_folder", "path": cifar_zip, **({"image_size": 64} if dataset == "cifar64" else {})})
    # 8 test images: the evaluation runs in the layout too; the whole test split (MNIST's 10,000, 64 px
    # CIFAR) took most of the test's time.
    return {
        "name": "layout", "seed": 0, "device": "cpu",
        "data": {**data, "val_fraction": 0.0, "limit_train": 8, "limit_test": 8},
        "model": model,
        "optim": {"name": "sgd", "lr": 0.01, "momentum": 0.9},
        "train": {"epochs": 1, "batch_size": 4, "eval_batch_size": 50, "out_dir": out,
                  "channels_last": {"auto": "auto", "nchw": False, "nhwc": True}[layout]},
    }


def main(cifar_zip: str, mnist: str, out: str, layout: str) -> None:
    for name, model, dataset in FAMILIES:
        print(f"start {name}", flush=True)
        cfg = resolve(config(model, dataset, cifar_zip, mnist, out, layout))
        session = build_session(cfg)
        # A conv whose weight layout is unambiguous (1-channel or 1x1 weights fit both formats).
        conv = next(m for m in session.model.modules() if isinstance(m, torch.nn.Conv2d)
                    and m.in_channels > 1 and m.kernel_size != (1, 1))
        nhwc = not conv.weight.is_contiguous()
        result = runner.train(cfg, run_dir=Path(out) / f"{name}-{layout}", quiet=True)
        assert result.summary["status"] == "completed", result.summary
        assert len(result.summary["best"]) > 0
        print(f"done {name} {'nhwc' if nhwc else 'nchw'}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:5])
