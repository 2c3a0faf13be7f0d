"""A faithful port of the course notebook's training loop: single-sample SGD, one element at a time.

The baseline of the ``single-sample`` benchmark and the oracle of a test; not used by scratchnn.
For a sigmoid network with one sigmoid output unit and binary cross-entropy (sizes ending in 1).
"Faithful": the notebook's style, nothing made faster or slower. Float64 arrays ``W[l]`` (n_in,
n_out) and ``b[l]`` read and written element by element (``W[i][j]``); every multiply-add, delta
and update its own iteration of nested Python loops; ``np.exp`` on one number; the cost computed
at every step; samples drawn with replacement an epoch at a time by ``rng.integers(0, N, size=N)``
as our trainer draws them (same seed, same order). Not copied: the notebook's bias update once per
weight (a bug); the deltas of a layer come from its weights before they are updated.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np


def sigmoid(z: float) -> float:
    """sigma(z) = 1 / (1 + exp(-z)) of one number, with ``np.exp`` as in the notebook."""
    return 1.0 / (1.0 + np.exp(-z))


class LoopNet:
    """A sigmoid network stored as NumPy arrays and trained with per-element Python loops."""

    def __init__(self, params: Sequence[np.ndarray]) -> None:
        """Copy ``params`` = [W0, b0, W1, b1, ...]: W of shape (n_in, n_out), b of shape (n_out)."""
        if len(params) % 2 or not params:
            raise ValueError("params must be [W0, b0, W1, b1, ...]")
        self.W = [np.array(p, dtype=np.float64) for p in params[0::2]]
        self.b = [np.array(p, dtype=np.float64) for p in params[1::2]]
        for W, b in zip(self.W, self.b, strict=True):
            if W.ndim != 2 or b.shape != (W.shape[1],):
                raise ValueError(f"W of shape {W.shape} does not match b of shape {b.shape}")
        if self.W[-1].shape[1] != 1:
            raise ValueError("binary cross-entropy needs exactly one output unit")

    def params(self) -> list[np.ndarray]:
        """[W0, b0, W1, b1, ...], in the order of ``Network.params()``."""
        return [p for W, b in zip(self.W, self.b, strict=True) for p in (W, b)]

    def forward(self, x: np.ndarray) -> list[np.ndarray]:
        """The activations of every layer, input first: [x, a_1, ..., a_L]."""
        activations = [x]
        a_prev = x
        for W, b in zip(self.W, self.b, strict=True):
            n_in, n_out = W.shape
            a = np.zeros(n_out)
            for j in range(n_out):
                z = b[j]
                for i in range(n_in):
                    z += W[i][j] * a_prev[i]
                a[j] = sigmoid(z)
            activations.append(a)
            a_prev = a
        return activations

    def step(self, x: np.ndarray, y: float, lr: float) -> float:
        """One SGD step on the sample (x, y); returns that sample's cost (before the update)."""
        activations = self.forward(x)
        out = activations[-1][0]
        cost = -(y * np.log(out) + (1 - y) * np.log(1 - out))

        n_out = self.W[-1].shape[1]
        delta = np.zeros(n_out)
        for j in range(n_out):
            delta[j] = activations[-1][j] - y  # dJ/dz of sigmoid + cross-entropy
        for layer in range(len(self.W) - 1, -1, -1):
            W, b, a_prev = self.W[layer], self.b[layer], activations[layer]
            n_in, n_out = W.shape
            if layer > 0:  # the previous layer's deltas, from the weights before this update
                delta_prev = np.zeros(n_in)
                for i in range(n_in):
                    s = 0.0
                    for j in range(n_out):
                        s += W[i][j] * delta[j]
                    delta_prev[i] = s * a_prev[i] * (1 - a_prev[i])
            for i in range(n_in):
                for j in range(n_out):
                    W[i][j] -= lr * delta[j] * a_prev[i]
            for j in range(n_out):
                b[j] -= lr * delta[j]  # once per unit, not once per weight (the notebook's bug)
            if layer > 0:
                delta = delta_prev
        return cost

    def train(
        self, X: np.ndarray, y: np.ndarray, lr: float, n_steps: int, rng: np.random.Generator
    ) -> tuple[list[float], float]:
        """``n_steps`` SGD steps on random samples, an epoch (N = len(X) steps) of indices drawn
        at a time as ``train()`` draws them; returns (mean cost of each epoch, seconds)."""
        N = X.shape[0]
        epoch_costs: list[float] = []
        done = 0
        start = time.perf_counter()
        while done < n_steps:
            n = min(N, n_steps - done)
            samples = rng.integers(0, N, size=n)
            total = 0.0
            for k in range(n):
                i = samples[k]
                total += self.step(X[i], y[i], lr)
            epoch_costs.append(total / n)
            done += n
        return epoch_costs, time.perf_counter() - start
