"""Activation layers A = g(Z), and their backward pass dZ = dA * g'(Z).

Every function is numerically stable: no overflow for any finite Z, in float64 or float32.
The output activation (sigmoid or softmax) is not a layer: it is fused with the cross-entropy
in the loss (``nn/losses.py``), which is what makes dZ = (A - Y) / m exact and stable.
"""

from __future__ import annotations

import numpy as np

from scratchnn_cli.nn.layers.base import Layer
from scratchnn_cli.nn.threads import by_samples


def sigmoid(Z: np.ndarray) -> np.ndarray:
    """sigma(Z) = 1 / (1 + exp(-Z)), computed as exp(Z - log(1 + exp(Z))): never overflows."""
    return np.exp(Z - np.logaddexp(0.0, Z))


def softmax(Z: np.ndarray) -> np.ndarray:
    """softmax(Z)_k = exp(Z_k) / sum_j exp(Z_j) along each row, shifted by the row max (stable)."""
    E = np.exp(Z - Z.max(axis=-1, keepdims=True))
    E /= E.sum(axis=-1, keepdims=True)
    return E


# ReLU is the one activation of the image networks, where each pass touches millions of numbers:
# split by samples over the threads (nn/threads.py), which pays there.
@by_samples
def relu(Z: np.ndarray, out: np.ndarray) -> np.ndarray:
    """max(Z, 0)."""
    return np.maximum(Z, 0.0, out=out)


@by_samples
def relu_backward(dA: np.ndarray, Z: np.ndarray, out: np.ndarray) -> np.ndarray:
    """dZ = dA * g'(Z) = dA [Z > 0]."""
    return np.multiply(dA, Z > 0, out=out)


class Activation(Layer):
    """A = g(Z) element-wise; caches Z and A, since each g' is cheapest from one of them."""

    kind = "activation"

    def forward(self, Z: np.ndarray, training: bool = False) -> np.ndarray:
        self.Z = Z
        self.A = self.g(Z)
        return self.A

    def backward(self, dA: np.ndarray, need_dA_prev: bool = True) -> np.ndarray:
        """dZ = dA * g'(Z) (may overwrite ``dA``)."""
        return self.dZ(self.Z, self.A, dA)

    def g(self, Z: np.ndarray) -> np.ndarray:
        """The activation function."""
        raise NotImplementedError

    def dZ(self, Z: np.ndarray, A: np.ndarray, dA: np.ndarray) -> np.ndarray:
        """dA * g'(Z), given both Z and A = g(Z); may overwrite ``dA`` and return it."""
        raise NotImplementedError


class Sigmoid(Activation):
    """g(Z) = sigma(Z), g'(Z) = A (1 - A)."""

    kind = "sigmoid"

    def g(self, Z: np.ndarray) -> np.ndarray:
        return sigmoid(Z)

    def dZ(self, Z: np.ndarray, A: np.ndarray, dA: np.ndarray) -> np.ndarray:
        return dA * A * (1.0 - A)


class Tanh(Activation):
    """g(Z) = tanh(Z), g'(Z) = 1 - A^2."""

    kind = "tanh"

    def g(self, Z: np.ndarray) -> np.ndarray:
        return np.tanh(Z)

    def dZ(self, Z: np.ndarray, A: np.ndarray, dA: np.ndarray) -> np.ndarray:
        return dA * (1.0 - A * A)


class ReLU(Activation):
    """g(Z) = max(Z, 0), g'(Z) = 1 where Z > 0 else 0."""

    kind = "relu"

    def g(self, Z: np.ndarray) -> np.ndarray:
        return relu(Z)

    def dZ(self, Z: np.ndarray, A: np.ndarray, dA: np.ndarray) -> np.ndarray:
        return relu_backward(dA, Z, out=dA)  # in place


class LeakyReLU(Activation):
    """g(Z) = Z where Z > 0 else alpha Z, g'(Z) = 1 or alpha (alpha: the slope below 0)."""

    kind = "leaky_relu"

    def __init__(self, alpha: float = 0.01) -> None:
        super().__init__()
        if isinstance(alpha, bool) or not (isinstance(alpha, float | int) and 0 <= alpha < 1):
            raise ValueError(f"leaky_relu: alpha must be a number in [0, 1), got {alpha!r}")
        self.alpha = float(alpha)

    def g(self, Z: np.ndarray) -> np.ndarray:
        return np.where(Z > 0, Z, self.alpha * Z)

    def dZ(self, Z: np.ndarray, A: np.ndarray, dA: np.ndarray) -> np.ndarray:
        return dA * np.where(Z > 0, 1.0, self.alpha).astype(dA.dtype, copy=False)

    def describe(self) -> str:
        return f"leaky_relu(alpha={self.alpha:g})"


ACTIVATIONS: dict[str, type[Activation]] = {
    cls.kind: cls for cls in (Sigmoid, Tanh, ReLU, LeakyReLU)
}
