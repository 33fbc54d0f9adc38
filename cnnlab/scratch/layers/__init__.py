"""Layers of the NumPy engine (NCHW layout, torch-compatible parameter names and shapes)."""

from .activation import LeakyReLU, ReLU, Sigmoid, Softplus, Tanh
from .base import Layer, Parameter
from .container import Sequential
from .conv import Conv2d
from .linear import Linear
from .norm import BatchNorm1d, BatchNorm2d
from .pool import AvgPool2d, MaxPool2d
from .shape import Dropout, Flatten

__all__ = [
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
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softplus",
    "Tanh",
]
