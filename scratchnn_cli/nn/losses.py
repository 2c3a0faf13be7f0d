"""Output layer + cross-entropy cost, computed from the logits Z of the last layer (stable).

Pairing the output activation with its cost gives the famous simple gradient dZ = (A - Y) / m,
and lets the cost use log-sum-exp instead of log(A), so it never takes log(0).
"""

from __future__ import annotations

import numpy as np

from scratchnn_cli.nn.layers.activations import sigmoid, softmax


class Loss:
    """Output activation and its cross-entropy cost J, both taking the logits Z (m, k)."""

    name = "loss"

    def targets(self, y: np.ndarray, n_classes: int, dtype: np.dtype) -> np.ndarray:
        """Encode integer labels y (m,) as the target matrix Y the cost compares A with."""
        raise NotImplementedError

    def output(self, Z: np.ndarray) -> np.ndarray:
        """A = g(Z): the predicted probabilities."""
        raise NotImplementedError

    def costs(self, Z: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """Per-sample costs L_i (m,); J is their mean."""
        raise NotImplementedError

    def cost(self, Z: np.ndarray, Y: np.ndarray) -> float:
        """J = mean_i L_i."""
        return float(self.costs(Z, Y).mean())

    def dZ(self, Z: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """dJ/dZ = (A - Y) / m for both sigmoid + binary and softmax + categorical cross-entropy."""
        dZ = self.output(Z) - Y
        m = Z.shape[0]  # samples are rows
        if m > 1:
            dZ /= m
        return dZ

    def predict(self, Z: np.ndarray) -> np.ndarray:
        """Class labels from logits."""
        raise NotImplementedError


class BinaryCrossEntropy(Loss):
    """Sigmoid output, L = -[y log a + (1 - y) log(1 - a)] = log(1 + e^z) - y z."""

    name = "sigmoid"

    def targets(self, y: np.ndarray, n_classes: int, dtype: np.dtype) -> np.ndarray:
        return y.reshape(-1, 1).astype(dtype)

    def output(self, Z: np.ndarray) -> np.ndarray:
        return sigmoid(Z)

    def costs(self, Z: np.ndarray, Y: np.ndarray) -> np.ndarray:
        return (np.logaddexp(0.0, Z) - Y * Z)[..., 0]

    def predict(self, Z: np.ndarray) -> np.ndarray:
        return (Z[..., 0] > 0).astype(np.int64)


class SoftmaxCrossEntropy(Loss):
    """Softmax output, L = -sum_k y_k log a_k = logsumexp(z) - z_y."""

    name = "softmax"

    def targets(self, y: np.ndarray, n_classes: int, dtype: np.dtype) -> np.ndarray:
        Y = np.zeros((y.shape[0], n_classes), dtype=dtype)
        Y[np.arange(y.shape[0]), y] = 1.0
        return Y

    def output(self, Z: np.ndarray) -> np.ndarray:
        return softmax(Z)

    def costs(self, Z: np.ndarray, Y: np.ndarray) -> np.ndarray:
        z_max = Z.max(axis=-1, keepdims=True)
        log_sum = np.log(np.exp(Z - z_max).sum(axis=-1)) + z_max[..., 0]
        return log_sum - (Z * Y).sum(axis=-1)

    def predict(self, Z: np.ndarray) -> np.ndarray:
        return Z.argmax(axis=-1)


LOSSES: dict[str, type[Loss]] = {"sigmoid": BinaryCrossEntropy, "softmax": SoftmaxCrossEntropy}
