"""The model registry: `model.name` -> builder. Builders receive `in_channels`, `num_classes`
and `input_size` from the data, and their own options from the `model:` section."""

from __future__ import annotations

from cnnlab.registry import Registry

MODELS = Registry("model", "model", context=("in_channels", "num_classes", "input_size", "input_shape"))
CONTEXT = ("in_channels", "num_classes", "input_size")
