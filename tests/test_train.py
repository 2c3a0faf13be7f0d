"""Tests for training.loop: learning on the built-ins, determinism, the stopping rules, the epoch
cost, resuming after a Ctrl-C with identical weights, the assignment's single-sample SGD bit for
bit, mini-batches and sampling, and both dtypes, through the same wiring run_experiment uses
(load_dataset, network_for_dataset)."""

from __future__ import annotations

import importlib.util
import math
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from helpers import (
    CONFIGS,
    assert_same_weights,
    fit,
    make_config,
    record_batches,
    temp_files,
    tiny_net,
    tiny_problem,
    weights_of,
)
from sklearn.linear_model import LogisticRegression

from scratchnn_cli import runs
from scratchnn_cli.assembly import network_for_dataset, training_set
from scratchnn_cli.config import ExperimentConfig, TrainConfig, load_config
from scratchnn_cli.data import load_dataset
from scratchnn_cli.nn.network import Network
from scratchnn_cli.streams import training_streams
from scratchnn_cli.training import Hooks, Snapshot, TrainResult, train

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
        net = network_for_dataset(config, dataset, np.random.default_rng(5))
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
        fresh = network_for_dataset(config, result.dataset, training_streams(0).init)
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
    net = network_for_dataset(config, dataset, np.random.default_rng(0))
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
    net = Network.from_struct(
        2, [], 1 if output == "sigmoid" else k, output=output, rng=rng, sigma=1.0
    )
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
    net = network_for_dataset(config, dataset, np.random.default_rng(0))
    train(net, dataset.X_train, dataset.y_train, 2, config.train, np.random.default_rng(0))
    np.testing.assert_array_equal(dataset.X_train, before)


# --------------------------------------------------------------------------- resume after a Ctrl-C


RESUME_CASES = {
    # the course assignment: single-sample SGD, sampling with replacement, eps stopping rule
    "sgd-batch-1": make_config("blobs400", 3, {"struct": [5]}, lr=0.05, max_iterations=200 * 12),
    "adam-batch-16-dropout": make_config(
        "digits",
        3,
        {"struct": [16], "activation": "relu", "init": "he", "dropout": 0.2},
        optimizer={"name": "adam"},
        lr=0.01,
        eps=0,
        batch_size=16,
        sampling="shuffle",
        max_epochs=8,
    ),
    "early-stopping": make_config(
        "circles500",
        3,
        {"struct": [8], "activation": "tanh"},
        optimizer="adam",
        lr=0.1,
        eps=0,
        batch_size=16,
        max_epochs=60,
        early_stopping={"patience": 3, "min_delta": 0.001},
    ),
    "float32-momentum-l2-step": make_config(
        "blobs400",
        3,
        {"struct": [4, 3], "dtype": "float32", "init": "xavier"},
        optimizer={"name": "momentum", "beta": 0.8},
        lr=0.2,
        eps=0,
        batch_size=7,
        l2=0.001,
        lr_schedule={"name": "step", "drop": 0.5, "every": 3},
        max_epochs=10,
    ),
}


