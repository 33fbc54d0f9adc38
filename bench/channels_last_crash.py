"""Minimal reproduction of the CPU crash behind `train.channels_last: auto` (issue: never crash).

On an AVX-512 CPU, torch 2.14.1's oneDNN (3.12) corrupts the heap in the weight gradient of a
small 1x1 stride-2 convolution when its input is channels_last (NHWC): the process dies with
"double free or corruption", SIGSEGV or SIGABRT, a few steps later. The same convolution in
NCHW, or in NHWC with oneDNN held to its AVX2 kernels (ONEDNN_MAX_CPU_ISA=AVX2), is fine.
ResNet's first projection shortcut (conv 8->16, 1x1, stride 2, at 64x64) is such a layer.

Each case runs in its own process (a crash must not end the sweep); the table says how it
ended. Prints Markdown for bench/RESULTS.md:

    .venv/bin/python bench/channels_last_crash.py [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import signal
import subprocess
import sys

CASE = r"""
import sys, torch
from torch import nn
ci, co, size, kernel, layout = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
fmt = torch.channels_last if layout == "nhwc" else torch.contiguous_format
torch.manual_seed(0)
conv = nn.Conv2d(ci, co, kernel, stride=2, padding=kernel // 2, bias=False)
x = torch.randn(4, ci, size, size).contiguous(memory_format=fmt)   # needs no gradient, as a network's input
for _ in range(20):
    conv(x).square().sum().backward()
w = conv.weight.detach().double().requires_grad_(True)            # float64 reference of the same gradient
nn.functional.conv2d(x.double(), w, stride=2, padding=kernel // 2).square().sum().backward()
err = float((conv.weight.grad.double() / 20 - w.grad).abs().max() / w.grad.abs().max())
print(f"{err:.1e}")
"""


def run_case(ci: int, co: int, size: int, kernel: int, layout: str, isa: str | None) -> str:
    """How one case ended: 'ok (rel. err ...)', the signal that killed it, or a hang."""
    env = dict(os.environ)
    env.pop("ONEDNN_MAX_CPU_ISA", None)
    if isa:
        env["ONEDNN_MAX_CPU_ISA"] = isa
    try:
        p = subprocess.run([sys.executable, "-c", CASE, str(ci), str(co), str(size), str(kernel), layout],
                           capture_output=True, text=True, env=env, timeout=60)
    except subprocess.TimeoutExpired:  # a corrupted heap can deadlock instead of crashing
        return "**hung** (killed after 60 s)"
    if p.returncode == 0:
        return f"ok ({p.stdout.strip()})"
    if p.returncode < 0:
        return f"**{signal.Signals(-p.returncode).name}**"
    return f"**exit {p.returncode}**"


def cpu_flags() -> str:
    try:
        text = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        return "unknown"
    model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "?")
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    isa = sorted(f for f in flags if f.startswith(("avx512", "amx")) or f in ("avx2", "fma"))
    return f"{model}; {' '.join(isa)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the minimal case only")
    args = ap.parse_args()
    import torch

    print(f"torch {torch.__version__}, ATen CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{platform.python_version()}; CPU: {cpu_flags()}\n")
    cases = [(8, 16, 64, 1)]
    if not args.quick:
        cases += [c for c in itertools.product((3, 8, 16), (16, 32), (32, 64), (1, 3)) if c != (8, 16, 64, 1)]
    print("| conv (in -> out, kernel, stride 2) | input | NCHW | NHWC | NHWC, ONEDNN_MAX_CPU_ISA=AVX2 |")
    print("| --- | --- | --- | --- | --- |")
    for ci, co, size, kernel in cases:
        cells = [run_case(ci, co, size, kernel, "nchw", None), run_case(ci, co, size, kernel, "nhwc", None),
                 run_case(ci, co, size, kernel, "nhwc", "AVX2")]
        print(f"| {ci} -> {co}, {kernel}x{kernel} | 4x{ci}x{size}x{size} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
