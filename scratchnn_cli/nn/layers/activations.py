"""Activation functions g(Z) and their backward pass dZ = dA * g'(Z).

Every function is numerically stable: no overflow for any finite Z, in float64 or float32.
"""

from __future__ import annotations

import numpy as np


def sigmoid(Z: np.ndarray) -> np.ndarray:
    """sigma(Z) = 1 / (1 + exp(-Z)), computed as exp(Z - log(1 + exp(Z))): never overflows."""
    return np.exp(Z - np.logaddexp(0.0, Z))


def softmax(Z: np.ndarray) -> np.ndarray:
    """softmax(Z)_k = exp(Z_k) / sum_j exp(Z_j) along each row, shifted by the row max (stable)."""
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    E /= E.sum(axis=1, keepdims=True)
    return E


class Activation:
    """One hidden-layer non-linearity: ``forward`` gives A = g(Z), ``backward`` gives dZ."""

    name = "activation"

    def forward(self, Z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, Z: np.ndarray, A: np.ndarray, dA: np.ndarray) -> np.ndarray:
        """dZ = dA * g'(Z); both Z and A = g(Z) are passed so each rule uses the cheaper one.

        ``dA`` is a fresh array owned by the caller: rules may overwrite it and return it."""
        raise NotImplementedError


class Sigmoid(Activation):
    """g(Z) = sigma(Z), g'(Z) = A (1 - A)."""

    name = "sigmoid"

    def forward(self, Z: np.ndarray) -> np.ndarray:
        return sigmoid(Z)

    def backward(self, Z: np.ndarray, A: np.ndarray, dA: np.ndarray) -> np.ndarray:
        return dA * A * (1.0 - A)


class Tanh(Activation):
    """g(Z) = tanh(Z), g'(Z) = 1 - A^2."""

    name = "tanh"

    def forward(self, Z: np.ndarray) -> np.ndarray:
        return np.tanh(Z)

    def backward(self, Z: np.ndarray, A: np.ndarray, dA: np.ndarray) -> np.ndarray:
        return dA * (1.0 - A * A)


class ReLU(Activation):
    """g(Z) = max(Z, 0), g'(Z) = 1 where Z > 0 else 0."""

    name = "relu"

    def forward(self, Z: np.ndarray) -> np.ndarray:
        return np.maximum(Z, 0.0)

    def backward(self, Z: np.ndarray, A: np.ndarray, dA: np.ndarray) -> np.ndarray:
        return np.multiply(dA, Z > 0, out=dA)


class LeakyReLU(Activation):
    """g(Z) = Z where Z > 0 else alpha Z, g'(Z) = 1 or alpha."""

    name = "leaky_relu"

    def __init__(self, alpha: float = 0.01) -> None:
        self.alpha = alpha

    def forward(self, Z: np.ndarray) -> np.ndarray:
        return np.where(Z > 0, Z, self.alpha * Z)

    def backward(self, Z: np.ndarray, A: np.ndarray, dA: np.ndarray) -> np.ndarray:
        return dA * np.where(Z > 0, 1.0, self.alpha).astype(dA.dtype, copy=False)


ACTIVATIONS: dict[str, type[Activation]] = {
    cls.name: cls for cls in (Sigmoid, Tanh, ReLU, LeakyReLU)
}
