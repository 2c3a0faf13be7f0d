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
from scratchnn_cli.nn.layers.dense import Dense
from scratchnn_cli.nn.layers.dropout import Dropout
from scratchnn_cli.nn.layers.flatten import Flatten

LAYERS: dict[str, type[Layer]] = {
    cls.kind: cls for cls in (Dense, Dropout, Flatten, *ACTIVATIONS.values())
}

__all__ = [
    "ACTIVATIONS",
    "LAYERS",
    "Activation",
    "Dense",
    "Dropout",
    "Flatten",
    "Layer",
    "LeakyReLU",
    "ReLU",
    "Shape",
    "Sigmoid",
    "Tanh",
    "sigmoid",
    "softmax",
]