def fit_resumable(
    config: ExperimentConfig,
    stop_at_epoch: int | None = None,
    stop_at_forward: int | None = None,
    resume_from: Snapshot | None = None,
) -> tuple[TrainResult, list[np.ndarray], list[Snapshot], int]:
    """What run_experiment does, minus the files: fresh data, streams and initial weights.

    A Ctrl-C (KeyboardInterrupt) is raised by the epoch callback at epoch ``stop_at_epoch``,
    or by the network's ``stop_at_forward``-th forward pass (mid-epoch, where a real Ctrl-C
    nearly always lands). Returns (result, weights, checkpoints, forward passes); the result's
    ``stopped_by`` is "interrupted" when the KeyboardInterrupt came through.
    """
    dataset = load_dataset(config.data, config.seed)
    streams = training_streams(config.seed)
    net = network_for_dataset(config, dataset, streams.init, streams.dropout)
    X, y = training_set(config, dataset)
    checkpoints: list[Snapshot] = []
    forwards = 0
    real_forward = net.forward

    def forward(X: np.ndarray, training: bool = False) -> np.ndarray:
        nonlocal forwards
        forwards += 1
        if forwards == stop_at_forward:
            raise KeyboardInterrupt
        return real_forward(X, training)

    net.forward = forward  # type: ignore[method-assign]

    def on_epoch(record: Any) -> None:
        if record.epoch == stop_at_epoch:
            raise KeyboardInterrupt

    result = TrainResult()
    try:
        train(
            net,
            X,
            y,
            dataset.n_classes,
            config.train,
            streams.sampling,
            validation=dataset.split("val"),
            hooks=Hooks(on_epoch, checkpoints.append, checkpoint_every=2),
            result=result,
            resume_from=resume_from,
        )
    except KeyboardInterrupt:
        assert result.stopped_by == "interrupted"
    return result, [p.copy() for p in net.params()], checkpoints, forwards


@pytest.fixture(scope="module")
def whole_fits() -> dict[str, tuple[TrainResult, list[np.ndarray], int]]:
    fits = {}
    for key, config in RESUME_CASES.items():
        result, weights, _, forwards = fit_resumable(config)
        assert result.stopped_by != "interrupted"
        fits[key] = (result, weights, forwards)
    assert fits["early-stopping"][0].stopped_by == "early_stopping"
    assert fits["sgd-batch-1"][0].stopped_by == "max_iterations"
    return fits


def history_rows(result: TrainResult) -> list[tuple[Any, ...]]:
    """Every column of the history except the wall-clock seconds."""
    return [
        (r.epoch, r.iteration, r.cost, r.train_accuracy, r.val_cost, r.val_accuracy, r.lr)
        for r in result.history
    ]


def check_resume(
    config: ExperimentConfig,
    whole: TrainResult,
    whole_weights: list[np.ndarray],
    stopped: tuple[TrainResult, list[np.ndarray], list[Snapshot], int],
    via_disk: Path | None,
    what: str,
) -> None:
    """The Ctrl-C'd fit rolled back to its last finished epoch, checkpointed it, and a fresh
    fit resumed from that checkpoint ends exactly like the uninterrupted one."""
    result, weights, checkpoints, _ = stopped
    assert result.stopped_by == "interrupted", what
    snapshot = checkpoints[-1]
    assert result.epochs == snapshot.epochs, what
    assert [r.epoch for r in result.history] == list(range(1, snapshot.epochs + 1)), what
    assert [r.epoch for r in snapshot.history] == list(range(1, snapshot.epochs + 1)), what
    assert all(np.array_equal(a, b) for a, b in zip(weights, snapshot.params, strict=True))
    if via_disk is not None:
        runs.write_checkpoint(via_disk, snapshot)
        assert temp_files(via_disk.parent) == []
        snapshot = runs.read_checkpoint(via_disk)
    resumed, resumed_weights, _, _ = fit_resumable(config, resume_from=snapshot)
    assert (resumed.stopped_by, resumed.epochs, resumed.iterations, resumed.best_epoch) == (
        whole.stopped_by,
        whole.epochs,
        whole.iterations,
        whole.best_epoch,
    ), what
    assert history_rows(resumed) == history_rows(whole), what
    costs = np.array([r.cost for r in resumed.history])
    assert np.array_equal(costs, np.array([r.cost for r in whole.history])), what
    for a, b in zip(resumed_weights, whole_weights, strict=True):
        assert a.dtype == b.dtype, what
        assert np.array_equal(a, b), what


