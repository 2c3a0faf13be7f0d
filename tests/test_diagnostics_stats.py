"""The statistics of scratchnn_cli.nn.diagnostics, each against a direct computation on a tiny
network: norms and gradients (central differences on a hand-written forward pass), saturated,
dead and twin units on weights set by hand, the probe's cost against ln K, and the network
left exactly as it was (theta, dtheta, running statistics, the dropout generator, caches)."""

from __future__ import annotations

import math
import tracemalloc
import warnings

import numpy as np
import pytest
from helpers import numeric_grad

from scratchnn_cli.nn import Network
from scratchnn_cli.nn import diagnostics as diag
from scratchnn_cli.nn.diagnostics import initial_cost_reference, probe_statistics
from scratchnn_cli.nn.layers import (
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    LeakyReLU,
    ReLU,
    Sigmoid,
    Tanh,
)

LN2, LN10 = 0.6931471805599453, 2.302585092994046  # the literals, not math.log


def one_hot(y: np.ndarray, k: int) -> np.ndarray:
    return np.eye(k)[y]


# --------------------------------------------------------------------------- norms, gradients


def hand_cost(X: np.ndarray, y: np.ndarray, W0, b0, W1, b1) -> float:
    """Z1 = X W0 + b0, A1 = tanh(Z1), Z2 = A1 W1 + b1, J = mean(logsumexp(Z2) - Z2[y])."""
    Z2 = np.tanh(X @ W0 + b0) @ W1 + b1
    return float(np.mean(np.log(np.exp(Z2).sum(axis=1)) - Z2[np.arange(len(y)), y]))


def central_difference(f, arrays: list[np.ndarray], which: int, h: float = 1e-6) -> np.ndarray:
    """dF/d(arrays[which]) by central differences on copies (the network is not used)."""
    arrays = [a.copy() for a in arrays]
    P = arrays[which]
    grad = np.zeros_like(P)
    for idx in np.ndindex(P.shape):
        saved = P[idx]
        P[idx] = saved + h
        plus = f(*arrays)
        P[idx] = saved - h
        minus = f(*arrays)
        P[idx] = saved
        grad[idx] = (plus - minus) / (2 * h)
    return grad


def test_norms_gradients_and_update_ratio_match_a_direct_computation() -> None:
    rng = np.random.default_rng(0)
    net = Network.from_struct(3, [4], 3, "tanh", "softmax", rng=rng, sigma=0.7)
    X, y = rng.normal(size=(7, 3)), np.array([0, 1, 2, 0, 1, 2, 2])
    arrays = [net.layers[0].W.copy(), net.layers[0].b.copy()]
    arrays += [net.layers[2].W.copy(), net.layers[2].b.copy()]
    lr = 0.3

    def J(*a: np.ndarray) -> float:
        return hand_cost(X, y, *a)

    cost, rows = probe_statistics(net, X, one_hot(y, 3), lr)

    assert cost == pytest.approx(J(*arrays), rel=1e-12)
    assert [(r.layer, r.kind) for r in rows] == [(0, "dense"), (1, "tanh"), (2, "dense")]
    for row, which in ((rows[0], 0), (rows[2], 2)):
        W = arrays[which]
        w = math.sqrt(sum(float(v) ** 2 for v in W.ravel()))
        g = float(np.sqrt(np.sum(central_difference(J, arrays, which) ** 2)))
        assert g > 1e-3  # a gradient worth comparing
        assert row.weight_norm == pytest.approx(w, rel=1e-12)
        assert row.grad_norm == pytest.approx(g, rel=1e-6)
        assert row.update_ratio == pytest.approx(lr * g / w, rel=1e-6)
        assert (row.saturated, row.dead) == (None, None)
    assert (rows[1].weight_norm, rows[1].grad_norm, rows[1].update_ratio) == (None, None, None)
    assert rows[1].twins is None and rows[1].dead is None and rows[1].saturated is not None


