"""The maths of scratchnn, in NumPy, free of I/O: layers, losses, network, init, optimizers.

Conventions (one line each, as in the formulas): samples are rows, so a dense layer computes
``Z = A_prev @ W + b`` with ``W`` of shape (n_in, n_out); ``A = g(Z)`` is its activation;
``dZ``, ``dW``, ``db``, ``dA`` are the gradients of the cost J with respect to those arrays.
"""

from scratchnn_cli.nn.layers import ACTIVATIONS, LAYERS, Activation, Dense, Layer, sigmoid, softmax
from scratchnn_cli.nn.losses import BinaryCrossEntropy, Loss, SoftmaxCrossEntropy
from scratchnn_cli.nn.network import Network

__all__ = [
    "ACTIVATIONS",
    "LAYERS",
    "Activation",
    "BinaryCrossEntropy",
    "Dense",
    "Layer",
    "Loss",
    "Network",
    "SoftmaxCrossEntropy",
    "sigmoid",
    "softmax",
]
