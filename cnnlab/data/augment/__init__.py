"""Augmentations: registered ops usable from YAML, run as batched tensor ops on in-memory
data and as their torchvision v2 twins, one image at a time, on file-backed data.

Adding an op is one registered function in one of the modules below: its keyword
parameters are its YAML options, and it returns an Augmentation (base.py) that knows its
batched form, its shape rule and its v2 equivalent.
"""

# Importing the modules registers the ops.
from cnnlab.data.augment import color, compose, erase, geometry, mix  # noqa: F401
from cnnlab.data.augment.base import AUGMENTATIONS, Augmentation, Batch, Rng, Shape
from cnnlab.data.augment.mix import LABEL_MIXING, hard_labels, soft_labels
from cnnlab.data.augment.pipeline import Pipeline, build_pipeline, mixes_labels, resolve_ops

__all__ = [
    "AUGMENTATIONS", "LABEL_MIXING", "Augmentation", "Batch", "Pipeline", "Rng", "Shape",
    "build_pipeline", "hard_labels", "mixes_labels", "resolve_ops", "soft_labels",
]
