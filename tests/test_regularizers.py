"""Tests for scratchnn_cli.nn.regularizers: the penalty by hand, its gradient by finite
differences, biases untouched, and zero penalties leaving the gradients alone."""

from __future__ import annotations

import numpy as np
import pytest

from scratchnn_cli.config import TrainConfig
from scratchnn_cli.nn import Network
from scratchnn_cli.nn.regularizers import add_penalty_gradient, penalty
from scratchnn_cli.training.loop import train

H = 1e-6  # central-difference step


def weights_away_from_zero(rng: np.random.Generator) -> list[np.ndarray]:
    """W matrices with 0.1 <= |w| <= 1: sign(W) is constant within +-H of every entry."""
    shapes = [(3, 4), (4, 2)]
    return [rng.choice([-1.0, 1.0], size=s) * rng.uniform(0.1, 1.0, size=s) for s in shapes]


def numeric_grad(weights: list[np.ndarray], l1: float, l2: float) -> list[np.ndarray]:
    """d penalty / dW by central differences, one entry at a time (restored after)."""
    grads = []
    for W in weights:
        G = np.zeros_like(W)
        for idx in np.ndindex(W.shape):
            saved = W[idx]
            W[idx] = saved + H
            plus = penalty(weights, l1, l2)
            W[idx] = saved - H
            minus = penalty(weights, l1, l2)
            W[idx] = saved
            G[idx] = (plus - minus) / (2 * H)
        grads.append(G)
    return grads


def test_penalty_and_gradient_by_hand() -> None:
    W = np.array([[1.0, -2.0], [0.5, 0.0]])
    # 0.1 * (1 + 2 + 0.5 + 0) + 0.2 / 2 * (1 + 4 + 0.25 + 0) = 0.35 + 0.525
    assert penalty([W], l1=0.1, l2=0.2) == pytest.approx(0.875, rel=1e-15)
    dW = np.ones_like(W)
    add_penalty_gradient([W], [dW], l1=0.1, l2=0.2)
    # 1 + 0.1 sign(W) + 0.2 W; sign(0) = 0
    np.testing.assert_allclose(dW, [[1.3, 0.5], [1.2, 1.0]], rtol=1e-15)


@pytest.mark.parametrize(("l1", "l2"), [(0.3, 0.0), (0.0, 0.7), (0.3, 0.7)])
def test_gradient_matches_finite_differences(l1: float, l2: float) -> None:
    rng = np.random.default_rng(0)
    weights = weights_away_from_zero(rng)
    grads = [np.zeros_like(W) for W in weights]
    add_penalty_gradient(weights, grads, l1, l2)
    for analytic, numeric in zip(grads, numeric_grad(weights, l1, l2), strict=True):
        np.testing.assert_allclose(analytic, numeric, rtol=1e-7, atol=1e-9)


def test_gradient_is_added_to_the_data_gradient() -> None:
    rng = np.random.default_rng(1)
    weights = weights_away_from_zero(rng)
    data_grads = [rng.normal(size=W.shape) for W in weights]
    grads = [g.copy() for g in data_grads]
    add_penalty_gradient(weights, grads, 0.3, 0.7)
    for W, g, g0 in zip(weights, grads, data_grads, strict=True):
        np.testing.assert_allclose(g, g0 + 0.3 * np.sign(W) + 0.7 * W, rtol=1e-14)


def test_penalty_and_gradient_on_a_network() -> None:
    net = Network.build(3, [4], 2, output="softmax", rng=np.random.default_rng(2))
    params, grads = net.params(), net.grads()
    for g in grads:
        g[...] = 1.0
    weights = params[0::2]

    J = penalty(weights, 0.1, 0.2)
    expected = sum(0.1 * np.abs(W).sum() + 0.1 * (W**2).sum() for W in weights)
    assert J == pytest.approx(expected, rel=1e-13)

    add_penalty_gradient(weights, grads[0::2], 0.1, 0.2)
    for W, dW in zip(weights, grads[0::2], strict=True):
        np.testing.assert_allclose(dW, 1.0 + 0.1 * np.sign(W) + 0.2 * W, rtol=1e-14)


