"""Is channels_last (NHWC) faster than NCHW on this CPU, with oneDNN's default kernels and with
its AVX2 kernels (ONEDNN_MAX_CPU_ISA=AVX2, how an AVX2-only CPU runs)? The figures behind
`train.channels_last: auto` (cnnlab/device.py).

Median ms of a training step (forward, cross-entropy, backward, SGD momentum) of each preset's
model on random batches, each configuration in its own process (the ISA cap is read once):

    PYTHONPATH=. .venv/bin/python bench/layout_speed.py [--json bench/out/layout_speed.json]

NHWC with the default kernels is skipped on AVX-512 CPUs, where it crashes the process
(bench/channels_last_crash.py) for ResNets; the small nets are measured there too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

# name -> (model section, input shape, classes, batch)
MODELS = {
    "fashion_mnist_cnn": ({"name": "cnn", "channels": [32, 64, 128], "norm": "batch", "dropout": 0.2}, (1, 28, 28), 10, 128),
    "mnist_lenet": ({"name": "lenet", "dropout": 0.2}, (1, 28, 28), 10, 64),
    "cifar10_small_vgg": ({"name": "small_vgg", "hidden_channels": [64, 128], "hidden_neurons": [512, 512],
                           "conv_bn": True, "fc_bn": True}, (3, 32, 32), 10, 128),
    "cifar10_resnet": ({"name": "resnet", "depth": 20}, (3, 32, 32), 10, 128),
}

STEP = r"""
import json, sys, time, torch
from cnnlab.models import build_model
section, shape, k, batch, layout = json.loads(sys.argv[1])
torch.set_num_threads(2)
torch.manual_seed(0)
fmt = torch.channels_last if layout == "nhwc" else torch.contiguous_format
model = build_model(section, tuple(shape), k).to(memory_format=fmt)
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
x = torch.randn(batch, *shape).contiguous(memory_format=fmt)
y = torch.randint(0, k, (batch,))
def step():
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
for _ in range(5):
    step()
times = []
for _ in range(30):
    t = time.perf_counter(); step(); times.append(time.perf_counter() - t)
times.sort()
print(json.dumps(times[len(times) // 2] * 1000))
"""


def measure(name: str, layout: str, isa: str | None) -> float | str:
    section, shape, k, batch = MODELS[name]
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}
    if isa:
        env["ONEDNN_MAX_CPU_ISA"] = isa
    p = subprocess.run([sys.executable, "-c", STEP, json.dumps([section, shape, k, batch, layout])],
                       capture_output=True, text=True, env=env)
    return round(float(p.stdout.strip()), 1) if p.returncode == 0 else f"crashed ({p.returncode})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import torch

    avx512 = torch.cpu._is_avx512_supported()
    print(f"torch {torch.__version__}; ATen CPU capability {torch.backends.cpu.get_cpu_capability()}; "
          f"AVX-512: {avx512}\n")
    print("| model (batch) | NCHW | NHWC | NCHW, oneDNN AVX2 | NHWC, oneDNN AVX2 |")
    print("| --- | ---: | ---: | ---: | ---: |")
    out = {}
    for name, (_, _, _, batch) in MODELS.items():
        nhwc = "skipped (crashes)" if avx512 and "resnet" in name else measure(name, "nhwc", None)
        row = {"nchw": measure(name, "nchw", None), "nhwc": nhwc,
               "nchw_avx2": measure(name, "nchw", "AVX2"), "nhwc_avx2": measure(name, "nhwc", "AVX2")}
        out[name] = row
        print(f"| {name} ({batch}) | " + " | ".join(str(v) for v in row.values()) + " |", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
