"""Gradient check: backprop against central finite differences, in float64.

For a parameter theta, the numeric gradient is (J(theta + h) - J(theta - h)) / (2 h), taken
entry by entry; the check reports, per layer and parameter, the relative error
||g_backprop - g_numeric|| / max(||g_backprop|| + ||g_numeric||, SCALE_FLOOR): a gradient
that is 0 (a bias before batchnorm) is numerically ~1e-10 per entry (float64 rounding / h), so
it is compared with SCALE_FLOOR = 1e-3, not with itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scratchnn_cli.nn.network import Network
from scratchnn_cli.nn.regularizers import add_penalty_gradient, penalty


@dataclass(frozen=True)
class GradCheckRow:
    """The check of one parameter array (e.g. W or b of one layer; ``layer`` indexes net.layers,
    ``description`` is that layer's ``describe()``, e.g. ``dense(4)``)."""

    layer: int
    description: str
    param: str
    shape: tuple[int, ...]
    checked: int
    max_abs_diff: float
    relative_error: float


SCALE_FLOOR = 1e-3
MASK_SEED = 12345  # training mode: every forward pass draws the same dropout masks


def _forward(net: Network, X: np.ndarray, training: bool) -> np.ndarray:
    if training:
        net.rng = np.random.default_rng(MASK_SEED)
    return net.forward(X, training)


def total_cost(
    net: Network, X: np.ndarray, Y: np.ndarray, l1: float, l2: float, training: bool = False
) -> float:
    """J = mean cross-entropy + l1 sum|W| + (l2 / 2) sum W^2; in training mode with the same
    dropout masks every time and batchnorm on the batch's statistics."""
    J = net.loss.cost(_forward(net, X, training), Y)
    if l1 or l2:
        J += penalty(net.weights()[0], l1, l2)
    return J


def check_gradients(
    net: Network,
    X: np.ndarray,
    Y: np.ndarray,
    l1: float = 0.0,
    l2: float = 0.0,
    h: float = 1e-6,
    max_entries: int = 200,
    rng: np.random.Generator | None = None,
    training: bool = False,
) -> list[GradCheckRow]:
    """Compare backprop with central differences for every parameter of every layer (float64),
    in evaluation mode or (``training``) in training mode with fixed dropout masks.

    Arrays with more than ``max_entries`` entries are checked on a random sample of entries
    drawn from ``rng`` (the others are left alone), so large networks stay quick.
    """
    if net.dtype != np.float64:
        raise ValueError("gradient checks need a float64 network (finite differences)")
    rng = rng if rng is not None else np.random.default_rng(0)
    saved_rng = net.rng
    net.backward(net.loss.dZ(_forward(net, X, training), Y))
    if l1 or l2:
        add_penalty_gradient(*net.weights(), l1, l2)
    analytic = {
        (i, name): grad.copy()
        for i, layer in enumerate(net.layers)
        for name, grad in layer.grads.items()
    }
    rows = []
    for i, layer in enumerate(net.layers):
        for name, theta in layer.params.items():
            flat = theta.reshape(-1)
            n = flat.size
            picked = np.arange(n) if n <= max_entries else rng.choice(n, max_entries, replace=False)
            numeric = np.empty(len(picked))
            for k, j in enumerate(picked):
                saved = flat[j]
                flat[j] = saved + h
                J_plus = total_cost(net, X, Y, l1, l2, training)
                flat[j] = saved - h
                J_minus = total_cost(net, X, Y, l1, l2, training)
                flat[j] = saved
                numeric[k] = (J_plus - J_minus) / (2 * h)
            backprop = analytic[(i, name)].reshape(-1)[picked]
            diff = np.linalg.norm(backprop - numeric)
            scale = max(np.linalg.norm(backprop) + np.linalg.norm(numeric), SCALE_FLOOR)
            rows.append(
                GradCheckRow(
                    layer=i,
                    description=layer.describe(),
                    param=name,
                    shape=theta.shape,
                    checked=len(picked),
                    max_abs_diff=float(np.max(np.abs(backprop - numeric))),
                    relative_error=float(diff / scale),
                )
            )
    net.rng = saved_rng
    return rows
