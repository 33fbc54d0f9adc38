"""The torch set-up of a process: device, CPU threads, seeds, determinism, autocast and the
memory layout of convolutions. Training, evaluation and prediction all start here.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

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
    """Device, threads, seeds and determinism for one run in this process."""
    device = resolve_device(device_name)
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

# oneDNN's AVX-512 kernels (torch 2.14.1, oneDNN 3.12) corrupt the heap in the weight gradient of
# small 1x1 stride-2 convolutions on channels_last (NHWC) input: ResNet's first projection
# shortcut kills the process with SIGSEGV/SIGABRT (bench/channels_last_crash.py reproduces it).
# NCHW, or NHWC on oneDNN's AVX2 kernels, is fine; so NHWC is chosen only where it is proven
# safe and faster (bench/RESULTS.md): CUDA, and x86 CPUs on which oneDNN runs AVX2 kernels.
_BELOW_AVX512 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2")


def channels_last(setting: Literal["auto"] | bool, device: torch.device) -> bool:
    """Whether a run's model and batches use the channels_last (NHWC) memory format."""
    if setting is False:
        return False
    safe, why = _nhwc_safe(device)
    if setting is True and not safe:
        raise ConfigError(f"train.channels_last: true is refused here: {why}; use auto (NCHW on this machine) "
                          "or false")
    return safe


def _nhwc_safe(device: torch.device) -> tuple[bool, str]:
    """(NHWC is proven safe and faster on this device, why not when it is not)."""
    if device.type == "cuda":
        return True, ""
    if device.type != "cpu":
        return False, f"channels_last is not proven on {device.type}"
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False, f"channels_last is not proven on {platform.machine()} CPUs"
    capped = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()
    if torch.cpu._is_avx512_supported() and capped not in _BELOW_AVX512:
        return False, ("on AVX-512 CPUs oneDNN's NHWC weight gradient of 1x1 stride-2 convolutions corrupts memory "
                       "(torch 2.14.1; bench/channels_last_crash.py); run with ONEDNN_MAX_CPU_ISA=AVX2 to use "
                       "oneDNN's AVX2 kernels, which are safe")
    return True, ""


def memory_format(use_channels_last: bool) -> torch.memory_format:
    """The torch memory format for a channels_last decision."""
    return torch.channels_last if use_channels_last else torch.contiguous_format
