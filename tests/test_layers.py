"""The layer interface: layers as a list over one flat theta, the list form of model.layers,
gradient checks of every layer, and the review's bugs that live in the network and its spec."""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path
from typing import get_type_hints

import numpy as np
import pytest
import yaml
from helpers import SMALL_CONFIG, invoke, numeric_grad

from scratchnn_cli.assembly import network_for_dataset, training_set
from scratchnn_cli.config import validate_config
from scratchnn_cli.config.schema import LAYER_SPECS
from scratchnn_cli.data import load_dataset
from scratchnn_cli.errors import ConfigError
from scratchnn_cli.experiment import run_experiment
from scratchnn_cli.nn import layers
from scratchnn_cli.nn.layers import Dense, Dropout, Flatten, LeakyReLU, ReLU, Sigmoid, Tanh
from scratchnn_cli.nn.losses import SoftmaxCrossEntropy
from scratchnn_cli.nn.network import Network
from scratchnn_cli.nn.optim.optimizers import Adam, RMSprop
from scratchnn_cli.streams import training_streams
from scratchnn_cli.training import Hooks, train

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "legacy_runs"


def config_of(model: dict, **train_keys: object) -> object:
    raw = {
        "name": "t",
        "seed": 3,
        "data": {"dataset": "blobs400"},
        "model": model,
        "train": {"lr": 0.05, "eps": 0, "max_epochs": 6, **train_keys},
    }
    return validate_config(raw, "spec.yaml")


def fit(config: object) -> tuple[Network, list[float]]:
    dataset = load_dataset(config.data, config.seed, config.model.dtype)
    streams = training_streams(config.seed)
    net = network_for_dataset(config, dataset, streams.init, streams.dropout)
    X, y = training_set(config, dataset)
    result = train(
        net, X, y, dataset.n_classes, config.train, streams.sampling, dataset.split("val")
    )
    return net, [r.cost for r in result.history]


# --------------------------------------------------------------------------- the list form


def test_list_form_is_the_short_form_bit_for_bit() -> None:
    short = config_of(
        {"struct": [6, 4], "activation": "tanh", "dropout": 0.2}, batch_size=8, optimizer="adam"
    )
    long = config_of(
        {
            "layers": [
                {"type": "dense", "units": 6},
                "tanh",
                {"type": "dropout", "rate": 0.2},
                {"type": "dense", "units": 4},
                {"type": "tanh"},
                {"type": "dropout", "rate": 0.2},
            ]
        },
        batch_size=8,
        optimizer="adam",
    )
    (net_a, costs_a), (net_b, costs_b) = fit(short), fit(long)
    assert costs_a == costs_b and len(costs_a) == 6
    np.testing.assert_array_equal(net_a.theta, net_b.theta)
    assert [x.kind for x in net_b.layers] == [
        "dense", "tanh", "dropout", "dense", "tanh", "dropout", "dense",
    ]  # fmt: skip


def test_per_layer_activations_learn() -> None:
    config = config_of(
        {
            "layers": [
                {"type": "dense", "units": 8},
                "relu",
                {"type": "dense", "units": 6},
                {"type": "leaky_relu", "alpha": 0.2},
                {"type": "dense", "units": 4},
                "sigmoid",
            ],
            "init": "he",
        },
        batch_size=16,
        optimizer="adam",
        lr=0.01,
        max_epochs=40,
    )
    net, costs = fit(config)
    assert [x.kind for x in net.layers][1:6:2] == ["relu", "leaky_relu", "sigmoid"]
    assert net.layers[3].alpha == 0.2
    assert costs[-1] < 0.5 * costs[0]


def test_resolved_config_keeps_the_form_it_was_given(tmp_path: Path) -> None:
    layers = [{"type": "dense", "units": 3}, "relu"]
    config = config_of({"layers": layers})
    written = config.to_dict()["model"]
    assert written["layers"] == [{"type": "dense", "units": 3}, {"type": "relu"}]
    assert not {"struct", "activation", "dropout"} & set(written)
    assert "layers" not in config_of({"struct": [3]}).to_dict()["model"]
    # and the written form validates again into the same network
    again = validate_config({**config.to_dict()}, "again.yaml")
    assert again.model.layer_specs() == config.model.layer_specs()


