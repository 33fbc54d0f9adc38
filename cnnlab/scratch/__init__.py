"""A NumPy-only CNN engine: layers, losses, optimizers, initialisation, .npz io, gradient checks.

Everything runs on NCHW arrays in the input's dtype (float32 for training, float64 for gradient
checks). Parameter names and shapes follow torch, so weights move between the two unchanged:
cnnlab builds a network with its torch builders and copies it in (cnnlab/training/numpy_engine.py),
and the one training loop drives it, with cnnlab's schedules, data and run directory.
"""

from .io import load_model, load_npz, save_model, save_npz
from .layers import (
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Layer,
    LeakyReLU,
    Linear,
    MaxPool2d,
    Parameter,
    ReLU,
    Sequential,
    Sigmoid,
    Softplus,
    Tanh,
)
from .losses import MultiClassHinge, SoftmaxCrossEntropy
from .optim import SGD, Adam
from .threads import blas_threads

__all__ = [
    "SGD",
    "Adam",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "Dropout",
    "Flatten",
    "Layer",
    "LeakyReLU",
    "Linear",
    "MaxPool2d",
    "MultiClassHinge",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "SoftmaxCrossEntropy",
    "Softplus",
    "Tanh",
    "blas_threads",
    "load_model",
    "load_npz",
    "save_model",
    "save_npz",
]
