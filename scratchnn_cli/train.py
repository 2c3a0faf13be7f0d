"""The training loop, whole, in one place: single-sample SGD with the assignment's stopping rule.

Each iteration draws one random training sample (with replacement), runs forward, takes the
cross-entropy gradient, backpropagates and updates the weights. An epoch is N iterations
(N = number of training samples); its cost J_epoch is the mean of the N per-sample costs seen
during the epoch. Training stops when |J_epoch - J_previous_epoch| < eps (converged), after
``max_iterations`` updates, or at once when the cost stops being a finite number (diverged).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from scratchnn_cli.config import TrainConfig
from scratchnn_cli.nn.network import Network
from scratchnn_cli.nn.optimizers import SGD


@dataclass(frozen=True)
class EpochRecord:
    """One row of ``history.csv``."""

    epoch: int
    iteration: int
    cost: float
    seconds: float


@dataclass
class TrainResult:
    """What training did and why it stopped (``stopped_by``: eps, max_iterations or diverged)."""

    history: list[EpochRecord] = field(default_factory=list)
    stopped_by: str = ""
    stop_reason: str = ""
    iterations: int = 0
    epochs: int = 0
    seconds: float = 0.0


EpochCallback = Callable[[EpochRecord], None]


def train(
    net: Network,
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    cfg: TrainConfig,
    rng: np.random.Generator,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train ``net`` in place on (X, y) by single-sample SGD; ``rng`` drives the sampling."""
    N = X.shape[0]
    X = np.ascontiguousarray(X, dtype=net.dtype)
    Y = net.loss.targets(y, n_classes, net.dtype)
    optimizer = SGD(net.params(), cfg.lr)
    grads = net.grads()  # Dense writes its gradients into these arrays in place
    forward, backward, gradient, step = net.forward, net.backward, net.loss.dZ, optimizer.step
    Z_epoch = np.empty((N, Y.shape[1]), dtype=net.dtype)  # logits seen this epoch, for J_epoch
    last_good = [p.copy() for p in net.params()]

    result = TrainResult()
    J_prev: float | None = None
    start = time.perf_counter()
    with np.errstate(over="ignore", invalid="ignore"):  # divergence is detected below, not warned
        while result.iterations < cfg.max_iterations:
            n_steps = min(N, cfg.max_iterations - result.iterations)
            samples = rng.integers(0, N, size=n_steps)
            for t, i in enumerate(samples.tolist()):
                Z = forward(X[i : i + 1])
                Z_epoch[t] = Z[0]
                backward(gradient(Z, Y[i : i + 1]))
                step(grads)
            result.iterations += n_steps
            result.epochs += 1
            J = net.loss.cost(Z_epoch[:n_steps], Y[samples])
            record = EpochRecord(result.epochs, result.iterations, J, time.perf_counter() - start)
            if not np.isfinite(J) or not all(np.isfinite(p).all() for p in net.params()):
                for p, good in zip(net.params(), last_good, strict=True):
                    p[...] = good
                result.stopped_by = "diverged"
                result.stop_reason = (
                    f"diverged in epoch {result.epochs}: the cost is {J}; weights restored to the "
                    "end of the previous epoch (try a lower train.lr or model.sigma)"
                )
                break
            result.history.append(record)
            if on_epoch is not None:
                on_epoch(record)
            if J_prev is not None and abs(J - J_prev) < cfg.eps:
                result.stopped_by = "eps"
                result.stop_reason = (
                    f"converged after {result.epochs} epochs: |J - J_prev| = {abs(J - J_prev):.3g}"
                    f" < eps = {cfg.eps:g}"
                )
                break
            J_prev = J
            for p, good in zip(net.params(), last_good, strict=True):
                good[...] = p
        else:
            result.stopped_by = "max_iterations"
            result.stop_reason = (
                f"reached max_iterations = {cfg.max_iterations:,} after {result.epochs} epochs"
            )
    result.seconds = time.perf_counter() - start
    return result
