"""Dataset formats: each is one function registered under the name used in `data.format`
(registry.py). The readers import torch lazily, so checking a config does not import it."""

# Importing the modules registers the formats.
from cnnlab.data.formats import (  # noqa: F401
    cifar,
    csv_pixels,
    idx,
    image_folder,
    mat,
    npy_csv,
    tiny_imagenet,
)
from cnnlab.data.formats.registry import FORMATS

__all__ = ["FORMATS"]
