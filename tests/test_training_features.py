"""Tests of the training features beyond the course's single-sample SGD: mini-batches and
sampling, the update rules, L1/L2 penalties, dropout, early stopping, learning-rate schedules,
dtypes, weight initialisation, and the config refusals that guard them.

Everything runs through the same wiring as ``run_experiment`` (``load_dataset``,
``rng_streams``, ``build_network``, ``training_set``, ``train``) unless a test needs a tiny
hand-made problem.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from helpers import numeric_grad

import scratchnn_cli.training.loop as train_module
from scratchnn_cli.build import build_network, check_compatible, rng_streams, training_set
from scratchnn_cli.config import ExperimentConfig, TrainConfig, build_config, load_config
from scratchnn_cli.data import Dataset, load_dataset
from scratchnn_cli.errors import ConfigError
from scratchnn_cli.experiment import run_experiment
from scratchnn_cli.metrics import score
from scratchnn_cli.nn.init import init_dense
from scratchnn_cli.nn.layers import Dropout
from scratchnn_cli.nn.network import Network
from scratchnn_cli.nn.optim.optimizers import Optimizer
from scratchnn_cli.nn.regularizers import add_penalty_gradient, penalty
from scratchnn_cli.training import EpochRecord, Hooks, TrainResult, train

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
OPTIMIZER_NAMES = ["sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"]


# --------------------------------------------------------------------------- helpers


def make_config(
    dataset: str = "blobs400",
    seed: int = 0,
    model: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    **train_kw: Any,
) -> ExperimentConfig:
    return ExperimentConfig.model_validate(
        {
            "seed": seed,
            "data": {"dataset": dataset, **(data or {})},
            "model": model or {},
            "train": train_kw,
        }
    )


@dataclass
class Fit:
    config: ExperimentConfig
    dataset: Dataset
    net: Network
    result: TrainResult
    snapshots: list[list[np.ndarray]]  # the weights at the end of each recorded epoch

    def accuracy(self, split: str = "test") -> float:
        X, y = self.dataset.split(split)
        return score(self.net, X, y, self.dataset.n_classes)["accuracy"]

    def val_cost(self) -> float:
        X, y = self.dataset.split("val")
        Y = self.net.loss.targets(y, self.dataset.n_classes, self.net.dtype)
        return self.net.loss.cost(self.net.forward(np.asarray(X, dtype=self.net.dtype)), Y)


def fit(config: ExperimentConfig) -> Fit:
    """What run_experiment does, minus the files (validation split and dropout stream included);
    the weights are copied at the end of every epoch."""
    dataset = load_dataset(config.data, config.seed)
    streams = rng_streams(config.seed)
    net = build_network(config, dataset, streams["init"], streams["dropout"])
    X, y = training_set(config, dataset)
    val = None if config.data.train_on == "train+val" else dataset.split("val")
    snapshots: list[list[np.ndarray]] = []

    def on_epoch(record: EpochRecord) -> None:
        snapshots.append([p.copy() for p in net.params()])

    result = train(
        net,
        X,
        y,
        dataset.n_classes,
        config.train,
        streams["sampling"],
        validation=val,
        hooks=Hooks(on_epoch=on_epoch),
    )
    return Fit(config, dataset, net, result, snapshots)


def weights_of(net: Network) -> list[np.ndarray]:
    return [p.copy() for p in net.params()]


def assert_same_weights(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for pa, pb in zip(a, b, strict=True):
        assert pa.dtype == pb.dtype
        np.testing.assert_array_equal(pa, pb)


def tiny_problem(N: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """N samples whose first feature is the row number (so a batch tells which rows it holds)."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.arange(N, dtype=np.float64), rng.normal(size=(N, 2))])
    y = np.arange(N) % 2
    return X, y


def tiny_net(
    seed: int = 1,
    dtype: type = np.float64,
    dropout: float = 0.0,
    dropout_rng: np.random.Generator | None = None,
) -> Network:
    return Network.build(
        3,
        [4],
        1,
        activation="tanh",
        rng=np.random.default_rng(seed),
        dtype=dtype,
        dropout=dropout,
        dropout_rng=dropout_rng,
    )