@pytest.mark.parametrize(
    ("model", "pattern"),
    [
        (
            {"layers": [{"type": "dense", "units": 3}], "struct": [3]},
            r"model: .*model\.layers and model\.struct both describe the hidden layers",
        ),
        (
            {"layers": [{"type": "rellu"}]},
            r"model\.layers\.0\.type: unknown type 'rellu' \(did you mean 'relu'\?\)",
        ),
        ({"layers": [{"type": "dense"}]}, r"model\.layers\.0\.units: required key is missing"),
        (
            {"layers": [{"type": "dropout", "rate": 0.1, "units": 3}]},
            r"model\.layers\.0\.units: dropout does not take units \(it takes rate\)",
        ),
        ({"layers": [{"type": "dropout", "rate": 1.0}]}, r"model\.layers\.0\.rate: "),
        (
            {"layers": [{"type": "dense", "units": True}]},
            r"model\.layers\.0\.units: .*expected a number, got the boolean true",
        ),
        ({"layers": [{"units": 3}]}, r"model\.layers\.0\.type: required key is missing$"),
        (
            {"layers": [3]},
            r"model\.layers\.0: must be a layer's type \(relu\) or a mapping of its settings",
        ),
    ],
)
def test_bad_layer_lists_are_one_line(model: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=r"^spec\.yaml: " + pattern) as info:
        config_of(model)
    assert "\n" not in str(info.value)


def test_each_layer_spec_is_its_constructor() -> None:
    """model.layers takes, for each layer of nn/layers/, its type and its constructor's keyword
    arguments (the network's rng aside), with their defaults: declared once, in the layer."""
    assert list(LAYER_SPECS) == list(layers.LAYERS)
    for kind, layer in layers.LAYERS.items():
        params = inspect.signature(layer.__init__).parameters
        settings = {n: p.default for n, p in params.items() if n not in ("self", "rng")}
        fields = LAYER_SPECS[kind].model_fields
        assert list(fields) == ["type", *settings], kind
        for name, default in settings.items():
            if default is inspect.Parameter.empty:
                assert fields[name].is_required(), (kind, name)
            else:
                assert fields[name].default == default, (kind, name)


#: values to try, by the type the constructor declares (an int setting is also tried with a
#: fraction, which both refuse; 1e6 is left out: the spec reads it as the whole number it is)
PROBES = {int: [-1, 0, 1, 2, 7, 2.5], float: [-1.0, 0.0, 1e-9, 0.5, 0.99, 1.0, 2.0, 1e6]}
REQUIRED = {"dense": {"units": 2}, "conv2d": {"filters": 2}, "dropout": {"rate": 0.5}}


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        (kind, name)
        for kind, spec in LAYER_SPECS.items()
        for name in spec.model_fields
        if name not in ("type", "padding")
    ],
)
def test_a_layer_spec_accepts_what_its_layer_accepts(kind: str, name: str) -> None:
    """The bounds stated in the schema (LAYER_BOUNDS) are the layer's own: a setting is
    accepted in model.layers exactly when the layer's constructor accepts it, and refused
    with its key path."""
    declared = get_type_hints(layers.LAYERS[kind].__init__)[name]
    for value in PROBES[float if declared is float else int]:
        entry = {"type": kind, **REQUIRED.get(kind, {}), name: value}
        try:
            layers.LAYERS[kind](**{k: v for k, v in entry.items() if k != "type"})
            layer_accepts = True
        except (ValueError, TypeError):  # conv's pair() says TypeError for 2.5
            layer_accepts = False
        try:
            config_of({"layers": [entry]})
            spec_accepts = True
        except ConfigError as exc:
            assert f"model.layers.0.{name}: " in str(exc), str(exc)
            spec_accepts = False
        assert spec_accepts == layer_accepts, (kind, name, value)


def test_a_dense_layer_on_image_shaped_input_needs_flatten() -> None:
    net = Network.from_layers(
        [Flatten(), Dense(5), Tanh()], (2, 3, 4), 3, "softmax", rng=np.random.default_rng(0)
    )
    assert [r.output_shape for r in net.summary()] == [(24,), (5,), (5,), (3,)]
    assert [r.params for r in net.summary()] == [0, 24 * 5 + 5, 0, 5 * 3 + 3]
    with pytest.raises(ValueError, match=r"dense: needs flat input .* put a flatten layer"):
        Network.from_layers([Dense(5)], (2, 3, 4), 3, "softmax", rng=np.random.default_rng(0))


# --------------------------------------------------------------------------- theta and binding


def test_every_parameter_is_a_view_into_theta() -> None:
    net = Network.from_struct(3, [4, 2], 1, "tanh", rng=np.random.default_rng(0))
    assert net.theta.size == (3 * 4 + 4) + (4 * 2 + 2) + (2 * 1 + 1)
    for p, g in zip(net.params(), net.grads(), strict=True):
        assert np.shares_memory(p, net.theta) and np.shares_memory(g, net.dtheta)
    net.theta[:] = 7.0
    assert all((p == 7.0).all() for p in net.params())


def test_a_layer_belongs_to_one_network() -> None:
    layers = [Dense(4), Sigmoid()]
    first = Network(layers + [Dense(1)], SoftmaxCrossEntropy(), 3)
    first.theta[:] = 1.0
    with pytest.raises(ValueError, match=r"already belongs to a network"):
        Network(layers + [Dense(1)], SoftmaxCrossEntropy(), 3)
    # the first network's layers still use its theta (nothing was rebound)
    assert np.shares_memory(layers[0].W, first.theta) and (layers[0].W == 1.0).all()


