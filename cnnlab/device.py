"""The torch set-up of a process: device, CPU threads, seeds, determinism, autocast and the
memory layout of convolutions. Training, evaluation and prediction all start here; a process
of a distributed run also takes its GPU and joins its process group here (distributed.py).
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

from cnnlab import distributed
from cnnlab.errors import ConfigError

Autocast = Callable[[], contextlib.AbstractContextManager]


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA, then Apple MPS, then the CPU; an explicit choice must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' was asked for but no CUDA GPU is visible; use device: auto or cpu")
    if name == "mps" and not _mps_available():
        raise ConfigError("device: 'mps' was asked for but Apple's MPS backend is not available; use device: auto")
    return torch.device(name)


def visible_gpus() -> list[str]:
    """The CUDA GPUs this process may use, as CUDA_VISIBLE_DEVICES names them (indices or UUIDs)."""
    names = os.environ.get("CUDA_VISIBLE_DEVICES")
    if names is not None:
        return [g.strip() for g in names.split(",") if g.strip()]
    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def worker_gpu(index: int, gpus: list[str]) -> str | None:
    """The GPU of study worker `index`: round-robin over several GPUs (more workers than GPUs share
    them evenly); None with fewer than two, where every worker uses the one there is (or the CPU)."""
    return gpus[index % len(gpus)] if len(gpus) >= 2 else None


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: 'auto' means bf16 on GPUs that support it, full precision on CPU."""
    if mode == "off":
        return None
    if mode == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None
    return torch.bfloat16 if mode == "bf16" else torch.float16


def autocast(mode: str, device: torch.device) -> Autocast:
    """A factory of the autocast context every forward pass of a run enters (a no-op in fp32)."""
    dtype = amp_dtype(mode, device)
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def setup(device_name: str, seed: int, threads: int | None = None, compiles: bool = False) -> torch.device:
    """Device, threads, seeds and determinism for one run in this process; under torchrun, this
    rank's GPU (LOCAL_RANK) and the process group too."""
    device = distributed.local_device(resolve_device(device_name), distributed.from_env())
    distributed.init(device)
    if threads:
        torch.set_num_threads(threads)
    seed_everything(seed)
    if device.type == "cpu":
        deterministic(compiles)
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return device


def deterministic(compiles: bool) -> None:
    """torch.use_deterministic_algorithms(True, warn_only=True).

    The public function also sets torch.compile's inductor flag, and importing inductor for
    that costs about 2 s of every run's start-up; runs that do not compile set only the
    kernels' flag, which is all that eager execution reads.
    """
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if compiles or setter is None:
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        setter(True, warn_only=True)


# ----------------------------------------------------------------------------- memory layout

# torch 2.14.1's oneDNN (3.12) corrupts the heap in the weight gradient of small 1x1 convolutions
# with stride 2 on channels_last (NHWC) input: the process dies with SIGSEGV/SIGABRT, or hangs.
# ResNet's projection shortcuts are such layers. It happens with the AVX-512 kernels and, for
# other shapes, with the AVX2 ones too; every other convolution tested computes correct
# gradients in NHWC (bench/channels_last_crash.py sweeps them, tests/test_layouts.py trains every
# family). NHWC is about 20% faster on the CPU for the presets' CNNs (bench/RESULTS.md), so it
# is used where it is proven: on CUDA (cuDNN's fast layout), and on the CPU for models without
# a strided 1x1 convolution.


def channels_last(setting: Literal["auto"] | bool, device: torch.device, model: torch.nn.Module) -> bool:
    """Whether a run's model and batches use the channels_last (NHWC) memory format."""
    if setting is False:
        return False
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        if setting is True:
            raise ConfigError(f"train.channels_last: true is not supported on {device.type}; use auto or false")
        return False
    risky = strided_pointwise_convs(model)
    if risky and setting is True:
        raise ConfigError(f"train.channels_last: true is refused for this model on the CPU: oneDNN's NHWC weight "
                          f"gradient of strided 1x1 convolutions ('{risky[0]}') corrupts memory and kills the run "
                          "(torch 2.14.1; bench/channels_last_crash.py); use auto (NCHW for this model) or false")
    return not risky


def strided_pointwise_convs(model: torch.nn.Module) -> list[str]:
    """Names of the 1x1 convolutions with a stride above 1: the layers NHWC crashes on the CPU."""
    return [name for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)
            and tuple(m.kernel_size) == (1, 1) and tuple(m.stride) != (1, 1)]


def memory_format(use_channels_last: bool) -> torch.memory_format:
    """The torch memory format for a channels_last decision."""
    return torch.channels_last if use_channels_last else torch.contiguous_format
