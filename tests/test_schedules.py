"""Tests for scratchnn_cli.nn.optim.schedules: the learning rate of each epoch, and the errors;
and through training: the lr column, the optimizer's rate, resuming once it reached 0."""

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

from scratchnn_cli.config import TrainConfig
from scratchnn_cli.nn.optim.schedules import SCHEDULES, make_schedule
from scratchnn_cli.training import Hooks, train


def lrs(schedule, n: int) -> list[float]:
    return [schedule(epoch) for epoch in range(n)]


def test_constant() -> None:
    assert lrs(make_schedule("constant", 0.1), 4) == [0.1, 0.1, 0.1, 0.1]


def test_step() -> None:
    # lr0 * drop ** floor(epoch / every)
    schedule = make_schedule("step", 0.1, drop=0.5, every=2)
    assert lrs(schedule, 7) == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125])
    assert lrs(make_schedule("step", 1.0, drop=0.1, every=1), 3) == pytest.approx([1, 0.1, 0.01])


def test_step_defaults() -> None:
    schedule = make_schedule("step", 1.0)  # drop 0.5 every 10 epochs
    assert [schedule(e) for e in (0, 9, 10, 19, 20)] == pytest.approx([1, 1, 0.5, 0.5, 0.25])


def test_exponential() -> None:
    # lr0 * gamma ** epoch
    schedule = make_schedule("exponential", 1.0, gamma=0.5)
    assert lrs(schedule, 5) == pytest.approx([1.0, 0.5, 0.25, 0.125, 0.0625])
    assert lrs(make_schedule("exponential", 0.2, gamma=0.9), 3) == pytest.approx([0.2, 0.18, 0.162])


def test_cosine() -> None:
    # lr_min + (lr0 - lr_min) (1 + cos(pi min(epoch, T) / T)) / 2 with T = 4:
    # cos(pi/4) = 0.70710678..., so (1 + 0.70710678) / 2 = 0.85355339 and (1 - 0.70710678) / 2
    schedule = make_schedule("cosine", 1.0, epochs=4)
    expected = [1.0, 0.8535533905932737, 0.5, 0.14644660940672624, 0.0, 0.0, 0.0]
    assert lrs(schedule, 7) == pytest.approx(expected, abs=1e-15)


def test_cosine_with_lr_min() -> None:
    # T = 2, lr0 = 0.5, lr_min = 0.1: 0.1 + 0.4 * [1, 0.5, 0, 0, 0]
    schedule = make_schedule("cosine", 0.5, epochs=2, lr_min=0.1)
    assert lrs(schedule, 5) == pytest.approx([0.5, 0.3, 0.1, 0.1, 0.1], abs=1e-15)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("constant", {}),
        ("step", {"drop": 0.5, "every": 3}),
        ("exponential", {"gamma": 0.9}),
        ("cosine", {"epochs": 5}),
    ],
)
def test_epoch_0_is_lr0_and_values_are_python_floats(name: str, params: dict) -> None:
    schedule = make_schedule(name, 0.3, **params)
    assert schedule(0) == 0.3
    assert all(type(lr) is float for lr in lrs(schedule, 8))


def test_every_schedule_is_registered() -> None:
    assert set(SCHEDULES) == {"constant", "step", "exponential", "cosine"}


