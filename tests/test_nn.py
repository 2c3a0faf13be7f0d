"""Tests for scratchnn_cli.nn: gradients (finite differences), numerical stability, sklearn
agreement, weight state round-trips and the SGD update rule."""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
from helpers import assert_grad_close, numeric_grad
from sklearn.metrics import log_loss

from scratchnn_cli.config import ModelConfig
from scratchnn_cli.nn import (
    ACTIVATIONS,
    Activation,
    BinaryCrossEntropy,
    Network,
    SoftmaxCrossEntropy,
    sigmoid,
    softmax,
)
from scratchnn_cli.nn.optim.optimizers import SGD

H = 1e-6  # central-difference step
STRUCTS = [[], [5], [4, 3], [6, 5, 4]]
OUTPUTS = ["sigmoid", "softmax"]


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def no_warnings() -> Iterator[None]:
    """Any warning at all (and any numpy FP error except underflow) fails the test."""
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        yield


def labels_and_targets(loss, m: int, k: int, rng: np.random.Generator):
    y = rng.integers(0, k, size=m)
    y[: min(m, k)] = np.arange(min(m, k))  # every class present when m allows
    return y, loss.targets(y, k, np.float64)


# --------------------------------------------------------------------------- activations


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_backward_matches_numeric_derivative(name: str) -> None:
    rng = np.random.default_rng(0)
    g = ACTIVATIONS[name]()
    Z = rng.uniform(-4, 4, size=(7, 6))
    Z[np.abs(Z) < 1e-2] = 0.5  # stay away from the ReLU / leaky ReLU kink at 0
    dA = rng.normal(size=Z.shape)
    g.forward(Z, training=True)
    analytic = g.backward(dA.copy())  # backward may overwrite its argument
    derivative = (g.g(Z + H) - g.g(Z - H)) / (2 * H)
    assert_grad_close(analytic, dA * derivative, f"{name} backward", whole=1e-7)


def test_every_configurable_activation_is_registered() -> None:
    configurable = set(get_args(ModelConfig.model_fields["activation"].annotation))
    assert {"sigmoid", "tanh", "relu", "leaky_relu"} <= configurable
    assert configurable <= set(ACTIVATIONS)
    for name, cls in ACTIVATIONS.items():
        assert cls.kind == name


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu", "leaky_relu"])
def test_activation_forward_values(name: str) -> None:
    Z = np.array([[-2.0, -0.5, 0.5, 3.0]])
    expected = {  # tabulated values (sigma(z) = 1 / (1 + e^-z), tanh), to 17 digits
        "sigmoid": [
            0.11920292202211755,
            0.37754066879814544,
            0.62245933120185456,
            0.9525741268224334,
        ],
        "tanh": [
            -0.96402758007581688,
            -0.46211715726000976,
            0.46211715726000976,
            0.99505475368673045,
        ],
        "relu": [0.0, 0.0, 0.5, 3.0],
        "leaky_relu": [-0.02, -0.005, 0.5, 3.0],
    }[name]
    np.testing.assert_allclose(ACTIVATIONS[name]().forward(Z)[0], expected, rtol=1e-14)


# --------------------------------------------------------------------------- losses


@pytest.mark.parametrize("m", [1, 7])
@pytest.mark.parametrize("output", OUTPUTS)
def test_loss_dZ_matches_numeric_gradient_of_cost(output: str, m: int) -> None:
    rng = np.random.default_rng(1)
    loss = BinaryCrossEntropy() if output == "sigmoid" else SoftmaxCrossEntropy()
    k = 2 if output == "sigmoid" else 4
    width = 1 if output == "sigmoid" else k
    _, Y = labels_and_targets(loss, m, k, rng)
    assert Y.shape == (m, width)
    Z = rng.normal(scale=2.0, size=(m, width))
    analytic = loss.dZ(Z, Y)
    numeric = numeric_grad(lambda: loss.cost(Z, Y), Z)
    assert_grad_close(analytic, numeric, f"{output} dZ (m={m})", whole=1e-7)


def test_targets_encoding() -> None:
    y = np.array([1, 0, 2, 1])
    np.testing.assert_array_equal(
        SoftmaxCrossEntropy().targets(y, 3, np.float64),
        np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0]], dtype=float),
    )
    Yb = BinaryCrossEntropy().targets(np.array([1, 0, 1]), 2, np.float32)
    assert Yb.shape == (3, 1) and Yb.dtype == np.float32
    np.testing.assert_array_equal(Yb[:, 0], [1, 0, 1])


