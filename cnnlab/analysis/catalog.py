"""Every analysis `cnnlab analyze` knows: importing the modules registers them (registry.py)."""

from cnnlab.analysis import cam, features, kernels, landscape, mistakes  # noqa: F401
from cnnlab.analysis.registry import ANALYSES

__all__ = ["ANALYSES"]
