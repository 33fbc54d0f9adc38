"""A NumPy-only CNN engine: layers, losses, optimizers, schedules and checkpoints.

Everything runs on NCHW arrays in the input's dtype (float32 for training, float64 for gradient
checks). Parameter names and shapes follow torch, so weights move between the two unchanged.
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
from .models import build, lenet
from .optim import SGD, Adam
from .schedule import ExponentialLR, StepLR
from .threads import blas_threads

__all__ = [
    "SGD",
    "Adam",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "Dropout",
    "ExponentialLR",
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
    "StepLR",
    "Tanh",
    "blas_threads",
    "build",
    "lenet",
    "load_model",
    "load_npz",
    "save_model",
    "save_npz",
]
