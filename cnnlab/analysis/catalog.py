"""Every analysis `cnnlab analyze` knows: importing the modules registers them (registry.py)."""

from cnnlab.analysis import kernels  # noqa: F401
from cnnlab.analysis.registry import ANALYSES

__all__ = ["ANALYSES"]