def test_binary_cross_entropy_matches_sklearn_log_loss() -> None:
    rng = np.random.default_rng(2)
    z = rng.normal(scale=3.0, size=(200, 1))
    y = rng.integers(0, 2, size=200)
    loss = BinaryCrossEntropy()
    ours = loss.cost(z, loss.targets(y, 2, np.float64))
    # the probabilities sklearn scores, from the math module (not scratchnn's sigmoid)
    p = [1.0 / (1.0 + math.exp(-v)) for v in z[:, 0].tolist()]
    theirs = log_loss(y, p, labels=[0, 1])
    assert ours == pytest.approx(theirs, rel=1e-10)


def test_softmax_cross_entropy_matches_sklearn_log_loss() -> None:
    rng = np.random.default_rng(3)
    k = 5
    Z = rng.normal(scale=3.0, size=(300, k))
    y = rng.integers(0, k, size=300)
    loss = SoftmaxCrossEntropy()
    ours = loss.cost(Z, loss.targets(y, k, np.float64))
    # the probabilities sklearn scores, from the math module (not scratchnn's softmax)
    P = [[math.exp(v) / math.fsum(math.exp(u) for u in row) for v in row] for row in Z.tolist()]
    theirs = log_loss(y, P, labels=list(range(k)))
    assert ours == pytest.approx(theirs, rel=1e-10)


@pytest.mark.parametrize(
    ("z", "y", "cost"),
    [  # log(1 + e^z) - y z at a few points, by hand
        (0.0, 0, math.log(2.0)),
        (0.0, 1, math.log(2.0)),
        (2.0, 1, math.log1p(math.exp(-2.0))),  # log(1 + e^2) - 2 = log(1 + e^-2)
        (-3.0, 0, math.log1p(math.exp(-3.0))),
        (-3.0, 1, 3.0 + math.log1p(math.exp(-3.0))),
        (40.0, 0, 40.0 + math.log1p(math.exp(-40.0))),
    ],
)
def test_binary_cross_entropy_at_points_by_hand(z: float, y: int, cost: float) -> None:
    loss = BinaryCrossEntropy()
    L = loss.costs(np.array([[z]]), loss.targets(np.array([y]), 2, np.float64))
    assert L[0] == pytest.approx(cost, rel=1e-14, abs=0)


def test_softmax_cross_entropy_at_points_by_hand() -> None:
    loss = SoftmaxCrossEntropy()
    Z = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 2.0, -2.0]])
    L = loss.costs(Z, loss.targets(np.array([2, 0, 2]), 3, np.float64))
    expected = [
        math.log(3.0),  # three equal logits
        math.log(math.e + 2.0) - 1.0,  # log(e^1 + e^0 + e^0) - 1
        4.0 + math.log(2.0 + math.exp(-4.0)),  # log(2 e^2 + e^-2) - (-2)
    ]
    np.testing.assert_allclose(L, expected, rtol=1e-14)


def test_per_sample_costs_are_the_textbook_formulas() -> None:
    rng = np.random.default_rng(4)
    z = rng.normal(size=(6, 1))
    y = np.array([0, 1, 1, 0, 1, 0])
    a = 1 / (1 + np.exp(-z[:, 0]))
    expected = -(y * np.log(a) + (1 - y) * np.log(1 - a))
    bce = BinaryCrossEntropy()
    np.testing.assert_allclose(bce.costs(z, bce.targets(y, 2, np.float64)), expected, rtol=1e-12)

    Z = rng.normal(size=(6, 3))
    y3 = np.array([0, 2, 1, 1, 0, 2])
    P = np.exp(Z) / np.exp(Z).sum(axis=1, keepdims=True)
    sce = SoftmaxCrossEntropy()
    np.testing.assert_allclose(
        sce.costs(Z, sce.targets(y3, 3, np.float64)), -np.log(P[np.arange(6), y3]), rtol=1e-12
    )


