"""The rules that end training, other than the iteration and epoch budgets.

- converged:      |J_epoch - J_previous_epoch| < eps;
- early stopping: the validation score stopped improving for ``patience`` evaluations;
- diverged:       the cost is not a finite number or is above ``COST_LIMIT``, or a weight is not
                  finite or is above ``weight_limit(dtype)`` in magnitude.

Why those two limits. A cross-entropy cost is about the size of the logit on the wrong side:
``log(1 + e^z) ~ z``. A mean cost above 1e6 means the network's outputs are saturated at
logits of a million: sigmoid and softmax are then exactly 0 or 1 in float64, so the "gradient"
only says +-1 per sample and the weights it came from (the run that prompted the rule had
|W| ~ 1e140 and a validation cost of 1e291) no longer describe a model worth keeping; no
course experiment comes within five orders of magnitude of it (their costs start below 20).
A weight above sqrt(finfo(dtype).max) (1.3e154 in float64, 1.8e19 in float32) squares to
infinity, which the L2 penalty, Adam's g^2 and every product with an activation of the same
size do: such a run turns into NaN a step later, so it is caught while its numbers still
print.
"""

from __future__ import annotations

import math

import numpy as np

from scratchnn_cli.training.snapshot import EpochRecord

COST_LIMIT = 1e6


def weight_limit(dtype: np.dtype) -> float:
    """sqrt of the largest finite number of ``dtype``: beyond it a weight squared overflows."""
    return math.sqrt(float(np.finfo(dtype).max))


def divergence(record: EpochRecord, theta: np.ndarray) -> str | None:
    """Why the epoch in ``record`` diverged (one phrase), or None when it did not."""
    for label, J in (("the cost", record.cost), ("the validation cost", record.val_cost)):
        if J is not None and not (math.isfinite(J) and J <= COST_LIMIT):
            return f"{label} is {J:.4g} (limit {COST_LIMIT:g})"
    largest = float(np.max(np.abs(theta))) if theta.size else 0.0
    if not (math.isfinite(largest) and largest <= weight_limit(theta.dtype)):
        return f"a weight is {largest:.4g} (limit {weight_limit(theta.dtype):.3g})"
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
