"""Batch normalisation (Ioffe & Szegedy), per feature of dense input (m, n) or per channel of
images (m, H, W, C): statistics over every axis but the last.

Training:   mu, var = mean and variance over the batch;  x^ = (x - mu) / sqrt(var + eps);
            A = gamma x^ + beta;  running <- momentum running + (1 - momentum) batch statistic
            (the running variance uses the unbiased batch variance, as PyTorch does).
Evaluation: x^ = (x - running_mean) / sqrt(running_var + eps) (the running statistics are
            state, not trained: saved in model.npz and in checkpoints).
Backward (training), with N the number of values per feature and g = dA gamma:
            dx = (N g - sum g - x^ sum(g x^)) / (N sqrt(var + eps));
            dgamma = sum dA x^;  dbeta = sum dA.
The element-wise steps run on the (m, P C) rows of the input (P positions of C channels per
sample), the channel vectors repeated along them (layers/channels.py: long runs for NumPy's
loops), a slice of the samples per thread (nn/threads.py: they touch millions of numbers).
"""

from __future__ import annotations

import numpy as np

from scratchnn_cli.nn.layers.base import Layer, Shape
from scratchnn_cli.nn.layers.channels import column_sum, per_channel
from scratchnn_cli.nn.threads import by_samples


@by_samples
def centre(X: np.ndarray, out: np.ndarray, *, mu: np.ndarray) -> np.ndarray:
    """x - mu."""
    return np.subtract(X, mu, out=out)


@by_samples
def normalise(
    centred: np.ndarray,
    out: np.ndarray,
    *,
    inv_std: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
) -> np.ndarray:
    """x^ = (x - mu) / sqrt(var + eps), in place on x - mu; then A = gamma x^ + beta."""
    x_hat = np.multiply(centred, inv_std, out=centred)
    np.multiply(x_hat, gamma, out=out)
    out += beta
    return out


@by_samples
def dx_training(
    dA: np.ndarray,
    x_hat: np.ndarray,
    out: np.ndarray,
    *,
    dgamma_n: np.ndarray,
    dbeta_n: np.ndarray,
    scale: np.ndarray,
) -> np.ndarray:
    """dx = (dA - x^ dgamma / N - dbeta / N) gamma / sqrt(var + eps), step by step in ``out``
    (in place: each temporary array would cost a pass over memory)."""
    np.multiply(x_hat, dgamma_n, out=out)  # x^ dgamma / N
    np.subtract(dA, out, out=out)  # dA - x^ dgamma / N
    out -= dbeta_n  # - dbeta / N
    out *= scale  # times gamma / sqrt(var + eps)
    return out


class BatchNorm(Layer):
    """gamma, beta (C,) trained; running_mean, running_var (C,) state."""

    kind = "batchnorm"

    def __init__(self, momentum: float = 0.9, epsilon: float = 1e-5) -> None:
        super().__init__()
        if isinstance(momentum, bool) or not (
            isinstance(momentum, float | int) and 0 <= momentum < 1
        ):
            raise ValueError(f"batchnorm: momentum must be a number in [0, 1), got {momentum!r}")
        if isinstance(epsilon, bool) or not (isinstance(epsilon, float | int) and epsilon > 0):
            raise ValueError(f"batchnorm: epsilon must be a positive number, got {epsilon!r}")
        self.momentum, self.epsilon = float(momentum), float(epsilon)

    def param_shapes(self) -> dict[str, Shape]:
        return {"gamma": (self.input_shape[-1],), "beta": (self.input_shape[-1],)}

    def bind(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        super().bind(params, grads)
        dtype = params["gamma"].dtype
        self.running_mean = np.zeros(self.input_shape[-1], dtype=dtype)
        self.running_var = np.ones(self.input_shape[-1], dtype=dtype)

    def initialize(self, rng: np.random.Generator, init: str, mu: float, sigma: float) -> None:
        self.params["gamma"][...] = 1.0
        self.params["beta"][...] = 0.0
        self.running_mean[...] = 0.0
        self.running_var[...] = 1.0

    @property
    def state(self) -> dict[str, np.ndarray]:
        return {"running_mean": self.running_mean, "running_var": self.running_var}

    def forward(self, A_prev: np.ndarray, training: bool = False) -> np.ndarray:
        C = A_prev.shape[-1]
        X = A_prev.reshape(-1, C)  # every value of a feature / channel in one column
        rows = A_prev.reshape(A_prev.shape[0], -1)  # the same numbers, a sample a row
        self.training = training
        n = X.shape[0]
        mean = column_sum(X) / X.dtype.type(n) if training else self.running_mean
        centred = centre(rows, mu=per_channel(mean, rows))
        if training:
            columns = centred.reshape(-1, C)  # a channel a column again
            var = np.einsum("ij,ij->j", columns, columns) / X.dtype.type(n)
            keep = self.momentum
            self.running_mean *= keep
            self.running_mean += (1 - keep) * mean
            self.running_var *= keep
            self.running_var += (1 - keep) * var * (n / max(n - 1, 1))
        else:
            var = self.running_var
        self.inv_std = 1.0 / np.sqrt(var + X.dtype.type(self.epsilon))
        inv_std, gamma, beta = (
            per_channel(v, rows) for v in (self.inv_std, self.params["gamma"], self.params["beta"])
        )
        A = normalise(centred, inv_std=inv_std, gamma=gamma, beta=beta)
        self.x_hat = centred  # (m, P C) rows, P positions of C channels: normalised in place
        return A.reshape(A_prev.shape)

    def backward(self, dA: np.ndarray, need_dA_prev: bool = True) -> np.ndarray:
        """dgamma = sum dA x^, dbeta = sum dA; dx = gamma / sqrt(var + eps) (dA - dbeta / N -
        x^ dgamma / N) in training mode (the same formula as in the module docstring)."""
        shape, x_hat, C = dA.shape, self.x_hat, dA.shape[-1]
        rows = dA.reshape(shape[0], -1)
        dgamma, dbeta = self.grads["gamma"], self.grads["beta"]
        np.einsum("ij,ij->j", dA.reshape(-1, C), x_hat.reshape(-1, C), out=dgamma)
        dbeta[...] = column_sum(dA.reshape(-1, C))
        scale = per_channel(self.params["gamma"] * self.inv_std, rows)
        if not self.training:  # the statistics are constants: an affine map
            return (rows * scale).reshape(shape)
        n = dA.dtype.type(dA.size // C)
        dgamma_n, dbeta_n = per_channel(dgamma / n, rows), per_channel(dbeta / n, rows)
        dX = dx_training(rows, x_hat, dgamma_n=dgamma_n, dbeta_n=dbeta_n, scale=scale)
        return dX.reshape(shape)

    def describe(self) -> str:
        return f"batchnorm(momentum {self.momentum:g})"