def test_forward_casts_input_to_the_network_dtype() -> None:
    net = Network.from_struct(3, [4], 1, rng=np.random.default_rng(0), dtype=np.float32)
    X = np.random.default_rng(1).normal(size=(5, 3))  # float64
    assert net.forward(X).dtype == np.float32
    assert net.predict_proba(X).dtype == np.float32


def test_float32_models_hold_float32_data() -> None:
    config = validate_config(
        yaml.safe_load(SMALL_CONFIG.format(name="f32", max_iterations=10)), "spec.yaml"
    )
    config.model.dtype = "float32"
    dataset = load_dataset(config.data, config.seed, config.model.dtype)
    assert {a.dtype for a in (dataset.X_train, dataset.X_val, dataset.X_test)} == {
        np.dtype(np.float32)
    }
    float64 = load_dataset(config.data, config.seed)
    np.testing.assert_array_equal(dataset.X_train, float64.X_train.astype(np.float32))


# --------------------------------------------------------------------------- gradient checks


def layer_gradients_match(layers: list, input_shape: tuple, seed: int = 0) -> None:
    """Backprop vs central differences for every parameter AND the input, through ``layers``
    and a softmax output (float64, a fixed dropout mask)."""
    rng = np.random.default_rng(seed)
    net = Network.from_layers(layers, input_shape, 3, "softmax", rng=rng, sigma=0.7)
    X = rng.normal(size=(5, *input_shape))
    Y = net.loss.targets(np.array([0, 1, 2, 0, 1]), 3, np.float64)

    def J() -> float:
        net.rng = np.random.default_rng(9)  # the same dropout masks every time
        return net.loss.cost(net.forward(X, training=True), Y)

    J()
    dA = net.loss.dZ(net.layers[-1].forward(net.layers[-1].A_prev), Y)
    for layer in reversed(net.layers):
        dA = layer.backward(dA)
    for P, G in zip(net.params(), [g.copy() for g in net.grads()], strict=True):
        np.testing.assert_allclose(G, numeric_grad(J, P), rtol=1e-6, atol=1e-9)
    assert dA.shape == X.shape
    np.testing.assert_allclose(dA, numeric_grad(J, X), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    "make",
    [
        lambda: [Dense(4), Sigmoid()],
        lambda: [Dense(4), Tanh()],
        lambda: [Dense(4), ReLU()],
        lambda: [Dense(4), LeakyReLU(0.3)],
        lambda: [Dense(4), Tanh(), Dropout(0.4)],
    ],
    ids=["sigmoid", "tanh", "relu", "leaky_relu", "dropout"],
)
def test_each_layer_backward_matches_finite_differences(make) -> None:
    layer_gradients_match(make(), (3,))


def test_flatten_backward_matches_finite_differences() -> None:
    layer_gradients_match([Flatten(), Dense(4), Tanh()], (2, 2, 3))


def test_leaky_relu_slope_is_used_on_both_passes() -> None:
    g = LeakyReLU(0.25)
    Z = np.array([[-2.0, 3.0]])
    np.testing.assert_array_equal(g.forward(Z), [[-0.5, 3.0]])
    np.testing.assert_array_equal(g.backward(np.ones((1, 2))), [[0.25, 1.0]])


# --------------------------------------------------------------------------- the review's bugs


@pytest.mark.parametrize("rule", [Adam, RMSprop])
def test_optimizers_refuse_epsilon_zero(rule: type) -> None:
    params = [np.zeros(3)]
    with pytest.raises(ValueError, match=r"^epsilon must be a positive number, got 0\.0$"):
        rule(params, 0.1, epsilon=0.0)
    # with the smallest allowed epsilon an always-zero gradient stays a zero update
    opt = rule(params, 0.1, epsilon=1e-300)
    for _ in range(3):
        opt.step([np.zeros(3)])
    np.testing.assert_array_equal(params[0], np.zeros(3))


