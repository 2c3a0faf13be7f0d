"""Layers: each has ``forward(A_prev, training) -> A`` and ``backward(dA) -> dA_prev`` (base.py).

``LAYERS`` maps the ``type`` of a ``model.layers`` entry to its class.
"""

from scratchnn_cli.nn.layers.activations import (
    ACTIVATIONS,
    Activation,
    LeakyReLU,
    ReLU,
    Sigmoid,
    Tanh,
    sigmoid,
    softmax,
)
from scratchnn_cli.nn.layers.base import Layer, Shape
from scratchnn_cli.nn.layers.batchnorm import BatchNorm
from scratchnn_cli.nn.layers.conv import Conv2D
from scratchnn_cli.nn.layers.dense import Dense
from scratchnn_cli.nn.layers.dropout import Dropout
from scratchnn_cli.nn.layers.flatten import Flatten
from scratchnn_cli.nn.layers.pooling import AvgPool2D, GlobalAvgPool, MaxPool2D

LAYERS: dict[str, type[Layer]] = {
    cls.kind: cls
    for cls in (
        Dense,
        Conv2D,
        MaxPool2D,
        AvgPool2D,
        GlobalAvgPool,
        BatchNorm,
        Dropout,
        Flatten,
        *ACTIVATIONS.values(),
    )
}

__all__ = [
    "ACTIVATIONS",
    "LAYERS",
    "Activation",
    "AvgPool2D",
    "BatchNorm",
    "Conv2D",
    "Dense",
    "Dropout",
    "Flatten",
    "GlobalAvgPool",
    "Layer",
    "LeakyReLU",
    "MaxPool2D",
    "ReLU",
    "Shape",
    "Sigmoid",
    "Tanh",
    "sigmoid",
    "softmax",
]
