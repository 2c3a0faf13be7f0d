"""L1 and L2 penalties on the weight matrices W (never the biases b).

    J_total = J_data + l1 * sum |W| + (l2 / 2) * sum W^2,   so   dW += l1 * sign(W) + l2 * W.

The penalty does not depend on the batch size: J_data is a mean over the samples, the penalty is
added once. Pass only the weights, e.g. ``net.params()[0::2]`` and ``net.grads()[0::2]``.
At W = 0 the L1 term uses the subgradient sign(0) = 0.
"""

from __future__ import annotations

import numpy as np

from scratchnn_cli.nn.checks import non_negative


def _check(l1: float, l2: float) -> tuple[float, float]:
    return non_negative("l1", l1), non_negative("l2", l2)  # floats keep float32 float32


def penalty(weights: list[np.ndarray], l1: float, l2: float) -> float:
    """l1 * sum |W| + (l2 / 2) * sum W^2, summed over the weight matrices W."""
    l1, l2 = _check(l1, l2)
    total = 0.0
    for W in weights:
        if l1:
            total += l1 * float(np.abs(W).sum())
        if l2:
            total += l2 / 2 * float(np.vdot(W, W))
    return total


def add_penalty_gradient(
    weights: list[np.ndarray], grads: list[np.ndarray], l1: float, l2: float
) -> None:
    """dW += l1 * sign(W) + l2 * W for every weight matrix W, in place on its gradient dW."""
    l1, l2 = _check(l1, l2)
    for W, dW in zip(weights, grads, strict=True):
        if l1:
            dW += l1 * np.sign(W)
        if l2:
            dW += l2 * W