@pytest.mark.parametrize("via_disk", [False, True], ids=["in-memory", "checkpoint-file"])
@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_after_a_mid_epoch_ctrl_c_gives_identical_weights(
    whole_fits: dict[str, tuple[TrainResult, list[np.ndarray], int]],
    case: str,
    via_disk: bool,
    tmp_path: Path,
) -> None:
    whole, whole_weights, forwards = whole_fits[case]
    # the first forward pass, a third and two thirds in, and the very last one (the last
    # epoch's validation pass; for early stopping, in the middle of the patience)
    for k in sorted({1, forwards // 3, 2 * forwards // 3, forwards}):
        stopped = fit_resumable(RESUME_CASES[case], stop_at_forward=k)
        disk = tmp_path / f"checkpoint-{k}.npz" if via_disk else None
        check_resume(RESUME_CASES[case], whole, whole_weights, stopped, disk, f"forward {k}")


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_after_a_ctrl_c_in_the_epoch_callback_gives_identical_weights(
    whole_fits: dict[str, tuple[TrainResult, list[np.ndarray], int]],
    case: str,
    tmp_path: Path,
) -> None:
    """A Ctrl-C inside the epoch callback (the CLI's progress line, the learning-curve redraw)
    comes after the epoch was added to the history: it must be dropped with the rollback."""
    whole, whole_weights, _ = whole_fits[case]
    for k in sorted({1, max(1, whole.epochs // 2), whole.epochs}):
        stopped = fit_resumable(RESUME_CASES[case], stop_at_epoch=k)
        disk = tmp_path / f"checkpoint-{k}.npz"
        check_resume(RESUME_CASES[case], whole, whole_weights, stopped, disk, f"epoch {k}")


# --------------------------------------------------------------- the assignment's single-sample SGD


def reference_single_sample_sgd(
    net: Network,
    X: np.ndarray,
    Y: np.ndarray,
    lr: float,
    eps: float,
    max_iterations: int,
    rng: np.random.Generator,
) -> list[float]:
    """The course assignment's loop, written out: per epoch N random draws with replacement,
    one sample per update; the epoch cost is the mean of the per-sample costs before each update.
    """
    N = X.shape[0]
    params, grads = net.params(), net.grads()
    done, epoch_costs, J_prev = 0, [], None
    while done < max_iterations:
        order = rng.integers(0, N, size=N)
        n = min(N, max_iterations - done)
        sample_costs = []
        for i in order[:n]:
            Z = net.forward(X[i : i + 1])
            sample_costs.append(net.loss.costs(Z, Y[i : i + 1])[0])
            dZ = net.loss.dZ(Z, Y[i : i + 1])
            net.backward(dZ)
            for p, g in zip(params, grads, strict=True):
                p -= lr * g
        done += n
        J = float(np.mean(sample_costs))
        epoch_costs.append(J)
        if J_prev is not None and abs(J - J_prev) < eps:
            break
        J_prev = J
    return epoch_costs


@pytest.mark.parametrize("engine", ["numpy", "compiled"])
@pytest.mark.parametrize(
    ("config_file", "n_train"), [("circles_shallow.yaml", 375), ("blobs_logistic.yaml", 200)]
)
def test_defaults_reproduce_the_assignment_single_sample_sgd_bit_for_bit(
    config_file: str, n_train: int, engine: str
) -> None:
    """The NumPy engine bit for bit; the compiled one (other rounding: BLAS sums, its own exp)
    to 1e-12."""
    config = load_config(CONFIGS / config_file, ["train.max_iterations=3000"])
    cfg = config.train
    default = TrainConfig(lr=cfg.lr, eps=cfg.eps, max_iterations=3000)
    assert cfg == default  # the shipped config uses nothing beyond the assignment's three keys
    assert (default.batch_size, default.sampling, default.optimizer.name) == (1, "random", "sgd")
    assert (default.l1, default.l2, default.early_stopping, config.model.dropout) == (0, 0, None, 0)

    dataset = load_dataset(config.data, config.seed)
    X, y = training_set(config, dataset)
    assert len(y) == n_train

    # the trainer, wired as run_experiment wires it
    streams = training_streams(config.seed)
    net = network_for_dataset(config, dataset, streams.init, streams.dropout)
    val = None if config.data.train_on == "train+val" else dataset.split("val")
    result = train(
        net, X, y, dataset.n_classes, default, streams.sampling, validation=val, engine=engine
    )

    # the reference loop, from the same seeds
    ref_streams = training_streams(config.seed)
    ref_net = network_for_dataset(config, dataset, ref_streams.init)
    Y = ref_net.loss.targets(y, dataset.n_classes, ref_net.dtype)
    ref_costs = reference_single_sample_sgd(
        ref_net, X, Y, cfg.lr, cfg.eps, cfg.max_iterations, ref_streams.sampling
    )

    assert result.stopped_by == "max_iterations"
    assert result.iterations == 3000
    assert [h.iteration for h in result.history] == [
        min(n_train * e, 3000) for e in range(1, len(ref_costs) + 1)
    ]
    if engine == "numpy":
        assert [h.cost for h in result.history] == ref_costs  # bit-identical
        assert_same_weights(weights_of(net), weights_of(ref_net))
        return
    np.testing.assert_allclose([h.cost for h in result.history], ref_costs, rtol=1e-12)
    for ours, theirs in zip(net.params(), ref_net.params(), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)


def _notebook_port() -> ModuleType:
    """benchmarks/notebook_port.py, the course notebook's per-element loops, loaded by path."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "notebook_port.py"
    spec = importlib.util.spec_from_file_location("notebook_port", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("engine", ["numpy", "compiled"])
@pytest.mark.parametrize("struct", [[3], [4, 3]])
def test_single_sample_sgd_with_hidden_layers_matches_the_notebook_loops(
    struct: list[int], engine: str
) -> None:
    """The trainer against an oracle that shares none of its code: the notebook's loops
    (scalar sigmoid, per-element forward, backward and update) from the same initial weights and
    the same sample draws (sampling stream [seed, 3]), 3000 steps of lr 0.05 on blobs400."""
    seed, lr, steps = 0, 0.05, 3000
    config = make_config(
        "blobs400",
        seed,
        {"struct": struct, "sigma": 0.5},
        {"split": [0.5, 0.25, 0.25]},
        lr=lr,
        eps=0,
        max_iterations=steps,
    )
    dataset = load_dataset(config.data, config.seed)
    X, y = training_set(config, dataset)
    N = len(y)
    assert (N, steps % N) == (200, 0)  # whole epochs: the port draws an epoch at a time too
    streams = training_streams(seed)
    net = network_for_dataset(config, dataset, streams.init)
    kinds = [layer.kind for layer in net.layers]
    assert set(kinds) == {"dense", "sigmoid"} and net.loss.name == "sigmoid"  # what the port does
    assert net.sizes == [X.shape[1], *struct, 1]
    port = _notebook_port().LoopNet([p.copy() for p in net.params()])

    result = train(
        net,
        X,
        y,
        dataset.n_classes,
        config.train,
        streams.sampling,
        dataset.split("val"),
        engine=engine,
    )
    port_costs, _ = port.train(
        np.asarray(X, dtype=np.float64), y, lr, steps, np.random.default_rng([seed, 3])
    )

    assert result.stopped_by == "max_iterations"
    assert [h.iteration for h in result.history] == list(range(N, steps + 1, N))
    assert len(port_costs) == len(result.history) == steps // N
    np.testing.assert_allclose([h.cost for h in result.history], port_costs, rtol=1e-12)
    assert port_costs[-1] < 0.5 * port_costs[0]  # it learned: not a comparison of idle runs
    for i, (ours, theirs) in enumerate(zip(net.params(), port.params(), strict=True)):
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(
            ours, theirs, rtol=1e-12, atol=1e-14, err_msg=f"{'Wb'[i % 2]}{i // 2}"
        )


# ------------------------------------------------------------------------ mini-batches and sampling


@pytest.mark.parametrize(("N", "B"), [(10, 3), (10, 5), (10, 4), (7, 1), (5, 16)])
def test_an_epoch_is_ceil_n_over_b_updates(N: int, B: int) -> None:
    X, y = tiny_problem(N)
    net = tiny_net()
    batches = record_batches(net)
    cfg = TrainConfig(lr=0.01, eps=0, max_epochs=3, batch_size=B, engine="numpy")
    result = train(net, X, y, 2, cfg, np.random.default_rng(0))
    per_epoch = math.ceil(N / B)
    assert result.stopped_by == "max_epochs"
    assert "max_epochs = 3" in result.stop_reason
    assert result.epochs == 3
    assert result.iterations == 3 * per_epoch
    assert [h.iteration for h in result.history] == [per_epoch, 2 * per_epoch, 3 * per_epoch]
    assert len(batches) == 3 * per_epoch
    sizes = [len(b) for b in batches[:per_epoch]]
    assert sum(sizes) == N  # an epoch is one pass of N samples
    assert sizes == [min(B, N - s) for s in range(0, N, B)]


@pytest.mark.parametrize("B", [1, 4])
def test_random_sampling_draws_with_replacement_from_the_sampling_rng(B: int) -> None:
    N = 10
    X, y = tiny_problem(N)
    net = tiny_net()
    batches = record_batches(net)
    cfg = TrainConfig(lr=0.01, eps=0, max_epochs=3, batch_size=B, sampling="random", engine="numpy")
    train(net, X, y, 2, cfg, np.random.default_rng(42))
    replay = np.random.default_rng(42)
    expected = []
    for _ in range(3):
        order = replay.integers(0, N, size=N).tolist()
        expected += [order[s : s + B] for s in range(0, N, B)]
    assert batches == expected


@pytest.mark.parametrize("B", [1, 3])
def test_shuffle_sees_every_sample_exactly_once_per_epoch(B: int) -> None:
    N, epochs = 10, 4
    X, y = tiny_problem(N)
    net = tiny_net()
    batches = record_batches(net)
    cfg = TrainConfig(
        lr=0.01, eps=0, max_epochs=epochs, batch_size=B, sampling="shuffle", engine="numpy"
    )
    train(net, X, y, 2, cfg, np.random.default_rng(7))
    per_epoch = math.ceil(N / B)
    assert len(batches) == epochs * per_epoch
    replay = np.random.default_rng(7)
    orders = []
    for e in range(epochs):
        rows = [r for b in batches[e * per_epoch : (e + 1) * per_epoch] for r in b]
        assert sorted(rows) == list(range(N)), f"epoch {e + 1}"
        assert rows == replay.permutation(N).tolist()
        orders.append(rows)
    assert len({tuple(o) for o in orders}) > 1  # reshuffled, not one fixed order


def test_full_batch_is_one_plain_gradient_step_per_epoch() -> None:
    config = make_config("blobs400", 0, {"struct": [3]})
    dataset = load_dataset(config.data, config.seed)
    X, y = dataset.X_train, dataset.y_train
    lr = 0.3

    # by hand: the whole-set gradient at the initial weights, one step W - lr dW
    by_hand = network_for_dataset(config, dataset, np.random.default_rng(5))
    Y = by_hand.loss.targets(y, 2, by_hand.dtype)
    Z = by_hand.forward(X)
    J0 = by_hand.loss.cost(Z, Y)
    by_hand.backward(by_hand.loss.dZ(Z, Y))
    expected = [p - lr * g for p, g in zip(by_hand.params(), by_hand.grads(), strict=True)]

    net = network_for_dataset(config, dataset, np.random.default_rng(5))
    batches = record_batches(net)
    rng = np.random.default_rng(0)
    rng_state = rng.bit_generator.state
    cfg = TrainConfig(lr=lr, eps=0, max_epochs=1, batch_size="full", engine="numpy")
    result = train(net, X, y, 2, cfg, rng)
    assert result.iterations == 1 and result.epochs == 1
    assert [h.iteration for h in result.history] == [1]
    assert len(batches) == 1 and batches[0] == [int(v) for v in X[:, 0]]  # all rows, in order
    assert result.history[0].cost == J0
    for p, e in zip(net.params(), expected, strict=True):
        np.testing.assert_allclose(p, e, rtol=1e-15, atol=1e-15)
    assert rng.bit_generator.state == rng_state  # the order is fixed: nothing drawn


def test_full_batch_does_one_update_per_epoch_over_several_epochs() -> None:
    X, y = tiny_problem(12)
    net = tiny_net()
    batches = record_batches(net)
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    cfg = TrainConfig(
        lr=0.01, eps=0, max_epochs=5, batch_size="full", sampling="shuffle", engine="numpy"
    )
    result = train(net, X, y, 2, cfg, rng)
    assert rng.bit_generator.state == state  # full batch: fixed order, even with shuffle
    assert result.iterations == 5 and result.epochs == 5
    assert [h.iteration for h in result.history] == [1, 2, 3, 4, 5]
    assert batches == [list(range(12))] * 5


@pytest.mark.parametrize(
    ("B", "max_iterations", "expected_iterations", "last_epoch_rows"),
    [
        (3, 6, [4, 6], 6),  # second epoch cut after 2 of its 4 updates
        (4, 5, [3, 5], 8),  # 3 updates per epoch (4, 4, 2): stops after 4 + 4 rows
        (3, 4, [4], 10),  # exactly one epoch
        (1, 13, [10, 13], 3),
    ],
)
def test_max_iterations_counts_updates_and_stops_mid_epoch(
    B: int, max_iterations: int, expected_iterations: list[int], last_epoch_rows: int
) -> None:
    N = 10
    X, y = tiny_problem(N)
    net = tiny_net()
    batches = record_batches(net)
    cfg = TrainConfig(lr=0.01, eps=0, max_iterations=max_iterations, batch_size=B, engine="numpy")
    result = train(net, X, y, 2, cfg, np.random.default_rng(0))
    assert result.stopped_by == "max_iterations"
    assert result.iterations == max_iterations == len(batches)
    assert [h.iteration for h in result.history] == expected_iterations
    assert result.epochs == len(expected_iterations)
    per_epoch = math.ceil(N / B)
    last = batches[(result.epochs - 1) * per_epoch :]
    assert sum(len(b) for b in last) == last_epoch_rows


def test_max_epochs_and_max_iterations_whichever_comes_first() -> None:
    X, y = tiny_problem(10)
    by_epochs = train(
        tiny_net(),
        X,
        y,
        2,
        TrainConfig(lr=0.01, eps=0, max_epochs=2, max_iterations=100, batch_size=3),
        np.random.default_rng(0),
    )
    assert (by_epochs.stopped_by, by_epochs.epochs, by_epochs.iterations) == ("max_epochs", 2, 8)
    by_updates = train(
        tiny_net(),
        X,
        y,
        2,
        TrainConfig(lr=0.01, eps=0, max_epochs=5, max_iterations=9, batch_size=3),
        np.random.default_rng(0),
    )
    assert (by_updates.stopped_by, by_updates.epochs, by_updates.iterations) == (
        "max_iterations",
        3,
        9,
    )


# --------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_both_dtypes_learn_digits(dtype: str) -> None:
    config = make_config(
        "digits",
        0,
        {"struct": [32], "activation": "relu", "init": "he", "dtype": dtype},
        lr=0.01,
        eps=0,
        max_epochs=15,
        batch_size=32,
        optimizer="adam",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = fit(config)
        accuracy = result.accuracy("test")
    assert all(p.dtype == np.dtype(dtype) for p in result.net.params())
    assert accuracy > 0.9
