"""Tests for scratchnn_cli.nn.regularizers: the penalty by hand, its gradient by finite
differences, biases untouched, and zero penalties leaving the gradients alone; and through
training: the recorded cost, smaller weights, and the network's gradient with a penalty."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_grad_close, fit, make_config, numeric_grad, weights_of

from scratchnn_cli.assembly import network_for_dataset
from scratchnn_cli.config import TrainConfig
from scratchnn_cli.nn import Network
from scratchnn_cli.nn.regularizers import add_penalty_gradient, penalty
from scratchnn_cli.streams import training_streams
from scratchnn_cli.training import train

H = 1e-6  # central-difference step


def weights_away_from_zero(rng: np.random.Generator) -> list[np.ndarray]:
    """W matrices with 0.1 <= |w| <= 1: sign(W) is constant within +-H of every entry."""
    shapes = [(3, 4), (4, 2)]
    return [rng.choice([-1.0, 1.0], size=s) * rng.uniform(0.1, 1.0, size=s) for s in shapes]


def numeric_penalty_grad(weights: list[np.ndarray], l1: float, l2: float) -> list[np.ndarray]:
    """d penalty / dW by central differences, one entry at a time (restored after)."""
    return [numeric_grad(lambda: penalty(weights, l1, l2), W, H) for W in weights]


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
    for analytic, numeric in zip(grads, numeric_penalty_grad(weights, l1, l2), strict=True):
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
    net = Network.from_struct(3, [4], 2, output="softmax", rng=np.random.default_rng(2))
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
    net = Network.from_struct(3, [4], 2, output="softmax", rng=rng, mu=0.5, sigma=1.0)
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


# --------------------------------------------------------------------------- through training


@pytest.mark.parametrize(("l1", "l2"), [(0.0, 0.05), (0.01, 0.0), (0.005, 0.02)])
def test_history_cost_is_data_cost_plus_penalty(l1: float, l2: float) -> None:
    """Full batch: epoch e's data cost is the cost at the weights of the end of epoch e - 1; the
    penalty is taken at the end-of-epoch weights."""
    config = make_config(
        "blobs400",
        0,
        {"struct": [4], "sigma": 1.0},
        lr=0.2,
        eps=0,
        max_epochs=6,
        batch_size="full",
        l1=l1,
        l2=l2,
    )
    result = fit(config)
    net, dataset = result.net, result.dataset
    X, y = dataset.X_train, dataset.y_train
    Y = net.loss.targets(y, 2, net.dtype)
    initial = weights_of(network_for_dataset(config, dataset, training_streams(config.seed).init))
    starts = [initial, *result.snapshots[:-1]]
    for e, (record, start, end) in enumerate(
        zip(result.result.history, starts, result.snapshots, strict=True), start=1
    ):
        for p, s in zip(net.params(), start, strict=True):
            p[...] = s
        data_cost = net.cost(X, Y)
        pen = penalty(end[0::2], l1, l2)
        assert pen > 0.01 * data_cost  # the penalty is not negligible here
        assert record.cost == pytest.approx(data_cost + pen, rel=1e-12), f"epoch {e}"
        assert pen == pytest.approx(
            sum(l1 * np.abs(W).sum() + l2 / 2 * (W**2).sum() for W in end[0::2]), rel=1e-12
        )


def test_large_l2_gives_smaller_weights() -> None:
    def weight_norm(l2: float) -> float:
        config = make_config(
            "blobs400", 0, {"struct": [6]}, lr=0.1, eps=0, max_epochs=40, batch_size=8, l2=l2
        )
        result = fit(config)
        assert result.accuracy("test") > 0.85
        return float(sum((W**2).sum() for W in result.net.params()[0::2]))

    plain, shrunk = weight_norm(0.0), weight_norm(0.1)
    assert shrunk < 0.5 * plain


def test_l1_drives_weights_towards_zero() -> None:
    def mean_abs(l1: float) -> float:
        config = make_config(
            "circles500",
            0,
            {"struct": [8], "activation": "tanh"},
            lr=0.1,
            eps=0,
            max_epochs=30,
            batch_size=8,
            l1=l1,
        )
        return float(np.mean(np.abs(fit(config).net.params()[2])))

    assert mean_abs(0.02) < 0.5 * mean_abs(0.0)


@pytest.mark.parametrize("output", ["sigmoid", "softmax"])
def test_network_gradient_with_penalty_matches_finite_differences(output: str) -> None:
    rng = np.random.default_rng(3)
    m, k = 6, (2 if output == "sigmoid" else 3)
    net = Network.from_struct(
        4, [5, 3], 1 if output == "sigmoid" else k, "tanh", output, rng=rng, sigma=0.7
    )
    X = rng.normal(size=(m, 4))
    Y = net.loss.targets(np.arange(m) % k, k, np.float64)
    l1, l2 = 0.03, 0.2
    params, grads = net.params(), net.grads()
    assert min(np.abs(W).min() for W in params[0::2]) > 1e-4  # away from the L1 kink

    def J() -> float:
        return net.loss.cost(net.forward(X), Y) + penalty(params[0::2], l1, l2)

    net.backward(net.loss.dZ(net.forward(X), Y))
    add_penalty_gradient(params[0::2], grads[0::2], l1, l2)
    analytic = [g.copy() for g in grads]
    for i, (P, G) in enumerate(zip(params, analytic, strict=True)):
        assert_grad_close(G, numeric_grad(J, P), f"param {i}")
    # the penalty gradient is really in there (and only on W)
    net.backward(net.loss.dZ(net.forward(X), Y))
    for i, (g, a) in enumerate(zip(grads, analytic, strict=True)):
        if i % 2 == 0:
            assert not np.allclose(g, a)
        else:
            np.testing.assert_array_equal(g, a)
