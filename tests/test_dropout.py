"""nn/layers/dropout.py: off at evaluation, masks that drop at rate p and rescale (the expected
output kept), gradients through a fixed mask, and masks drawn from the dropout stream only."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    FORWARD_TOL,
    assert_grad_close,
    assert_same_weights,
    check_layer_gradients,
    fit,
    in_network,
    make_config,
    numeric_grad,
    weights_of,
)

from scratchnn_cli.metrics import score
from scratchnn_cli.nn.layers import (
    Dropout,
    Flatten,
)
from scratchnn_cli.nn.network import Network

# --------------------------------------------------------------------------- dropout


def dropout_layers(net: Network) -> list[Dropout]:
    return [layer for layer in net.layers if isinstance(layer, Dropout)]


def test_dropout_is_off_at_evaluation() -> None:
    def build(dropout: float) -> Network:
        return Network.from_struct(
            5,
            [30, 20],
            3,
            "relu",
            "softmax",
            rng=np.random.default_rng(0),
            dropout=dropout,
            dropout_rng=np.random.default_rng(1),
        )

    with_dropout, plain = build(0.5), build(0.0)
    assert len(dropout_layers(with_dropout)) == 2 and dropout_layers(plain) == []
    X = np.random.default_rng(2).normal(size=(8, 5))
    Z1 = with_dropout.forward(X)
    assert all(layer.mask is None for layer in dropout_layers(with_dropout))
    Z2 = with_dropout.forward(X)
    np.testing.assert_array_equal(Z1, Z2)
    np.testing.assert_array_equal(Z1, plain.forward(X))
    np.testing.assert_array_equal(with_dropout.predict_proba(X), plain.predict_proba(X))
    # training mode on a network without dropout changes nothing; with dropout it does
    np.testing.assert_array_equal(plain.forward(X, training=True), Z1)
    assert not np.allclose(with_dropout.forward(X, training=True), Z1)


@pytest.mark.parametrize("p", [0.2, 0.5])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dropout_masks_drop_at_rate_p_and_rescale(p: float, dtype: type) -> None:
    rng = np.random.default_rng(1)
    net = Network.from_struct(
        20,
        [400, 300],
        2,
        "sigmoid",
        "softmax",
        rng=rng,
        dtype=dtype,
        dropout=p,
        dropout_rng=np.random.default_rng(2),
    )
    X = rng.normal(size=(200, 20)).astype(dtype)
    net.forward(X, training=True)
    layers = net.layers
    drops = [i for i, layer in enumerate(layers) if isinstance(layer, Dropout)]
    assert len(drops) == 2
    for i in drops:
        mask, A = layers[i].mask, layers[i - 1].A  # the activation the mask multiplies
        assert mask.shape == A.shape and mask.dtype == dtype
        values = np.unique(mask)
        np.testing.assert_allclose(values, [0.0, 1.0 / (1.0 - p)], rtol=1e-6)
        assert np.mean(mask == 0) == pytest.approx(p, abs=0.01)
        # the next layer sees A * mask; its mean is A's mean (inverted dropout)
        seen = layers[i + 1].A_prev
        np.testing.assert_allclose(seen, A * mask, rtol=1e-6)
        assert float(np.mean(seen)) == pytest.approx(float(np.mean(A)), rel=0.02)


def test_dropout_preserves_the_expected_output() -> None:
    rng = np.random.default_rng(4)
    net = Network.from_struct(
        3,
        [50],
        2,
        "tanh",
        "softmax",
        rng=rng,
        sigma=0.5,
        dropout=0.3,
        dropout_rng=np.random.default_rng(5),
    )
    X = rng.normal(size=(4, 3))
    Z_eval = net.forward(X)
    Z_mean = np.mean([net.forward(X, training=True) for _ in range(3000)], axis=0)
    spread = np.std([net.forward(X, training=True) for _ in range(50)], axis=0)
    assert spread.min() > 0  # masks really vary between calls
    np.testing.assert_allclose(Z_mean, Z_eval, atol=0.1 * spread.max())


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "leaky_relu"])
def test_gradient_with_a_fixed_dropout_mask_matches_finite_differences(activation: str) -> None:
    rng = np.random.default_rng(6)
    net = Network.from_struct(4, [6, 5], 3, activation, "softmax", rng=rng, sigma=0.8, dropout=0.4)
    X = rng.normal(size=(5, 4))
    Y = net.loss.targets(np.array([0, 1, 2, 0, 1]), 3, np.float64)

    def forward_with_the_same_masks() -> np.ndarray:
        net.rng = np.random.default_rng(99)  # the same seed draws the same masks every time
        return net.forward(X, training=True)

    def J() -> float:
        return net.loss.cost(forward_with_the_same_masks(), Y)

    net.backward(net.loss.dZ(forward_with_the_same_masks(), Y))
    masks = [layer.mask.copy() for layer in dropout_layers(net)]
    assert any((m == 0).any() for m in masks)  # something is actually dropped
    analytic = [g.copy() for g in net.grads()]
    for i, (P, G) in enumerate(zip(net.params(), analytic, strict=True)):
        assert_grad_close(G, numeric_grad(J, P), f"param {i}")
    # the masked gradient is not the unmasked one
    net.backward(net.loss.dZ(net.forward(X), Y))
    assert not np.allclose(net.grads()[0], analytic[0])


def test_training_applies_dropout_from_the_dropout_stream_only() -> None:
    config = make_config(
        "circles500",
        0,
        {"struct": [16], "activation": "tanh", "init": "xavier", "dropout": 0.2},
        lr=0.3,
        eps=0,
        max_epochs=40,
        batch_size=16,
    )
    a, b = fit(config), fit(config)
    assert [h.cost for h in a.result.history] == [h.cost for h in b.result.history]
    assert_same_weights(weights_of(a.net), weights_of(b.net))
    assert a.accuracy("test") > 0.9
    # without dropout, same seeds: a different run
    plain = fit(config.model_copy(update={"model": config.model.model_copy(update={"dropout": 0})}))
    assert [h.cost for h in plain.result.history] != [h.cost for h in a.result.history]
    # the validation columns are scored without dropout: they match a re-evaluation
    X_val, y_val = a.dataset.split("val")
    last = a.result.history[-1]
    assert last.val_accuracy == score(a.net, X_val, y_val, 2).accuracy
    assert last.val_cost == a.val_cost()


# ------------------------------------------------------------------------ a fixed mask, layer alone


def test_dropout_gradient_with_a_fixed_mask_matches_central_differences() -> None:
    net = in_network([Dropout(0.4), Flatten()], (3, 5, 2))
    drop = net.layers[0]
    X = np.random.default_rng(20).normal(size=(4, 3, 5, 2))

    def reset() -> None:
        net.rng = np.random.default_rng(21)

    reset()
    A = drop.forward(X, training=True)
    dropped = A == 0
    assert 0.2 < dropped.mean() < 0.6  # a real mask: about 40 % of the entries are zeroed
    np.testing.assert_allclose(A[~dropped], X[~dropped] / 0.6, **FORWARD_TOL)
    check_layer_gradients(drop, X, training=True, before_forward=reset)
    np.testing.assert_array_equal(drop.forward(X, training=False), X)  # evaluation: identity