def record_batches(net: Network) -> list[list[int]]:
    """Wrap ``net.forward`` (on the instance: ``train`` reads it there) to log batches' rows."""
    seen: list[list[int]] = []
    original = net.forward

    def forward(X: np.ndarray, training: bool = False) -> np.ndarray:
        seen.append([int(v) for v in X[:, 0]])
        return original(X, training)

    net.forward = forward  # type: ignore[method-assign]
    return seen


def capture_optimizer(monkeypatch: pytest.MonkeyPatch) -> list[Optimizer]:
    """Record the optimizer ``train`` builds (``make_optimizer`` as seen by the train module)."""
    made: list[Optimizer] = []
    real = train_module.make_optimizer

    def spy(*args: Any, **kwargs: Any) -> Optimizer:
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(train_module, "make_optimizer", spy)
    return made


def assert_grad_close(analytic: np.ndarray, numeric: np.ndarray, what: str) -> None:
    err = np.abs(analytic - numeric)
    bound = 1e-6 * np.maximum(np.abs(analytic), np.abs(numeric)) + 1e-8
    bad = np.argwhere(err > bound)
    assert bad.size == 0, (
        f"{what}: {len(bad)} entries differ, first at {tuple(bad[0])}: "
        f"analytic {analytic[tuple(bad[0])]!r} vs numeric {numeric[tuple(bad[0])]!r}"
    )