@pytest.mark.parametrize(
    ("name", "lr0", "params", "match"),
    [
        ("linear", 0.1, {}, "unknown schedule 'linear'"),
        ("constant", 0.1, {"gamma": 0.5}, "'constant' does not take gamma"),
        ("step", 0.1, {"gamma": 0.5}, "'step' does not take gamma \\(it takes: drop, every\\)"),
        ("cosine", 0.1, {}, "'cosine' needs epochs"),
        ("constant", 0.0, {}, "lr0 must be a positive"),
        ("constant", -0.1, {}, "lr0 must be a positive"),
        ("constant", float("inf"), {}, "lr0 must be a finite number"),
        ("step", 0.1, {"drop": 0.0}, "drop must be a positive"),
        ("step", 0.1, {"drop": 1.5}, "drop must be in \\(0, 1\\]"),
        ("step", 0.1, {"every": 0}, "every must be >= 1"),
        ("step", 0.1, {"every": 2.5}, "every must be an integer"),
        ("exponential", 0.1, {"gamma": 0.0}, "gamma must be a positive"),
        ("exponential", 0.1, {"gamma": 1.1}, "gamma must be in"),
        ("cosine", 0.1, {"epochs": 0}, "epochs must be >= 1"),
        ("cosine", 0.1, {"epochs": True}, "epochs must be an integer"),
        ("cosine", 0.1, {"epochs": 5, "lr_min": 0.2}, "lr_min must be in"),
        ("cosine", 0.1, {"epochs": 5, "lr_min": -0.01}, "lr_min must be in"),
    ],
)
def test_errors(name: str, lr0: float, params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_schedule(name, lr0, **params)


@pytest.mark.parametrize("epoch", [-1, 1.5, True])
def test_bad_epochs(epoch) -> None:
    schedule = make_schedule("exponential", 0.1, gamma=0.9)
    with pytest.raises(ValueError, match="epoch"):
        schedule(epoch)


# --------------------------------------------------------------------------- through training


@pytest.mark.parametrize(
    ("schedule", "max_epochs", "expected"),
    [
        ({"name": "constant"}, 3, [0.1, 0.1, 0.1]),
        (
            {"name": "step", "drop": 0.5, "every": 2},
            7,
            [0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125],
        ),
        ({"name": "exponential", "gamma": 0.5}, 5, [0.1, 0.05, 0.025, 0.0125, 0.00625]),
        (
            {"name": "cosine", "epochs": 4},
            6,
            [0.1, 0.0853553390593, 0.05, 0.0146446609407, 0.0, 0.0],
        ),
        (
            {"name": "cosine", "epochs": 2, "lr_min": 0.02},
            4,
            [0.1, 0.06, 0.02, 0.02],
        ),
        ({"name": "cosine", "lr_min": 0.01}, 3, [0.1, 0.0775, 0.0325]),  # T = max_epochs = 3
    ],
)
def test_lr_column_follows_the_schedule(
    schedule: dict[str, Any], max_epochs: int, expected: list[float]
) -> None:
    config = make_config(
        "blobs400", 0, {"struct": [2]}, lr=0.1, eps=0, max_epochs=max_epochs, lr_schedule=schedule
    )
    history = fit(config).result.history
    assert len(history) == max_epochs
    assert [h.lr for h in history] == pytest.approx(expected, rel=1e-10, abs=1e-15)


def test_schedule_lr_reaches_the_optimizer() -> None:
    """Cosine over 2 epochs: from epoch 3 on lr = 0, so the weights stop moving."""
    config = make_config(
        "blobs400",
        0,
        {"struct": [3]},
        lr=0.1,
        eps=0,
        max_epochs=4,
        batch_size=20,
        lr_schedule={"name": "cosine", "epochs": 2},
    )
    sgd = fit(config)
    assert [h.lr for h in sgd.result.history] == [0.1, 0.05, 0.0, 0.0]
    assert not all(
        np.array_equal(a, b) for a, b in zip(sgd.snapshots[0], sgd.snapshots[1], strict=True)
    )
    assert_same_weights(sgd.snapshots[1], sgd.snapshots[2])
    assert_same_weights(sgd.snapshots[2], sgd.snapshots[3])


def test_resume_after_a_schedule_reached_lr_zero() -> None:
    X, y = tiny_problem(10)
    cfg = TrainConfig(
        lr=0.1, eps=0, max_epochs=5, batch_size=3, lr_schedule={"name": "cosine", "epochs": 2}
    )
    snapshots: list[Any] = []
    whole = tiny_net()
    train(
        whole,
        X,
        y,
        2,
        cfg,
        np.random.default_rng(0),
        hooks=Hooks(on_checkpoint=snapshots.append, checkpoint_every=1),
    )
    at_3 = next(s for s in snapshots if s.epochs == 3)
    assert at_3.optimizer["lr"] == 0.0  # epoch 3 ran with the schedule's lr_min
    resumed = tiny_net()
    result = train(resumed, X, y, 2, cfg, np.random.default_rng(0), resume_from=at_3)
    assert result.epochs == 5
    assert_same_weights(weights_of(resumed), weights_of(whole))
