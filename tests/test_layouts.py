"""Every model family trains in every memory layout cnnlab may choose on this machine.

oneDNN's AVX-512 kernels crash the process on NHWC input (cnnlab/device.py); a crash is not a
test failure but the end of pytest, so each layout runs in its own process and the test names
the case it died in. What runs: `train.channels_last: auto` (the layout cnnlab picks here),
false (NCHW), and true with oneDNN held to its AVX2 kernels (the NHWC cnnlab picks on AVX2
CPUs, and here when ONEDNN_MAX_CPU_ISA=AVX2 is set).
"""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MNIST, ROOT
from layout_probe import FAMILIES

LAYOUTS = {"auto": {}, "nchw": {}, "nhwc": {"ONEDNN_MAX_CPU_ISA": "AVX2"}}


@pytest.mark.slow
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_family_trains_two_steps(layout, cifar_zip_small, tmp_path):
    if layout == "nhwc" and platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("NHWC on the CPU is only chosen on x86 (oneDNN AVX2 kernels)")
    env = {**os.environ, **LAYOUTS[layout], "PYTHONPATH": str(ROOT), "CNNLAB_CACHE_DIR": str(tmp_path / "cache")}
    if layout != "nhwc":
        env.pop("ONEDNN_MAX_CPU_ISA", None)
    p = subprocess.run([sys.executable, str(Path(__file__).parent / "layout_probe.py"), str(cifar_zip_small),
                        str(MNIST), str(tmp_path / "runs"), layout], capture_output=True, text=True, env=env, timeout=900)
    started = [ln.split()[1] for ln in p.stdout.splitlines() if ln.startswith("start ")]
    done = {ln.split()[1]: ln.split()[2] for ln in p.stdout.splitlines() if ln.startswith("done ")}
    if p.returncode != 0:
        how = signal.Signals(-p.returncode).name if p.returncode < 0 else f"exit code {p.returncode}"
        pytest.fail(f"layout {layout}: the process died ({how}) while training {started[-1] if started else '?'}; "
                    f"last lines:\n{p.stderr[-2000:]}")
    assert list(done) == [name for name, _, _ in FAMILIES]
    if layout == "nchw":
        assert set(done.values()) == {"nchw"}
    if layout == "nhwc":
        assert set(done.values()) == {"nhwc"}