# --------------------------------------------------------------------------- 1. regression


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
    streams = rng_streams(config.seed)
    net = build_network(config, dataset, streams["init"], streams["dropout"])
    val = None if config.data.train_on == "train+val" else dataset.split("val")
    result = train(
        net, X, y, dataset.n_classes, default, streams["sampling"], validation=val, engine=engine
    )

    # the reference loop, from the same seeds
    ref_streams = rng_streams(config.seed)
    ref_net = build_network(config, dataset, ref_streams["init"])
    Y = ref_net.loss.targets(y, dataset.n_classes, ref_net.dtype)
    ref_costs = reference_single_sample_sgd(
        ref_net, X, Y, cfg.lr, cfg.eps, cfg.max_iterations, ref_streams["sampling"]
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
    streams = rng_streams(seed)
    net = build_network(config, dataset, streams["init"])
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
        streams["sampling"],
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


# --------------------------------------------------------------------------- 2. mini-batches


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
    by_hand = build_network(config, dataset, np.random.default_rng(5))
    Y = by_hand.loss.targets(y, 2, by_hand.dtype)
    Z = by_hand.forward(X)
    J0 = by_hand.loss.cost(Z, Y)
    by_hand.backward(by_hand.loss.dZ(Z, Y))
    expected = [p - lr * g for p, g in zip(by_hand.params(), by_hand.grads(), strict=True)]

    net = build_network(config, dataset, np.random.default_rng(5))
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


# --------------------------------------------------------------------------- 3. optimizers

LEARNING_RATES = {
    "sgd": 0.5,
    "momentum": 0.1,
    "nesterov": 0.1,
    "rmsprop": 0.01,
    "adam": 0.01,
    "adamw": 0.01,
}


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_every_optimizer_learns_circles_with_mini_batches(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = capture_optimizer(monkeypatch)
    config = make_config(
        "circles500",
        0,
        {"struct": [8], "activation": "tanh", "init": "xavier"},
        lr=LEARNING_RATES[name],
        eps=0,
        batch_size=16,
        max_epochs=60,
        optimizer=name,
    )
    result = fit(config)
    assert len(made) == 1 and type(made[0]).__name__.lower() == name
    assert made[0].t == result.result.iterations == 60 * math.ceil(250 / 16)
    costs = [h.cost for h in result.result.history]
    assert costs[-1] < 0.5 * costs[0]
    assert result.accuracy("test") > 0.9  # chance is 0.5; a linear model gets < 0.8


HYPERS = {
    "momentum": {"beta": 0.5},
    "nesterov": {"beta": 0.7},
    "rmsprop": {"beta": 0.8, "epsilon": 1e-6},
    "adam": {"beta1": 0.8, "beta2": 0.99, "epsilon": 1e-7},
    "adamw": {"beta1": 0.85, "beta2": 0.95, "epsilon": 1e-5, "weight_decay": 0.2},
}


@pytest.mark.parametrize("name", sorted(HYPERS))
def test_optimizer_hyper_parameters_from_the_config_reach_the_optimizer(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = {
        "data": {"dataset": "blobs400"},
        "model": {"struct": [2]},
        "train": {"lr": 0.01, "max_epochs": 1, "batch_size": 50, "optimizer": {"name": name}},
    }
    raw["train"]["optimizer"].update(HYPERS[name])
    config = build_config(raw, "test")
    made = capture_optimizer(monkeypatch)
    tuned = fit(config)
    assert len(made) == 1
    for key, value in HYPERS[name].items():
        assert getattr(made[0], key) == value, key
    # and they change the run: the rule's defaults give other weights
    raw["train"]["optimizer"] = {"name": name}
    default = fit(build_config(raw, "test"))
    assert not all(
        np.array_equal(a, b)
        for a, b in zip(weights_of(tuned.net), weights_of(default.net), strict=True)
    )


def test_optimizer_given_by_name_only_uses_the_rule_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = capture_optimizer(monkeypatch)
    config = build_config(
        {
            "data": {"dataset": "blobs400"},
            "train": {"optimizer": "adam", "max_epochs": 1, "batch_size": 100},
        },
        "test",
    )
    fit(config)
    assert (made[0].beta1, made[0].beta2, made[0].epsilon) == (0.9, 0.999, 1e-8)


# --------------------------------------------------------------------------- 4. L1 / L2


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
    initial = weights_of(build_network(config, dataset, rng_streams(config.seed)["init"]))
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
    net = Network.build(
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


# --------------------------------------------------------------------------- 5. dropout


def dropout_layers(net: Network) -> list[Dropout]:
    return [layer for layer in net.layers if isinstance(layer, Dropout)]


def test_dropout_is_off_at_evaluation() -> None:
    def build(dropout: float) -> Network:
        return Network.build(
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
    net = Network.build(
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
    net = Network.build(
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
    net = Network.build(4, [6, 5], 3, activation, "softmax", rng=rng, sigma=0.8, dropout=0.4)
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
    assert last.val_accuracy == score(a.net, X_val, y_val, 2)["accuracy"]
    assert last.val_cost == a.val_cost()


# --------------------------------------------------------------------------- 6. early stopping


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


# --------------------------------------------------------------------------- 7. schedules


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


# --------------------------------------------------------------------------- 8. dtype


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


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_float32_stays_float32_with_every_optimizer(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = capture_optimizer(monkeypatch)
    config = make_config(
        "blobs400",
        0,
        {"struct": [5], "activation": "relu", "init": "he", "dtype": "float32", "dropout": 0.2},
        lr=LEARNING_RATES[name],
        eps=0,
        max_epochs=4,
        batch_size=8,
        optimizer=name,
        l1=1e-4,
        l2=1e-3,
        lr_schedule={"name": "exponential", "gamma": 0.9},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = fit(config)
        accuracy = result.accuracy("test")
    net = result.net
    assert all(p.dtype == np.float32 for p in net.params())
    assert all(g.dtype == np.float32 for g in net.grads())
    for value in made[0].state_dict().values():
        if isinstance(value, np.ndarray):
            assert value.dtype == np.float32
    assert all(isinstance(h.cost, float) and math.isfinite(h.cost) for h in result.result.history)
    assert all(type(h.lr) is float for h in result.result.history)
    assert accuracy > 0.8


# --------------------------------------------------------------------------- 9. init


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
        net = build_network(config, dataset, np.random.default_rng(0))
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


# --------------------------------------------------------------------------- 10. refusals


def refused(train_section: dict[str, Any], match: str, **top: Any) -> str:
    """The message of the ConfigError the spec gets; it must match ``match`` (a regex)."""
    raw = {"data": {"dataset": "blobs400"}, "train": train_section, **top}
    with pytest.raises(ConfigError, match=match) as info:
        build_config(raw, "spec.yaml")
    return str(info.value)


@pytest.mark.parametrize(
    ("optimizer", "bad"),
    [
        ({"name": "sgd", "beta": 0.9}, "beta"),
        ({"name": "momentum", "beta1": 0.9}, "beta1"),
        ({"name": "adam", "beta": 0.9}, "beta"),
        ({"name": "rmsprop", "weight_decay": 0.1}, "weight_decay"),
        ({"name": "adam", "weight_decay": 0.1}, "weight_decay"),
    ],
)
def test_refuses_a_hyper_parameter_the_rule_does_not_take(
    optimizer: dict[str, Any], bad: str
) -> None:
    message = refused(
        {"optimizer": optimizer},
        rf"^spec\.yaml: train\.optimizer\.{bad}: \w+ does not take {bad} \(",
    )
    assert message.startswith("spec.yaml: train.optimizer")
    assert f"{optimizer['name']} does not take {bad}" in message


def test_refuses_cosine_without_a_length() -> None:
    message = refused(
        {"lr_schedule": "cosine"},
        r"^spec\.yaml: train: lr_schedule: cosine needs lr_schedule\.epochs or train\.max_epochs$",
    )
    assert "train" in message and "lr_schedule.epochs" in message
    assert "train.max_epochs" in message
    # either length is enough
    build_config(
        {"data": {"dataset": "blobs400"}, "train": {"lr_schedule": "cosine", "max_epochs": 5}}, "s"
    )
    build_config(
        {
            "data": {"dataset": "blobs400"},
            "train": {"lr_schedule": {"name": "cosine", "epochs": 5}},
        },
        "s",
    )


def test_refuses_a_cosine_lr_min_above_lr() -> None:
    message = refused(
        {"lr": 0.001, "max_epochs": 5, "lr_schedule": {"name": "cosine", "lr_min": 0.01}},
        r"^spec\.yaml: train: lr_schedule\.lr_min \(0\.01\) is above train\.lr \(0\.001\)$",
    )
    assert "lr_schedule.lr_min" in message


@pytest.mark.parametrize("batch_size", [0, -3, "ful", "Full", None])
def test_refuses_bad_batch_sizes(batch_size: Any) -> None:
    message = refused(
        {"batch_size": batch_size},
        r"^spec\.yaml: train\.batch_size: must be a positive whole number or 'full'",
    )
    assert "train.batch_size" in message
    assert "'full'" in message


def test_refuses_an_early_stopping_monitor_typo() -> None:
    message = refused(
        {"early_stopping": {"monitor": "val_acc"}},
        r"^spec\.yaml: train\.early_stopping\.monitor: .*\(got 'val_acc'\)$",
    )
    assert "train.early_stopping.monitor" in message
    assert "val_accuracy" in message


def test_refuses_unknown_keys_in_the_new_sections() -> None:
    assert "train.early_stopping.patiense" in refused(
        {"early_stopping": {"patiense": 3}},
        r"^spec\.yaml: train\.early_stopping\.patiense: unknown key \(did you mean 'patience'",
    )
    assert "train.lr_schedule.gama" in refused(
        {"lr_schedule": {"name": "step", "gama": 0.5}},
        r"^spec\.yaml: train\.lr_schedule\.gama: step does not take gama \(it takes drop, every\)",
    )
    assert "model.dropout" in refused(
        {}, r"^spec\.yaml: model\.dropout: .*less than 1 \(got 1\.0\)$", model={"dropout": 1.0}
    )


def _es_config(**data: Any) -> ExperimentConfig:
    return make_config("blobs400", 0, data=data, early_stopping={"patience": 2})


def test_check_compatible_refuses_early_stopping_on_train_plus_val(tmp_path: Path) -> None:
    config = _es_config(train_on="train+val")
    dataset = load_dataset(config.data, config.seed)
    with pytest.raises(ConfigError, match="train.early_stopping") as info:
        check_compatible(config, dataset)
    assert "train_on" in str(info.value)
    with pytest.raises(ConfigError, match="train.early_stopping"):
        run_experiment(config, tmp_path / "runs")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_check_compatible_refuses_early_stopping_without_a_val_split() -> None:
    config = _es_config(split=[0.75, 0.0, 0.25])
    dataset = load_dataset(config.data, config.seed)
    assert len(dataset.y_val) == 0
    with pytest.raises(ConfigError, match="train.early_stopping") as info:
        check_compatible(config, dataset)
    assert "validation" in str(info.value)
    # the same data without early stopping is fine, and so is early stopping with a val split
    check_compatible(make_config("blobs400", 0, data={"split": [0.75, 0.0, 0.25]}), dataset)
    ok = _es_config()
    check_compatible(ok, load_dataset(ok.data, ok.seed))
