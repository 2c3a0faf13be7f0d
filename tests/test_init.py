"""nn/init.py: the scales of xavier and he initialisation, model.init reaching the network, and
the normal init's mu and sigma for weights and biases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import make_config

from scratchnn_cli.assembly import network_for_dataset
from scratchnn_cli.data import load_dataset
from scratchnn_cli.nn.init import init_dense


@pytest.mark.parametrize(
    ("init", "n_in", "n_out", "std"),
    [
        ("xavier", 800, 400, math.sqrt(2 / 1200)),
        ("he", 800, 400, math.sqrt(2 / 800)),
        ("he", 50, 2000, math.sqrt(2 / 50)),
    ],
)
def test_xavier_and_he_scales(init: str, n_in: int, n_out: int, std: float) -> None:
    W, b = np.empty((n_in, n_out)), np.full(n_out, 7.0)
    init_dense(W, b, np.random.default_rng(0), init, mu=0.0, sigma=0.1)
    np.testing.assert_array_equal(b, np.zeros(n_out))
    assert float(W.mean()) == pytest.approx(0.0, abs=0.01 * std)
    assert float(W.std()) == pytest.approx(std, rel=0.01)


def test_init_from_the_config_reaches_the_network() -> None:
    dataset = load_dataset(make_config("digits").data, 0)
    for init, expected in (("xavier", math.sqrt(2 / (64 + 300))), ("he", math.sqrt(2 / 64))):
        config = make_config("digits", 0, {"struct": [300], "init": init, "dtype": "float32"})
        net = network_for_dataset(config, dataset, np.random.default_rng(0))
        W0, b0 = net.layers[0].W, net.layers[0].b
        assert W0.dtype == np.float32
        assert float(W0.std()) == pytest.approx(expected, rel=0.03)
        assert not b0.any()


def test_normal_init_uses_mu_and_sigma_for_weights_and_biases() -> None:
    rng = np.random.default_rng(0)
    (W, b), (W2, b2) = (
        (np.empty((300, 600)), np.empty(600)),
        (np.empty((600, 400)), np.empty(400)),
    )
    init_dense(W, b, rng, "normal", mu=0.3, sigma=0.05)
    init_dense(W2, b2, rng, "normal", mu=0.3, sigma=0.05)
    for array in (W, W2):
        assert float(array.mean()) == pytest.approx(0.3, abs=0.001)
        assert float(array.std()) == pytest.approx(0.05, rel=0.01)
    both = np.concatenate([b, b2])
    assert float(both.mean()) == pytest.approx(0.3, abs=0.01)
    assert float(both.std()) == pytest.approx(0.05, rel=0.1)