def _one_update(
    batch_size: int | str, l1: float, l2: float
) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """(weights before, weights after, the cost recorded) for one update of the real trainer,
    from the same start every time (biases of size ~1, so a penalty on them would show)."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(8, 3))
    y = np.arange(8) % 2
    net = Network.build(3, [4], 2, output="softmax", rng=rng, mu=0.5, sigma=1.0)
    before = [p.copy() for p in net.params()]
    cfg = TrainConfig(lr=0.1, eps=0, max_iterations=1, batch_size=batch_size, l1=l1, l2=l2)
    result = train(net, X, y, 2, cfg, np.random.default_rng(3))
    assert result.iterations == 1
    return before, [p.copy() for p in net.params()], result.history[0].cost


@pytest.mark.parametrize("batch_size", [1, "full"])
def test_the_trainer_penalises_the_weights_but_not_the_biases(batch_size: int | str) -> None:
    """The same update with and without l1 = 0.1, l2 = 0.2: the biases end bit-for-bit equal
    (their gradient is the data's alone), each W moves by a further lr (l1 sign W + l2 W), and
    the recorded cost grows by the penalty of the W alone (not of the biases)."""
    initial, plain, J_plain = _one_update(batch_size, 0.0, 0.0)
    _, penalised, J_penalised = _one_update(batch_size, 0.1, 0.2)
    for i, (p0, p, q) in enumerate(zip(initial, plain, penalised, strict=True)):
        if i % 2:  # b
            assert np.abs(p0).min() > 0.05  # a bias penalty would move every entry
            np.testing.assert_array_equal(q, p, err_msg=f"b{i // 2}")
        else:  # W
            np.testing.assert_allclose(
                p - q, 0.1 * (0.1 * np.sign(p0) + 0.2 * p0), rtol=1e-9, atol=1e-15
            )
    # the data costs are equal (the same logits, before the update); the penalty is that of
    # the W at the end of the epoch
    weights = [w for W in penalised[0::2] for w in W.ravel().tolist()]
    weight_penalty = sum(0.1 * abs(w) + 0.1 * w * w for w in weights)  # l1 |w| + l2 / 2 w^2
    assert J_penalised - J_plain == pytest.approx(weight_penalty, rel=1e-12)


def test_zero_penalties_leave_grads_unchanged() -> None:
    rng = np.random.default_rng(3)
    weights = weights_away_from_zero(rng)
    grads = [rng.normal(size=W.shape) for W in weights]
    before = [g.copy() for g in grads]
    add_penalty_gradient(weights, grads, 0.0, 0.0)
    assert penalty(weights, 0.0, 0.0) == 0.0
    for g, g0 in zip(grads, before, strict=True):
        np.testing.assert_array_equal(g, g0)


def test_float32_stays_float32() -> None:
    W = np.array([[1.0, -2.0]], dtype=np.float32)
    dW = np.zeros_like(W)
    add_penalty_gradient([W], [dW], np.float64(0.1), np.float64(0.2))
    assert dW.dtype == np.float32
    np.testing.assert_allclose(dW, [[0.3, -0.5]], rtol=1e-6)
    assert isinstance(penalty([W], 0.1, 0.2), float)


@pytest.mark.parametrize(
    ("l1", "l2", "message"),
    [
        (-0.1, 0.0, r"^l1 must be a number >= 0, got -0\.1$"),
        (0.0, -1e-3, r"^l2 must be a number >= 0, got -0\.001$"),
        (float("nan"), 0.0, r"^l1 must be a finite number, got nan$"),
    ],
)
def test_negative_or_nan_strengths_are_rejected(l1: float, l2: float, message: str) -> None:
    W = np.ones((2, 2))
    with pytest.raises(ValueError, match=message):
        penalty([W], l1, l2)
    with pytest.raises(ValueError, match=message):
        add_penalty_gradient([W], [np.zeros_like(W)], l1, l2)