def trained_image_net(seed: int = 0, dtype: type = np.float64) -> tuple[Network, np.ndarray]:
    """conv -> batchnorm -> relu -> flatten -> dense -> dropout -> dense(3), after 3 training
    steps (running statistics and dropout generator moved on, caches and dtheta filled)."""
    rng = np.random.default_rng(seed)
    layers = [Conv2D(2, kernel=2), BatchNorm(), ReLU(), Flatten(), Dense(4), Tanh(), Dropout(0.5)]
    net = Network.from_layers(
        layers, (3, 3, 1), 3, "softmax", rng=rng, sigma=0.7, dtype=dtype,
        dropout_rng=np.random.default_rng(seed + 1),
    )  # fmt: skip
    X = rng.normal(size=(6, 3, 3, 1)).astype(dtype)
    Y = one_hot(np.array([0, 1, 2, 0, 1, 2]), 3).astype(dtype)
    for _ in range(3):
        net.backward(net.loss.dZ(net.forward(X, True), Y))
        net.theta -= 0.1 * net.dtheta
    return net, X


def test_gradients_are_those_of_the_inference_mode_cost() -> None:
    """Batch norm on its running statistics and no dropout: the gradient of net.cost."""
    net, X = trained_image_net()
    Y = one_hot(np.array([2, 1, 0, 0, 1, 2]), 3)
    _, rows = probe_statistics(net, X, Y, 0.1)
    for i in (0, 4, 7):  # conv, dense, output dense
        W = net.layers[i].params["W"]
        g = np.linalg.norm(numeric_grad(lambda: net.cost(X, Y), W))
        assert rows[i].grad_norm == pytest.approx(float(g), rel=1e-6)
        assert rows[i].weight_norm == pytest.approx(float(np.sqrt(np.sum(W**2))), rel=1e-12)
    has_weights = [r.weight_norm is not None for r in rows]
    assert has_weights == [True, False, False, False, True, False, False, True]
    assert rows[1].kind == "batchnorm" and rows[6].kind == "dropout"


def test_flat_rows_of_an_image_network_give_the_same_statistics() -> None:
    net, X = trained_image_net()
    Y = one_hot(np.array([2, 1, 0, 0, 1, 2]), 3)
    assert probe_statistics(net, X.reshape(6, -1), Y, 0.1) == probe_statistics(net, X, Y, 0.1)


# --------------------------------------------------------------------------- chunks


@pytest.mark.parametrize("per_chunk", [1, 4])  # chunks of 1 sample; of 4, then 2
def test_a_probe_in_chunks_has_the_gradient_of_the_whole_cost(per_chunk: int, monkeypatch) -> None:
    net, X = trained_image_net()
    Y = one_hot(np.array([2, 1, 0, 0, 1, 2]), 3)
    cache = sum(layer.cache_per_sample() for layer in net.layers)
    monkeypatch.setattr(diag, "CHUNK_CACHE", per_chunk * cache)
    cost, rows = probe_statistics(net, X, Y, 0.1)
    assert cost == pytest.approx(float(net.cost(X, Y)), rel=1e-12)
    for i in (0, 4, 7):  # conv, dense, output dense: against central differences of the whole
        g = np.linalg.norm(numeric_grad(lambda: net.cost(X, Y), net.layers[i].params["W"]))
        assert rows[i].grad_norm == pytest.approx(float(g), rel=1e-6)


