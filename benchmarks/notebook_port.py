"""A faithful port of the course notebook's training loop: single-sample SGD, one element at a time.

This is the baseline the ``single-sample`` benchmark (``benchmarks/bench.py``) measures our
vectorised trainer against. It is *not* used by scratchnn itself.

What "faithful" means here
--------------------------
The notebook trained a sigmoid network by single-sample SGD and wrote every step as per-element
Python loops over NumPy arrays. This port keeps exactly that style, and changes nothing that would
make it faster or slower:

* **Same storage.** Weights live in NumPy float64 arrays ``W[l]`` of shape (n_in, n_out) and biases
  in arrays ``b[l]`` of shape (n_out,) -- the same layout as ``scratchnn_cli.nn`` -- and they are
  read and written element by element, as ``W[i][j]`` (a row view, then a scalar), the way the
  notebook indexed them. Activations and deltas are NumPy arrays filled one element at a time.
* **Same per-element loops.** Forward: for every unit ``j``, ``z = b[j]`` then
  ``z += W[i][j] * a[i]`` over its inputs ``i``, then ``sigmoid(z)`` with ``np.exp`` on that one
  number. Backward: every delta ``delta_prev[i] = sum_j W[i][j] * delta[j] * a[i] * (1 - a[i])``
  and every update ``W[i][j] -= lr * delta[j] * a[i]`` is its own iteration of nested loops.
* **Same arithmetic.** sigmoid(z) = 1 / (1 + exp(-z)); the per-sample binary cross-entropy
  ``-(y log a + (1 - y) log(1 - a))`` is computed at every step (the notebook tracked the epoch's
  mean cost for its stopping rule); the output delta is ``a - y``.
* **Same sampling.** Each step trains on one training sample drawn uniformly at random with
  replacement. The indices are drawn an epoch (N draws) at a time, with the very call our trainer
  makes (``rng.integers(0, N, size=N)``), so that the same seed gives both the same sample order
  (this is what lets the benchmark check that both compute the same weights). Drawing in blocks
  only makes the loops a little faster than drawing one index per step, so it favours the loops.

What is deliberately *not* copied: the notebook's logistic regression updated the bias once per
weight in each step (inside the loop over the inputs). That is a bug; here every bias is updated
exactly once per step, ``b[j] -= lr * delta[j]``, as the gradient says. And the deltas of a layer
are computed from its weights *before* they are updated, as backpropagation requires (our trainer
does the same: all gradients first, then the update).

The network has sigmoid hidden units and one sigmoid output unit trained with binary cross-entropy,
for any list of layer sizes ending in 1, e.g. [2, 5, 1] or [784, 10, 5, 1].
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

    @classmethod
    def random(cls, sizes: Sequence[int], rng: np.random.Generator, sigma: float = 0.1) -> LoopNet:
        """Weights ~ Normal(0, sigma) for layer sizes [n_0, n_1, ..., 1]."""
        params: list[np.ndarray] = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
            params.append(rng.normal(0.0, sigma, size=(n_in, n_out)))
            params.append(rng.normal(0.0, sigma, size=n_out))
        return cls(params)

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
        """``n_steps`` SGD steps on random samples; returns (mean cost of each epoch, seconds).

        An epoch is N = len(X) steps; its sample indices come from ``rng.integers(0, N, size=N)``,
        the same draws as ````training.loop.train`` makes: the same seed, the same order.
        """
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
