"""Every dataset format cnnlab reads: importing the modules registers them (registry.py)."""

from cnnlab.data.read import (  # noqa: F401
    cifar,
    csv_images,
    csv_pixels,
    hf,
    idx,
    image_folder,
    mat,
    npy_csv,
    tiny_imagenet,
)
from cnnlab.data.read.registry import FORMATS

__all__ = ["FORMATS"]
