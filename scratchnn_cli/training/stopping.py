"""The rules that end training, other than the iteration and epoch budgets.

- converged:      |J_epoch - J_previous_epoch| < eps;
- early stopping: the validation score stopped improving for ``patience`` evaluations;
- diverged:       the cost (train or validation) or a weight is not a finite number, or is
                  beyond ``limit(dtype)`` in magnitude.

Why that limit. sqrt(finfo(dtype).max) is 1.3e154 in float64 and 1.8e19 in float32. A number
beyond it squares to infinity, and training squares its numbers everywhere (the L2 penalty,
Adam's and RMSprop's g^2, every product of a weight with an activation of the same size), so such
a run turns into NaN within steps, or, with dead ReLU units, stays finite but meaningless: the run
that prompted the rule (blobs400, [50, 50] relu, sigma 30, lr 1000) had |W| ~ 1e140, a validation
cost of 4.6e291 and a constant training cost, and stopped as "converged". A model worth keeping
has costs of order 1 (chance is log k) and weights of order 1; silly but recoverable settings
(sigma 10, lr 1e6) reach costs of 1e6 and are left alone.
"""

from __future__ import annotations

import math

import numpy as np

from scratchnn_cli.records import EpochRecord


def limit(dtype: np.dtype) -> float:
    """sqrt of the largest finite number of ``dtype``: beyond it a number squared overflows."""
    return math.sqrt(float(np.finfo(dtype).max))


def divergence(record: EpochRecord, theta: np.ndarray) -> str | None:
    """Why the epoch in ``record`` diverged (one phrase), or None when it did not."""
    bound = limit(theta.dtype)
    for label, J in (("the cost", record.cost), ("the validation cost", record.val_cost)):
        if J is not None and not (math.isfinite(J) and J <= bound):
            return f"{label} is {J:.4g}" + ("" if not math.isfinite(J) else f" (limit {bound:.3g})")
    largest = float(np.max(np.abs(theta))) if theta.size else 0.0
    if not (math.isfinite(largest) and largest <= bound):
        return f"a weight is {largest:.4g}" + (
            "" if not math.isfinite(largest) else f" (limit {bound:.3g})"
        )
    return None


def converged(J: float, J_prev: float | None, eps: float) -> bool:
    """|J - J_prev| < eps (never on the first epoch)."""
    return J_prev is not None and abs(J - J_prev) < eps


class EarlyStopping:
    """Tracks the best validation score; says when ``patience`` evaluations brought nothing."""

    def __init__(self, monitor: str, patience: int, min_delta: float) -> None:
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.sign = 1.0 if monitor == "val_cost" else -1.0  # minimise cost, maximise accuracy
        self.best = math.inf
        self.best_epoch = 0
        self.waited = 0

    def improved(self, record: EpochRecord) -> bool:
        """Whether ``record`` beats the best by more than ``min_delta`` (and remember it)."""
        value = self.sign * getattr(record, self.monitor)
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.waited = value, record.epoch, 0
            return True
        self.waited += 1
        return False

    @property
    def exhausted(self) -> bool:
        return self.waited >= self.patience

    def state(self) -> dict[str, float | int | str]:
        """What a checkpoint keeps (patience and min_delta come from the config)."""
        return {
            "monitor": self.monitor,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "waited": self.waited,
            "patience": self.patience,
            "min_delta": self.min_delta,
            "sign": self.sign,
        }

    def load_state(self, state: dict[str, float | int | str]) -> None:
        """Continue from ``state()`` when it monitored the same score."""
        if state.get("monitor") == self.monitor:
            self.best = float(state["best"])
            self.best_epoch, self.waited = int(state["best_epoch"]), int(state["waited"])