@pytest.mark.parametrize(
    "override",
    [
        "train.lr=true",
        "model.sigma=false",
        "train.max_iterations=true",
        "model.struct=[true]",
        "train.l2=true",
        "train.optimizer={name: adam, beta1: true}",
        "data.split=[true, 0, 0]",
    ],
)
def test_a_bool_is_not_a_number_in_the_spec(tmp_path: Path, override: str) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SMALL_CONFIG.format(name="b", max_iterations=10), encoding="utf-8")
    result = invoke("train", spec, "--set", override, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert "expected a number, got the boolean" in result.output
    assert not (tmp_path / "runs").exists()


def test_a_bool_is_not_a_number_in_the_api() -> None:
    with pytest.raises(ValueError, match=r"^lr must be a number, got True$"):
        Adam([np.zeros(2)], True)
    with pytest.raises(ValueError, match=r"^beta must be a number, got False$"):
        RMSprop([np.zeros(2)], 0.1, beta=False)


def test_a_network_too_big_for_memory_is_refused_with_the_figure(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SMALL_CONFIG.format(name="huge", max_iterations=10), encoding="utf-8")
    result = invoke(
        "train", spec, "--set", "model.struct=[100000, 100000]", "--runs-dir", tmp_path / "runs"
    )
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    # 1e10 weights of 8 bytes, times 6 (theta, dtheta, copies): ~447 GiB
    assert "need ~447 GiB to train, this machine has" in result.output
    assert not (tmp_path / "runs").exists()


def test_finite_but_exploding_weights_are_divergence(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: explode\ndata: {dataset: blobs400}\n"
        "model: {struct: [50, 50], activation: relu, sigma: 30}\ntrain: {lr: 1000}\n",
        encoding="utf-8",
    )
    result = invoke("train", spec, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 3, result.output
    (run,) = (tmp_path / "runs").iterdir()
    info = yaml.safe_load((run / "run.json").read_text())
    assert info["status"] == "diverged"
    assert info["stop"]["stopped_by"] == "diverged"
    assert "(limit 1.34e+154)" in info["stop"]["reason"]
    assert "try a lower train.lr" in info["stop"]["reason"]


def test_resume_with_restore_best_false_keeps_the_last_weights() -> None:
    """A checkpoint taken while early stopping kept best weights, resumed with
    restore_best=false: training ends with its own last weights, not the checkpoint's best."""
    es = {"monitor": "val_cost", "patience": 1000, "restore_best": True}
    config = config_of({"struct": [8], "sigma": 1.0}, lr=3.0, max_epochs=30, early_stopping=es)
    dataset = load_dataset(config.data, config.seed)
    X, y = training_set(config, dataset)

    def run(cfg, resume_from=None):
        streams = training_streams(config.seed)
        net = network_for_dataset(config, dataset, streams.init, streams.dropout)
        snaps: list = []
        weights: list = []
        hooks = Hooks(lambda r: weights.append(net.theta.copy()), snaps.append, 1)
        result = train(
            net, X, y, 2, cfg, streams.sampling, dataset.split("val"), hooks, resume_from
        )
        return net, result, snaps, weights

    _, whole, snaps, _ = run(config.train)
    assert "restored the best weights" in whole.stop_reason  # the best epoch is not the last
    at_10 = next(s for s in snaps if s.epochs == 10 and s.best_params)
    changed = config.train.model_dump() | {"early_stopping": es | {"restore_best": False}}
    no_restore = type(config.train).model_validate(changed)
    net, resumed, _, weights = run(no_restore, at_10)
    assert resumed.epochs == 30 and "restored" not in resumed.stop_reason
    np.testing.assert_array_equal(net.theta, weights[-1])


# --------------------------------------------------------------------------- unchanged numbers


@pytest.mark.parametrize(
    ("spec", "folder"),
    [
        ("small.yaml", "legacy_small"),
        ("gold_dropout.yaml", "gold_dropout_adam"),
        ("gold_digits32.yaml", "gold_digits_f32"),
    ],
)
def test_runs_of_the_previous_version_are_reproduced_bit_for_bit(
    tmp_path: Path, spec: str, folder: str
) -> None:
    """tests/fixtures/legacy_runs/ was written by version 0.1.0, before the layer interface:
    the same specs give the same weights and the same history, to the last bit, with the NumPy
    engine (the compiled one rounds in another order: tests/test_engines.py)."""
    shutil.copy(FIXTURES / spec, tmp_path / spec)
    raw = yaml.safe_load((tmp_path / spec).read_text())
    raw.setdefault("train", {})["engine"] = "numpy"
    outcome = run_experiment(validate_config(raw, spec), tmp_path / "runs")
    with (
        np.load(FIXTURES / folder / "model.npz") as old,
        np.load(outcome.run_dir / "model.npz") as new,
    ):
        assert sorted(old.files) == sorted(new.files)
        for key in old.files:
            assert old[key].dtype == new[key].dtype
            np.testing.assert_array_equal(old[key], new[key])

    def history(path: Path) -> list[list[str]]:  # every column but the wall-clock seconds,
        # to the 10 digits 0.1.0 wrote (history.csv now holds each float to its last bit)
        rows = path.read_text().splitlines()
        return [rows[0].split(",")] + [
            [cell and f"{float(cell):.10g}" for cell in row.split(",")[:-1]] for row in rows[1:]
        ]

    assert history(outcome.run_dir / "history.csv") == history(FIXTURES / folder / "history.csv")