# --------------------------------------------------------------------------- numerical stability


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sigmoid_and_softmax_are_stable_at_huge_logits(dtype: type) -> None:
    Z = np.array([[1000.0], [-1000.0], [0.0]], dtype=dtype)
    with no_warnings():
        s = sigmoid(Z)
    assert s.dtype == dtype
    assert np.isfinite(s).all()
    np.testing.assert_array_equal(s[:, 0], np.array([1.0, 0.0, 0.5], dtype=dtype))

    Zs = np.array(
        [[1000.0, -1000.0, 0.0], [1000.0, 1000.0, -1000.0], [-1000.0, -1000.0, -1000.0]],
        dtype=dtype,
    )
    with no_warnings():
        P = softmax(Zs)
    assert P.dtype == dtype
    assert np.isfinite(P).all()
    np.testing.assert_allclose(P[0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(P[1], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(P[2], [1 / 3, 1 / 3, 1 / 3], rtol=1e-6)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_hidden_activations_are_stable_at_huge_inputs(dtype: type) -> None:
    Z = np.array([[1000.0, -1000.0, 0.5]], dtype=dtype)
    for name, cls in ACTIVATIONS.items():
        g = cls()
        with no_warnings():
            A = g.forward(Z)
            dZ = g.backward(np.ones_like(Z))
        assert np.isfinite(A).all() and np.isfinite(dZ).all(), name


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_binary_cost_at_huge_logits_is_linear(dtype: type) -> None:
    loss = BinaryCrossEntropy()
    Z = np.array([[1000.0], [-1000.0], [1000.0], [-1000.0]], dtype=dtype)
    Y = np.array([[0.0], [1.0], [1.0], [0.0]], dtype=dtype)
    with no_warnings():
        L = loss.costs(Z, Y)
        J = loss.cost(Z, Y)
        dZ = loss.dZ(Z, Y)
    np.testing.assert_array_equal(L, np.array([1000.0, 1000.0, 0.0, 0.0], dtype=dtype))
    assert J == 500.0
    np.testing.assert_allclose(dZ[:, 0], np.array([1.0, -1.0, 0.0, 0.0]) / 4, atol=1e-7)
    assert np.isfinite(dZ).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_cost_at_huge_logits_is_linear(dtype: type) -> None:
    loss = SoftmaxCrossEntropy()
    Z = np.array([[1000.0, -1000.0, 0.0]] * 3, dtype=dtype)
    Y = loss.targets(np.array([0, 1, 2]), 3, dtype)
    with no_warnings():
        L = loss.costs(Z, Y)
        dZ = loss.dZ(Z, Y)
    np.testing.assert_allclose(L, [0.0, 2000.0, 1000.0], atol=1e-4)
    assert np.isfinite(dZ).all()
    np.testing.assert_allclose(dZ[1], np.array([1.0, -1.0, 0.0]) / 3, atol=1e-7)


def test_softmax_costs_are_never_negative() -> None:
    rng = np.random.default_rng(5)
    Z = rng.normal(scale=10.0, size=(50, 4))
    loss = SoftmaxCrossEntropy()
    L = loss.costs(Z, loss.targets(rng.integers(0, 4, size=50), 4, np.float64))
    assert (L >= 0).all()


# --------------------------------------------------------------------------- whole networks


def _network_for_grad_check(
    output: str, struct: list[int], activation: str, m: int
) -> tuple[Network, np.ndarray, np.ndarray]:
    """A float64 network and a batch whose hidden pre-activations are far from 0 (ReLU kink)."""
    n_features, k = 4, (2 if output == "sigmoid" else 3)
    n_outputs = 1 if output == "sigmoid" else k
    for seed in range(100):
        rng = np.random.default_rng([seed, len(struct), m])
        net = Network.from_struct(
            n_features, struct, n_outputs, activation=activation, output=output, rng=rng, sigma=1.0
        )
        X = rng.normal(size=(m, n_features))
        y, Y = labels_and_targets(net.loss, m, k, rng)
        net.forward(X)
        if all(np.abs(g.Z).min() > 1e-3 for g in net.layers if isinstance(g, Activation)):
            return net, X, Y
    raise AssertionError("no seed keeps the hidden pre-activations away from 0")


@pytest.mark.parametrize("m", [1, 7])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("struct", STRUCTS, ids=str)
@pytest.mark.parametrize("output", OUTPUTS)
def test_network_gradients_match_finite_differences(
    output: str, struct: list[int], activation: str, m: int
) -> None:
    net, X, Y = _network_for_grad_check(output, struct, activation, m)
    Z = net.forward(X)
    net.backward(net.loss.dZ(Z, Y))
    analytic = [g.copy() for g in net.grads()]
    params = net.params()
    assert len(analytic) == len(params) == 2 * (len(struct) + 1)

    def J() -> float:
        return net.loss.cost(net.forward(X), Y)

    for i, (P, G) in enumerate(zip(params, analytic, strict=True)):
        assert G.shape == P.shape
        what = f"{'dW' if i % 2 == 0 else 'db'}{i // 2}"
        assert_grad_close(
            G, numeric_grad(J, P), f"{output} {struct} {activation} m={m} {what}", whole=1e-7
        )


@pytest.mark.parametrize("output", OUTPUTS)
def test_float32_network_gradients_agree_with_float64(output: str) -> None:
    n_outputs = 1 if output == "sigmoid" else 3
    nets = {
        dtype: Network.from_struct(
            4, [5, 3], n_outputs, "tanh", output, rng=np.random.default_rng(7), dtype=dtype
        )
        for dtype in (np.float64, np.float32)
    }
    rng = np.random.default_rng(8)
    X = rng.normal(size=(6, 4))
    y = rng.integers(0, 2 if output == "sigmoid" else 3, size=6)
    grads = {}
    for dtype, net in nets.items():
        Y = net.loss.targets(y, 2 if output == "sigmoid" else 3, dtype)
        Z = net.forward(X.astype(dtype))
        net.backward(net.loss.dZ(Z, Y))
        grads[dtype] = net.grads()
    for g32, g64 in zip(grads[np.float32], grads[np.float64], strict=True):
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-6)


def test_network_sizes_and_predictions() -> None:
    net = Network.from_struct(3, [4, 2], 5, "relu", "softmax", rng=np.random.default_rng(0))
    assert net.sizes == [3, 4, 2, 5]
    assert [p.shape for p in net.params()] == [(3, 4), (4,), (4, 2), (2,), (2, 5), (5,)]
    X = np.random.default_rng(1).normal(size=(10, 3))
    P = net.predict_proba(X)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    np.testing.assert_array_equal(net.predict(X), P.argmax(axis=1))

    binary = Network.from_struct(3, [], 1, output="sigmoid", rng=np.random.default_rng(0))
    p = binary.predict_proba(X)
    assert p.shape == (10, 1)
    np.testing.assert_array_equal(binary.predict(X), (p[:, 0] > 0.5).astype(int))


def test_init_weights_follow_mu_and_sigma() -> None:
    net = Network.from_struct(
        200, [300], 1, rng=np.random.default_rng(0), mu=0.5, sigma=2.0, dtype=np.float32
    )
    W = net.layers[0].W
    assert W.dtype == np.float32 and net.dtype == np.float32
    assert W.mean() == pytest.approx(0.5, abs=0.02)
    assert W.std() == pytest.approx(2.0, rel=0.02)


# --------------------------------------------------------------------------- weight state


def test_state_load_state_round_trip(tmp_path: Path) -> None:
    source = Network.from_struct(3, [4, 2], 3, "tanh", "softmax", rng=np.random.default_rng(1))
    target = Network.from_struct(3, [4, 2], 3, "tanh", "softmax", rng=np.random.default_rng(2))
    X = np.random.default_rng(3).normal(size=(5, 3))
    assert not np.allclose(source.forward(X), target.forward(X))

    state = source.state()
    assert list(state) == ["W0", "b0", "W1", "b1", "W2", "b2"]
    np.savez(tmp_path / "model.npz", **state)
    with np.load(tmp_path / "model.npz") as saved:
        target.load_state({key: saved[key] for key in saved.files})

    for key, value in source.state().items():
        np.testing.assert_array_equal(target.state()[key], value)
    np.testing.assert_array_equal(target.forward(X), source.forward(X))
    # the loaded weights are copies, not views of the source
    source.layers[0].W += 1.0
    assert not np.array_equal(target.layers[0].W, source.layers[0].W)
    # params() still hands the optimizer the arrays the layers use
    assert target.params()[0] is target.layers[0].W


@pytest.mark.parametrize("key", ["W0", "b1"])
def test_load_state_with_a_wrong_shape_raises(key: str) -> None:
    net = Network.from_struct(3, [4], 1, rng=np.random.default_rng(0))
    state = {k: v.copy() for k, v in net.state().items()}
    state[key] = np.zeros(state[key].shape + (2,))
    with pytest.raises(ValueError, match=key):
        net.load_state(state)


def test_build_without_rng_raises() -> None:
    with pytest.raises(ValueError, match="rng"):
        Network.from_struct(3, [4], 1)


# --------------------------------------------------------------------------- optimizer


def test_sgd_step_is_theta_minus_lr_times_gradient() -> None:
    rng = np.random.default_rng(0)
    params = [rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=(4, 1))]
    grads = [rng.normal(size=p.shape) for p in params]
    lr = 0.037
    expected = [p - lr * g for p, g in zip(params, grads, strict=True)]
    ids = [id(p) for p in params]
    opt = SGD(params, lr)
    opt.step(grads)
    for p, e in zip(opt.params, expected, strict=True):
        np.testing.assert_array_equal(p, e)
    assert [id(p) for p in params] == ids  # updated in place


def test_sgd_updates_the_network_weights_in_place() -> None:
    net = Network.from_struct(2, [3], 1, rng=np.random.default_rng(0))
    before = [p.copy() for p in net.params()]
    X, Y = np.array([[0.5, -1.0]]), np.array([[1.0]])
    net.backward(net.loss.dZ(net.forward(X), Y))
    grads = [g.copy() for g in net.grads()]
    SGD(net.params(), 0.1).step(net.grads())
    for p, b, g in zip(net.params(), before, grads, strict=True):
        np.testing.assert_array_equal(p, b - 0.1 * g)
    assert net.cost(X, Y) < BinaryCrossEntropy().cost(
        Network.from_struct(2, [3], 1, rng=np.random.default_rng(0)).forward(X), Y
    )
