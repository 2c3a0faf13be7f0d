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
"""

from __future__ import annotations

import numpy as np

from scratchnn_cli.nn.layers.base import Layer, Shape


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
        axes = tuple(range(A_prev.ndim - 1))
        gamma, beta = self.params["gamma"], self.params["beta"]
        self.training = training
        if training:
            mean, var = A_prev.mean(axis=axes), A_prev.var(axis=axes)
            n = A_prev.size // A_prev.shape[-1]
            keep = self.momentum
            self.running_mean *= keep
            self.running_mean += (1 - keep) * mean
            self.running_var *= keep
            self.running_var += (1 - keep) * var * (n / max(n - 1, 1))
        else:
            mean, var = self.running_mean, self.running_var
        self.inv_std = 1.0 / np.sqrt(var + A_prev.dtype.type(self.epsilon))
        self.x_hat = (A_prev - mean) * self.inv_std
        return self.x_hat * gamma + beta

    def backward(self, dA: np.ndarray, need_dA_prev: bool = True) -> np.ndarray:
        axes = tuple(range(dA.ndim - 1))
        x_hat, gamma = self.x_hat, self.params["gamma"]
        np.sum(dA * x_hat, axis=axes, out=self.grads["gamma"])
        np.sum(dA, axis=axes, out=self.grads["beta"])
        g = dA * gamma
        if not self.training:  # the statistics are constants: an affine map
            return g * self.inv_std
        n = dA.size // dA.shape[-1]
        return (n * g - g.sum(axis=axes) - x_hat * (g * x_hat).sum(axis=axes)) * (self.inv_std / n)

    def describe(self) -> str:
        return f"batchnorm(momentum {self.momentum:g})"
