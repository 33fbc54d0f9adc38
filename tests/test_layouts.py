"""Every model family trains in every memory layout cnnlab may choose on this machine.

oneDNN crashes the process on some NHWC input (cnnlab/device.py); a crash is not a test
failure but the end of pytest, so each layout runs in its own process and the test names the
case it died in. What runs: `train.channels_last: auto` (the layout cnnlab picks for each
family: NHWC on the CPU unless the model has a strided 1x1 convolution) and false (NCHW).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MNIST, ROOT
from layout_probe import FAMILIES

# NCHW everywhere is heavy (`make test-all`): auto already trains every family, NCHW where it must.
LAYOUTS = ["auto", pytest.param("nchw", marks=pytest.mark.heavy)]


@pytest.mark.slow
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_family_trains_two_steps(layout, cifar_zip_small, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CNNLAB_CACHE_DIR": str(tmp_path / "cache")}
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
    else:  # the families with strided 1x1 convolutions (projection shortcuts) stay NCHW
        assert done["cnn"] == done["small_vgg"] == done["torchvision-mobilenet"] == "nhwc"
        assert done["resnet20"] == done["resnet11-w8"] == done["torchvision-resnet18"] == "nchw"
