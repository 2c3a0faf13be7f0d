"""Update rules: one small class per rule, all with the same interface.

An optimizer is built with the list of parameter arrays ``params`` (updated in place) and is
called as ``step(grads)`` with the gradients in the same order.
"""

from __future__ import annotations

import numpy as np


class Optimizer:
    """Base class: holds the parameters and the learning rate; ``step`` applies one update."""

    def __init__(self, params: list[np.ndarray], lr: float) -> None:
        self.params = params
        self.lr = lr

    def step(self, grads: list[np.ndarray]) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Plain gradient descent: theta <- theta - lr * dtheta."""

    def step(self, grads: list[np.ndarray]) -> None:
        lr = self.lr
        for p, g in zip(self.params, grads, strict=True):
            p -= lr * g
