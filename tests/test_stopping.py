"""training/stopping.py: early stopping on the validation split (val_cost or val_accuracy,
min_delta, patience counted in evaluations every eval_every epochs), restoring the best weights
or not, and inert without validation data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from helpers import (
    assert_same_weights,
    fit,
    make_config,
    tiny_net,
    tiny_problem,
    weights_of,
)

from scratchnn_cli.config import ExperimentConfig, TrainConfig
from scratchnn_cli.training import train


def early_config(
    monitor: str = "val_cost", restore_best: bool = True, min_delta: float = 0.0, **kw: Any
) -> ExperimentConfig:
    es = {"monitor": monitor, "patience": 3, "restore_best": restore_best, "min_delta": min_delta}
    return make_config(
        "blobs400",
        0,
        {"struct": []},
        lr=0.5,
        eps=0,
        max_epochs=300,
        early_stopping=es,
        **kw,
    )


def test_early_stopping_restores_the_best_weights() -> None:
    result = fit(early_config("val_cost", restore_best=True))
    r = result.result
    assert r.stopped_by == "early_stopping"
    assert "early stopping" in r.stop_reason and "restored" in r.stop_reason
    val_costs = [h.val_cost for h in r.history]
    best = r.best_epoch
    assert best is not None and 1 <= best < r.epochs < 300
    assert r.epochs == best + 3  # patience 3, evaluated every epoch
    assert val_costs[best - 1] == min(val_costs)
    assert f"best at epoch {best}" in r.stop_reason
    assert_same_weights(weights_of(result.net), result.snapshots[best - 1])
    assert result.val_cost() == pytest.approx(min(val_costs), rel=1e-12)
    # the last epoch's weights were different (or restoring would prove nothing)
    assert val_costs[-1] > min(val_costs)


def test_early_stopping_without_restore_keeps_the_last_weights() -> None:
    result = fit(early_config("val_cost", restore_best=False))
    r = result.result
    assert r.stopped_by == "early_stopping"
    assert "restored" not in r.stop_reason
    assert r.epochs == r.best_epoch + 3
    assert_same_weights(weights_of(result.net), result.snapshots[-1])
    assert result.val_cost() == pytest.approx(r.history[-1].val_cost, rel=1e-12)
    assert r.history[-1].val_cost > r.history[r.best_epoch - 1].val_cost


def test_early_stopping_on_val_accuracy() -> None:
    result = fit(early_config("val_accuracy", restore_best=True))
    r = result.result
    assert r.stopped_by == "early_stopping"
    assert "val_accuracy" in r.stop_reason
    accuracies = [h.val_accuracy for h in r.history]
    best = r.best_epoch
    assert best is not None and r.epochs == best + 3
    assert accuracies[best - 1] == max(accuracies)
    assert accuracies.index(max(accuracies)) == best - 1  # the first epoch that reached it
    assert result.accuracy("val") == max(accuracies)
    assert_same_weights(weights_of(result.net), result.snapshots[best - 1])


def test_early_stopping_min_delta_needs_a_real_improvement() -> None:
    result = fit(early_config("val_cost", min_delta=0.05))
    r = result.result
    val_costs = [h.val_cost for h in r.history]
    best = r.best_epoch
    assert r.stopped_by == "early_stopping"
    # no later epoch beat the best by more than min_delta
    assert all(v >= val_costs[best - 1] - 0.05 for v in val_costs[best:])
    assert result.val_cost() == pytest.approx(val_costs[best - 1], rel=1e-12)


@pytest.mark.parametrize("k", [1, 3])
def test_eval_every_k_epochs(k: int) -> None:
    config = make_config("blobs400", 0, {"struct": [2]}, lr=0.05, eps=0, max_epochs=8, eval_every=k)
    history = fit(config).result.history
    assert len(history) == 8
    evaluated = [h.epoch for h in history if h.val_cost is not None]
    assert evaluated == [e for e in range(1, 9) if e % k == 0]
    assert evaluated == [h.epoch for h in history if h.val_accuracy is not None]


def test_early_stopping_patience_counts_evaluations() -> None:
    config = early_config("val_cost", eval_every=2)
    r = fit(config).result
    assert r.stopped_by == "early_stopping"
    assert r.best_epoch % 2 == 0
    assert r.epochs == r.best_epoch + 3 * 2
    assert all((h.val_cost is not None) == (h.epoch % 2 == 0) for h in r.history)


def test_early_stopping_without_validation_data_is_inert() -> None:
    X, y = tiny_problem(10)
    cfg = TrainConfig(lr=0.01, eps=0, max_epochs=6, early_stopping={"patience": 1})
    r = train(tiny_net(), X, y, 2, cfg, np.random.default_rng(0))
    assert r.stopped_by == "max_epochs" and r.best_epoch is None
    assert all(h.val_cost is None for h in r.history)
