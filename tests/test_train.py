"""Tests for training.loop: learning on the built-ins, determinism, the stopping rules and
the epoch cost, through the same wiring run_experiment uses (load_dataset, build_network)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from scratchnn_cli.build import build_network, rng_streams, training_set
from scratchnn_cli.config import ExperimentConfig, TrainConfig
from scratchnn_cli.data import Dataset, load_dataset
from scratchnn_cli.metrics import score
from scratchnn_cli.nn.network import Network
from scratchnn_cli.training.loop import TrainResult, train


@dataclass
class Fit:
    config: ExperimentConfig
    dataset: Dataset
    net: Network
    result: TrainResult

    def accuracy(self, split: str = "test") -> float:
        X, y = self.dataset.split(split)
        return score(self.net, X, y, self.dataset.n_classes)["accuracy"]


def make_config(
    dataset: str = "blobs400", seed: int = 0, model: dict[str, Any] | None = None, **train_kw: Any
) -> ExperimentConfig:
    return ExperimentConfig.model_validate(
        {"seed": seed, "data": {"dataset": dataset}, "model": model or {}, "train": train_kw}
    )


def fit(config: ExperimentConfig) -> Fit:
    """What run_experiment does, minus the files: data, streams, network, training set, train."""
    dataset = load_dataset(config.data, config.seed)
    streams = rng_streams(config.seed)
    net = build_network(config, dataset, streams["init"])
    X, y = training_set(config, dataset)
    result = train(net, X, y, dataset.n_classes, config.train, streams["sampling"])
    return Fit(config, dataset, net, result)


# --------------------------------------------------------------------------- it learns


@pytest.mark.parametrize("seed", [0, 1])
def test_logistic_regression_on_blobs_matches_sklearn(seed: int) -> None:
    config = make_config("blobs400", seed, {"struct": []}, lr=0.01, eps=1e-8, max_iterations=20_000)
    result = fit(config)
    X, y = training_set(config, result.dataset)
    sk = LogisticRegression().fit(X, y)
    sk_accuracy = sk.score(result.dataset.X_test, result.dataset.y_test)
    assert result.net.sizes == [3, 1]
    assert result.accuracy("test") >= sk_accuracy - 0.02
    assert result.accuracy("test") >= 0.9


@pytest.mark.parametrize("seed", [0, 1])
def test_shallow_net_solves_circles(seed: int) -> None:
    config = make_config(
        "circles500",
        seed,
        {"struct": [8], "activation": "sigmoid", "sigma": 1.0},
        lr=0.1,
        eps=1e-8,
        max_iterations=15_000,
    )
    result = fit(config)
    assert result.accuracy("test") > 0.95
    # not a fluke of the data: logistic regression cannot do it on two rings
    linear = LogisticRegression().fit(*training_set(config, result.dataset))
    assert linear.score(result.dataset.X_test, result.dataset.y_test) < 0.8


def test_training_lowers_the_cost() -> None:
    result = fit(make_config("blobs400", 0, {"struct": [4]}, lr=0.05, max_iterations=4000))
    costs = [r.cost for r in result.result.history]
    assert costs[-1] < 0.5 * costs[0]


# --------------------------------------------------------------------------- determinism


def _weights(net: Network) -> list[np.ndarray]:
    return [p.copy() for p in net.params()]


def test_same_config_and_seed_give_identical_runs() -> None:
    config = make_config(
        "blobs400", 3, {"struct": [4], "activation": "tanh"}, lr=0.05, eps=0, max_iterations=1500
    )
    a, b = fit(config), fit(config)
    assert [r.cost for r in a.result.history] == [r.cost for r in b.result.history]
    assert [(r.epoch, r.iteration) for r in a.result.history] == [
        (r.epoch, r.iteration) for r in b.result.history
    ]
    for wa, wb in zip(_weights(a.net), _weights(b.net), strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_different_seed_gives_a_different_run() -> None:
    kwargs = dict(lr=0.05, eps=0, max_iterations=1500)
    model = {"struct": [4], "activation": "tanh"}
    a = fit(make_config("blobs400", 3, model, **kwargs))
    b = fit(make_config("blobs400", 4, model, **kwargs))
    assert [r.cost for r in a.result.history] != [r.cost for r in b.result.history]
    assert not all(
        np.array_equal(wa, wb) for wa, wb in zip(_weights(a.net), _weights(b.net), strict=True)
    )


def test_same_weights_different_sampling_seed_differ() -> None:
    """The sampling stream alone changes the run (the rng passed to train is used)."""
    config = make_config("blobs400", 0, {"struct": [3]}, lr=0.05, eps=0, max_iterations=600)
    dataset = load_dataset(config.data, config.seed)
    costs = []
    for sampling_seed in (10, 11):
        net = build_network(config, dataset, np.random.default_rng(5))
        result = train(
            net,
            dataset.X_train,
            dataset.y_train,
            2,
            config.train,
            np.random.default_rng(sampling_seed),
        )
        costs.append([r.cost for r in result.history])
    assert costs[0] != costs[1]


# --------------------------------------------------------------------------- stopping rules


def test_eps_stops_at_the_first_small_change() -> None:
    eps = 1e-3
    result = fit(make_config("blobs400", 0, {"struct": []}, lr=0.01, eps=eps, max_iterations=10**6))
    r = result.result
    N = len(result.dataset.y_train)
    costs = [h.cost for h in r.history]
    assert r.stopped_by == "eps"
    assert "converged" in r.stop_reason
    assert len(costs) >= 2
    assert abs(costs[-1] - costs[-2]) < eps
    assert all(abs(b - a) >= eps for a, b in zip(costs[:-2], costs[1:-1], strict=True))
    assert r.epochs == len(r.history)
    assert r.iterations == r.epochs * N < 10**6
    assert [h.epoch for h in r.history] == list(range(1, r.epochs + 1))
    assert [h.iteration for h in r.history] == [N * e for e in range(1, r.epochs + 1)]


@pytest.mark.parametrize("max_iterations", [1000, 1050, 50])
def test_max_iterations_stops_exactly(max_iterations: int) -> None:
    config = make_config(
        "blobs400", 0, {"struct": [2]}, lr=0.01, eps=0, max_iterations=max_iterations
    )
    result = fit(config)
    r = result.result
    N = len(result.dataset.y_train)
    assert N == 200
    expected_iterations = [
        min(N * e, max_iterations) for e in range(1, -(-max_iterations // N) + 1)
    ]
    assert r.stopped_by == "max_iterations"
    assert r.iterations == max_iterations
    assert r.epochs == len(expected_iterations) == len(r.history)
    assert [h.iteration for h in r.history] == expected_iterations
    assert str(f"{max_iterations:,}") in r.stop_reason
    assert all(np.isfinite(h.cost) for h in r.history)


def _accuracy_by_hand(net: Network, X: np.ndarray, y: np.ndarray) -> float:
    """Test accuracy from the weights alone, with plain NumPy (not the network's forward)."""
    g = {
        "sigmoid": lambda Z: 1.0 / (1.0 + np.exp(-Z)),
        "tanh": np.tanh,
        "relu": lambda Z: np.where(Z > 0, Z, 0.0),
        "leaky_relu": lambda Z: np.where(Z > 0, Z, 0.01 * Z),
    }[next((layer.kind for layer in net.layers if layer.kind != "dense"), "sigmoid")]
    params = [p.astype(np.float64) for p in net.params()]
    with np.errstate(over="ignore", invalid="ignore"):
        A = np.asarray(X, dtype=np.float64)
        for W, b in zip(params[0:-2:2], params[1:-2:2], strict=True):
            A = g(A @ W + b)
        Z = A @ params[-2] + params[-1]
    predicted = (Z[:, 0] > 0).astype(int) if Z.shape[1] == 1 else Z.argmax(axis=1)
    return float(np.mean(predicted == y))


# what each of these configs does with lr 1e6 and sigma 10 (seed 0), decided by its data alone
@pytest.mark.parametrize(
    ("dataset", "struct", "activation", "stopped_by"),
    [
        ("blobs400", [], "sigmoid", "max_iterations"),
        ("blobs400", [5], "leaky_relu", "diverged"),  # diverges in the first epoch
        ("blobs400", [8, 4], "relu", "eps"),  # every unit dead: the cost stops changing
        ("circles500", [5], "tanh", "max_iterations"),
        ("circles500", [8, 4], "leaky_relu", "diverged"),
        ("digits", [5], "sigmoid", "max_iterations"),
        ("digits", [5], "leaky_relu", "diverged"),
    ],
)
def test_huge_lr_and_sigma_never_warn(
    dataset: str, struct: list[int], activation: str, stopped_by: str
) -> None:
    config = make_config(
        dataset,
        0,
        {"struct": struct, "activation": activation, "sigma": 10.0},
        lr=1e6,
        eps=1e-8,
        max_iterations=2000,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning at all fails
        result = fit(config)
        accuracy = result.accuracy("test")  # scoring the result does not warn either
    r = result.result
    assert r.stopped_by == stopped_by, r.stop_reason
    assert all(np.isfinite(p).all() for p in result.net.params())
    assert all(np.isfinite(h.cost) for h in r.history)
    X_test, y_test = result.dataset.split("test")
    assert accuracy == _accuracy_by_hand(result.net, X_test, y_test)
    if stopped_by == "diverged":
        assert len(r.history) == r.epochs - 1 == 0  # the diverged epoch is not recorded
        assert "diverged in epoch 1" in r.stop_reason
        # the weights went back to the initial ones: the accuracy is that of a fresh network
        fresh = build_network(config, result.dataset, rng_streams(0)["init"])
        assert accuracy == _accuracy_by_hand(fresh, X_test, y_test)
    elif stopped_by == "eps":
        assert "converged" in r.stop_reason
        assert abs(r.history[-1].cost - r.history[-2].cost) < 1e-8
    else:
        assert r.iterations == 2000 and "max_iterations = 2,000" in r.stop_reason
    if dataset == "blobs400" and stopped_by == "max_iterations":
        assert accuracy >= 0.9  # logistic regression still separates the blobs (chance: 0.5)


def test_divergence_restores_the_weights_of_the_last_good_epoch() -> None:
    config = make_config(
        "blobs400",
        0,
        {"struct": [5], "activation": "leaky_relu", "sigma": 10.0},
        lr=1e6,
        eps=1e-8,
        max_iterations=2000,
    )
    dataset = load_dataset(config.data, config.seed)
    net = build_network(config, dataset, np.random.default_rng(0))
    initial = _weights(net)
    result = train(net, dataset.X_train, dataset.y_train, 2, config.train, np.random.default_rng(1))
    assert result.stopped_by == "diverged"
    assert result.epochs == 1 and result.history == []
    for p, p0 in zip(net.params(), initial, strict=True):
        np.testing.assert_array_equal(p, p0)


# --------------------------------------------------------------------------- the epoch cost


def _replay_by_hand(
    W: np.ndarray,
    b: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    output: str,
    lr: float,
    max_iterations: int,
    seed: int,
) -> tuple[list[float], np.ndarray, np.ndarray]:
    """Single-sample SGD of a no-hidden-layer model, written out with plain NumPy."""
    W, b = W.copy(), b.copy()
    rng = np.random.default_rng(seed)
    N, done, epoch_costs = len(y), 0, []
    while done < max_iterations:
        n = min(N, max_iterations - done)
        losses = []
        for i in rng.integers(0, N, size=n):
            z = X[i] @ W + b
            if output == "sigmoid":
                a = 1.0 / (1.0 + np.exp(-z[0]))
                losses.append(-(y[i] * np.log(a) + (1 - y[i]) * np.log(1 - a)))
                delta = np.array([a - y[i]])
            else:
                p = np.exp(z - z.max())
                p /= p.sum()
                losses.append(-np.log(p[y[i]]))
                delta = p.copy()
                delta[y[i]] -= 1.0
            W -= lr * np.outer(X[i], delta)
            b -= lr * delta
        done += n
        epoch_costs.append(float(np.mean(losses)))
    return epoch_costs, W, b


@pytest.mark.parametrize("output", ["sigmoid", "softmax"])
def test_epoch_cost_is_the_mean_of_the_per_sample_costs_seen(output: str) -> None:
    rng = np.random.default_rng(0)
    N, k = 6, (2 if output == "sigmoid" else 3)
    X = rng.normal(size=(N, 2))
    y = np.arange(N) % k
    net = Network.build(2, [], 1 if output == "sigmoid" else k, output=output, rng=rng, sigma=1.0)
    W0, b0 = net.layers[0].W.copy(), net.layers[0].b.copy()
    cfg = TrainConfig(lr=0.3, eps=0, max_iterations=15)  # epochs of 6, 6 and a partial 3
    result = train(net, X, y, k, cfg, np.random.default_rng(123))

    costs, W, b = _replay_by_hand(W0, b0, X, y, output, 0.3, 15, 123)
    assert [h.iteration for h in result.history] == [6, 12, 15]
    np.testing.assert_allclose([h.cost for h in result.history], costs, rtol=1e-12)
    np.testing.assert_allclose(net.layers[0].W, W, rtol=1e-12)
    np.testing.assert_allclose(net.layers[0].b, b, rtol=1e-12)


def test_epoch_cost_is_not_the_cost_after_the_epoch() -> None:
    """J_epoch uses the weights each sample saw, not the end-of-epoch weights."""
    config = make_config("blobs400", 0, {"struct": []}, lr=0.01, eps=0, max_iterations=200)
    result = fit(config)
    X, y = result.dataset.X_train, result.dataset.y_train
    end_of_epoch = result.net.cost(X, result.net.loss.targets(y, 2, np.float64))
    assert result.result.history[0].cost != pytest.approx(end_of_epoch, rel=1e-6)


def test_train_does_not_modify_the_dataset() -> None:
    config = make_config("blobs400", 0, {"struct": [2]}, lr=0.1, max_iterations=400)
    dataset = load_dataset(config.data, config.seed)
    before = dataset.X_train.copy()
    net = build_network(config, dataset, np.random.default_rng(0))
    train(net, dataset.X_train, dataset.y_train, 2, config.train, np.random.default_rng(0))
    np.testing.assert_array_equal(dataset.X_train, before)