def test_chunks_count_shares_over_the_whole_probe(monkeypatch) -> None:
    """Unit 3 is positive on the last sample only and unit 1 saturated on the first only: the
    shares are those of the whole probe, whichever chunk saw what."""
    layers = [Dense(4), ReLU(), Dense(2), Sigmoid()]
    net = Network.from_layers(layers, 1, 1, rng=np.random.default_rng(0))
    net.layers[0].W[...] = [[0.0, 0.0, 0.0, 1.0]]
    net.layers[0].b[...] = [-1.0, 1.0, 1.0, -2.5]  # unit 3 positive only where x > 2.5
    net.layers[2].W[...] = 0.0
    net.layers[2].W[3, 1] = 10.0  # z = 10 relu(x - 2.5): saturated only where x > 3.2
    X = np.array([[0.0], [1.0], [2.0], [4.0]])
    whole = probe_statistics(net, X, np.ones((4, 1)), 0.1)
    monkeypatch.setattr(diag, "CHUNK_CACHE", 1)  # one sample per chunk
    chunked = probe_statistics(net, X, np.ones((4, 1)), 0.1)
    assert (whole[1][1].dead, whole[1][3].saturated) == (0.25, 0.125)  # unit 0; 1 entry of 8
    assert [(r.dead, r.saturated, r.twins) for r in chunked[1]] == [
        (r.dead, r.saturated, r.twins) for r in whole[1]
    ]
    assert chunked[0] == pytest.approx(whole[0], rel=1e-12)


def test_a_chunked_probe_leaves_the_network_as_it_was(monkeypatch) -> None:
    net, X = trained_image_net()
    before = snapshot(net)
    monkeypatch.setattr(diag, "CHUNK_CACHE", 1)
    probe_statistics(net, X, one_hot(np.array([0, 0, 1, 1, 2, 2]), 3), 0.1)
    after = snapshot(net)
    np.testing.assert_array_equal(after["dtheta"], before["dtheta"])
    for layer_after, layer_before in zip(after["caches"], before["caches"], strict=True):
        assert all(layer_after[k] is v for k, v in layer_before.items())


def test_the_probe_of_a_conv_net_holds_a_chunk_of_caches_not_all_of_them(monkeypatch) -> None:
    """512 images through a conv net whose caches take 87 MiB for the whole probe: with chunks
    of 1M numbers (8 MiB), the peak stays near a chunk's."""
    monkeypatch.setattr(diag, "CHUNK_CACHE", 2**20)
    rng = np.random.default_rng(0)
    net = Network.from_layers(
        [Conv2D(8, kernel=3), ReLU(), Flatten()], (28, 28, 1), 2, "softmax", rng=rng
    )
    X, Y = rng.normal(size=(512, 28, 28, 1)), one_hot(np.arange(512) % 2, 2)
    per_sample = 8 * sum(layer.cache_per_sample() for layer in net.layers)  # bytes, float64
    tracemalloc.start()
    try:
        probe_statistics(net, X, Y, 0.1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert per_sample * 512 > 8 * diag.CHUNK_CACHE  # the whole probe would not fit a chunk
    assert peak < 2 * 8 * diag.CHUNK_CACHE, peak / 2**20


def test_update_ratio_is_none_for_zero_weights() -> None:
    net = Network.from_struct(2, [3], 1, rng=np.random.default_rng(0), sigma=0.0)  # W = b = 0
    _, rows = probe_statistics(net, np.ones((4, 2)), np.ones((4, 1)), 0.1)
    assert rows[0].weight_norm == 0.0 and rows[0].update_ratio is None


# --------------------------------------------------------------------------- saturated


@pytest.mark.parametrize(
    ("activation", "z"),
    # sigmoid: A(1 - A) = 0.0066 at z = 5 (above 0.0025: not saturated), 0.00091 at 7;
    # tanh: 1 - A^2 = 0.027 at z = 2.5 (above 0.01), 0.0036 at 3.5
    [(Sigmoid, [5.0, 7.0, -7.0, 0.0]), (Tanh, [2.5, 3.5, -3.5, 0.0])],
)
def test_saturated_is_the_share_with_slope_below_one_percent_of_its_peak(activation, z) -> None:
    net = Network.from_layers([Dense(4), activation()], 1, 1, rng=np.random.default_rng(0))
    net.layers[0].W[...] = [z]
    net.layers[0].b[...] = 0.0
    _, rows = probe_statistics(net, np.ones((5, 1)), np.ones((5, 1)), 0.1)
    assert rows[1].saturated == 0.5  # units 1 and 2 on every sample, units 0 and 3 on none
    assert rows[1].dead is None and rows[0].saturated is None


def test_saturated_large_weights_for_half_the_units() -> None:
    rng = np.random.default_rng(1)
    net = Network.from_layers([Dense(6), Sigmoid()], 2, 1, rng=rng)
    X = rng.uniform(0.5, 1.5, size=(50, 2)) * rng.choice([-1, 1], size=(50, 2))  # |x| >= 0.5
    W = np.zeros((2, 6))
    W[0, :3] = 100.0  # |z| >= 50: saturated on every sample
    W[1, 3:] = 0.01  # |z| <= 0.015: A near 1/2
    net.layers[0].W[...], net.layers[0].b[...] = W, 0.0
    _, rows = probe_statistics(net, X, np.ones((50, 1)), 0.1)
    assert rows[1].saturated == 0.5


# --------------------------------------------------------------------------- dead


@pytest.mark.parametrize("activation", [ReLU, lambda: LeakyReLU(0.1)])
def test_dead_is_the_share_of_units_never_positive(activation) -> None:
    net = Network.from_layers([Dense(6), activation()], 1, 1, rng=np.random.default_rng(0))
    net.layers[0].W[...] = [[0.0, 0.0, 0.0, 1.0, 0.0, 0.0]]
    net.layers[0].b[...] = [-1.0, -1.0, -1.0, -0.5, 1.0, 1.0]  # unit 3: positive on one sample
    X = np.array([[0.0], [0.0], [0.0], [1.0]])
    _, rows = probe_statistics(net, X, np.ones((4, 1)), 0.1)
    assert rows[1].dead == 0.5  # units 0, 1, 2
    assert rows[1].saturated is None


def test_dead_on_images_counts_each_entry_of_a_sample() -> None:
    """A unit is a (position, channel) entry: channel 0 is alive at one position of four."""
    net = Network.from_layers(
        [Conv2D(2, kernel=1), ReLU(), Flatten()], (2, 2, 1), 1, rng=np.random.default_rng(0)
    )
    net.layers[0].W[...] = np.array([1.0, 0.0]).reshape(1, 1, 1, 2)
    net.layers[0].b[...] = [-0.5, 1.0]
    X = np.zeros((3, 2, 2, 1))
    X[0, 0, 0, 0] = 1.0  # the one positive entry of channel 0
    _, rows = probe_statistics(net, X, np.ones((3, 1)), 0.1)
    assert rows[1].dead == 3 / 8


# --------------------------------------------------------------------------- twins


@pytest.mark.parametrize("mu", [0.0, 0.3])
def test_equal_initial_weights_make_every_unit_a_twin(mu: float) -> None:
    net = Network.from_struct(
        3, [5], 4, "tanh", "softmax", rng=np.random.default_rng(0), mu=mu, sigma=0
    )
    _, rows = probe_statistics(net, np.ones((2, 3)), one_hot(np.array([0, 1]), 4), 0.1)
    assert (rows[0].twins, rows[2].twins) == (1.0, 1.0)


def test_random_weights_have_no_twins_and_one_unit_has_none() -> None:
    net = Network.from_struct(3, [5], 1, rng=np.random.default_rng(0), sigma=0.5)
    _, rows = probe_statistics(net, np.ones((2, 3)), np.ones((2, 1)), 0.1)
    assert rows[0].twins == 0.0
    assert rows[2].twins is None  # the sigmoid output: one unit


@pytest.mark.parametrize(
    ("scale", "expected"), [(1.0, 0.4), (1 + 1e-5, 0.4), (1 + 1e-2, 0.0)]
)  # fmt: skip
def test_copied_units_are_twins_within_the_tolerance(scale: float, expected: float) -> None:
    net = Network.from_struct(3, [5], 1, rng=np.random.default_rng(0), sigma=0.5)
    dense = net.layers[0]
    dense.W[:, 3] = dense.W[:, 1] * scale
    dense.b[3] = dense.b[1] * scale
    _, rows = probe_statistics(net, np.ones((2, 3)), np.ones((2, 1)), 0.1)
    assert rows[0].twins == expected


@pytest.mark.parametrize("block_entries", [300 * 7, diag.TWIN_BLOCK_ENTRIES])
def test_twins_in_blocks_of_a_wide_layer(block_entries: int, monkeypatch) -> None:
    monkeypatch.setattr(diag, "TWIN_BLOCK_ENTRIES", block_entries)  # 7 rows a block, or one
    net = Network.from_struct(4, [300], 1, rng=np.random.default_rng(0), sigma=0.5)
    dense = net.layers[0]
    dense.W[:, 299], dense.b[299] = dense.W[:, 3], dense.b[3]  # in different blocks
    _, rows = probe_statistics(net, np.ones((2, 4)), np.ones((2, 1)), 0.1)
    assert rows[0].twins == 2 / 300


def test_twins_skip_layers_too_costly() -> None:
    net = Network.from_struct(1, [40_000], 1, rng=np.random.default_rng(0), sigma=0)  # 3.2e9 > 2^31
    _, rows = probe_statistics(net, np.ones((2, 1)), np.ones((2, 1)), 0.1)
    assert rows[0].twins is None and rows[0].weight_norm == 0.0


# --------------------------------------------------------------------------- the cost, ln K


def test_initial_cost_reference_is_ln_k() -> None:
    assert initial_cost_reference(2) == pytest.approx(LN2, rel=1e-15)
    assert initial_cost_reference(10) == pytest.approx(LN10, rel=1e-15)
    for bad in (1, 0, 2.0, True):
        with pytest.raises(ValueError, match="n_classes"):
            initial_cost_reference(bad)


@pytest.mark.parametrize(("output", "k", "ln_k"), [("softmax", 10, LN10), ("sigmoid", 2, LN2)])
def test_small_initial_weights_start_at_ln_k(output: str, k: int, ln_k: float) -> None:
    rng = np.random.default_rng(0)
    n_out = k if output == "softmax" else 1
    net = Network.from_struct(5, [8], n_out, "tanh", output, rng=rng, sigma=1e-4)
    y = rng.integers(0, k, size=64)
    cost, _ = probe_statistics(
        net, rng.normal(size=(64, 5)), net.loss.targets(y, k, np.float64), 0.1
    )
    assert cost == pytest.approx(ln_k, abs=1e-3)
    big = Network.from_struct(5, [8], n_out, "tanh", output, rng=rng, sigma=3.0)
    cost, _ = probe_statistics(
        big, rng.normal(size=(64, 5)), net.loss.targets(y, k, np.float64), 0.1
    )
    assert abs(cost - ln_k) > 0.1  # large weights do not start there


def test_targets_of_another_shape_are_refused() -> None:
    net = Network.from_struct(2, [3], 1, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="shape"):
        probe_statistics(net, np.ones((4, 2)), np.ones(4), 0.1)  # labels (4,), not (4, 1)


def test_targets_for_more_samples_than_x_are_refused(monkeypatch) -> None:
    net = Network.from_struct(2, [3], 1, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"Y has shape \(5, 1\), for 4 samples of X"):
        probe_statistics(net, np.ones((4, 2)), np.ones((5, 1)), 0.1)
    monkeypatch.setattr(diag, "CHUNK_CACHE", 1)  # a chunk per sample: the whole shapes are named
    with pytest.raises(ValueError, match=r"Y has shape \(4, 2\), the network's outputs \(4, 1\)"):
        probe_statistics(net, np.ones((4, 2)), np.ones((4, 2)), 0.1)


@pytest.mark.parametrize("value", [1e200, np.inf, np.nan])
def test_diverged_weights_give_inf_or_nan_and_no_warning(value: float) -> None:
    net = Network.from_struct(3, [4], 3, "tanh", "softmax", rng=np.random.default_rng(0))
    net.layers[0].W[0] = value
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cost, rows = probe_statistics(net, np.ones((4, 3)), one_hot(np.array([0, 1, 2, 0]), 3), 1)
    norm = rows[0].weight_norm
    assert math.isnan(norm) if np.isnan(value) else norm == math.inf  # sum of squares overflows
    assert math.isfinite(rows[2].weight_norm)
    assert math.isnan(cost) == bool(np.isnan(value))


# --------------------------------------------------------------------------- dtype, untouched


def test_float32_networks_give_python_floats_close_to_float64() -> None:
    net64, X = trained_image_net()
    net32, _ = trained_image_net(dtype=np.float32)
    net32.load_state(net64.state())  # the same weights and running statistics, rounded
    Y = one_hot(np.array([2, 1, 0, 0, 1, 2]), 3)
    stats = {
        np.float64: probe_statistics(net64, X, Y, 0.1),
        np.float32: probe_statistics(net32, X.astype(np.float32), Y.astype(np.float32), 0.1),
    }
    cost, rows = stats[np.float32]
    assert type(cost) is float
    values = [v for r in rows for v in vars(r).values() if isinstance(v, float | np.floating)]
    assert values and all(type(v) is float for v in values)
    cost64, rows64 = stats[np.float64]
    assert cost == pytest.approx(cost64, rel=1e-5)
    for r32, r64 in zip(rows, rows64, strict=True):
        for name in ("weight_norm", "grad_norm", "update_ratio"):
            a, b = getattr(r32, name), getattr(r64, name)
            assert (a is None) == (b is None)
            if a is not None:
                assert a == pytest.approx(b, rel=1e-4), name


def snapshot(net: Network) -> dict:
    return {
        "theta": net.theta.copy(),
        "dtheta": net.dtheta.copy(),
        "buffers": net.buffers(),
        "rng": net.rng.bit_generator.state,
        "caches": [dict(vars(layer)) for layer in net.layers],
    }


def test_the_network_is_left_exactly_as_it_was() -> None:
    net, X = trained_image_net()
    rng = net.rng
    before = snapshot(net)
    assert before["buffers"] and before["dtheta"].any()  # running statistics, gradients
    probe_statistics(net, X[::-1] * 2, one_hot(np.array([0, 0, 1, 1, 2, 2]), 3), 0.1)
    after = snapshot(net)
    np.testing.assert_array_equal(after["theta"], before["theta"])
    np.testing.assert_array_equal(after["dtheta"], before["dtheta"])
    assert after["buffers"].keys() == before["buffers"].keys()
    for name, value in before["buffers"].items():
        np.testing.assert_array_equal(after["buffers"][name], value)
    assert net.rng is rng and after["rng"] == before["rng"]
    for layer_after, layer_before in zip(after["caches"], before["caches"], strict=True):
        assert layer_after.keys() == layer_before.keys()
        assert all(layer_after[k] is v for k, v in layer_before.items())


def test_training_gives_the_same_numbers_with_probes_or_without() -> None:
    """Probes between updates, and between a step's forward and backward, change nothing."""
    runs = []
    for probing in (False, True):
        net, X = trained_image_net(seed=3)
        Y = one_hot(np.array([0, 1, 2, 2, 1, 0]), 3)
        probe = (X[:4] + 1.0, Y[:4])
        for _ in range(4):
            if probing:
                probe_statistics(net, *probe, 0.1)
            Z = net.forward(X, True)
            if probing:
                probe_statistics(net, *probe, 0.1)
            net.backward(net.loss.dZ(Z, Y))
            net.theta -= 0.1 * net.dtheta
        runs.append((net.theta.copy(), net.buffers(), net.rng.bit_generator.state))
    (theta0, buffers0, rng0), (theta1, buffers1, rng1) = runs
    np.testing.assert_array_equal(theta1, theta0)
    for name, value in buffers0.items():
        np.testing.assert_array_equal(buffers1[name], value)
    assert rng1 == rng0
