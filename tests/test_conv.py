"""nn/layers/conv.py and the CNN built from it: conv2d against naive loop implementations written
here, finite-difference gradients of its parameters and of its input (flatten's too, and whole
CNNs'), the shape validation, an end to end run of configs/digits_cnn.yaml (interrupted and
resumed bit for bit) and float32. Pooling, batchnorm and dropout have their own files.

Shapes are channels last (NHWC): images (m, H, W, C), conv kernels (kh, kw, C, F).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers import (
    FORWARD_TOL,
    GRAD_TOL,
    ROOT,
    assert_one_line_error,
    built,
    check_layer_gradients,
    digits_spec,
    in_network,
    invoke,
    model_arrays,
    numeric_grad,
    one_line_value_error,
    only_run,
    read_json,
    run_folders,
)

import scratchnn_cli.assembly as assembly
import scratchnn_cli.experiment as experiment
from scratchnn_cli.config import validate_config
from scratchnn_cli.data import load_dataset
from scratchnn_cli.errors import ConfigError
from scratchnn_cli.nn.layers import (
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool,
    MaxPool2D,
    ReLU,
    Tanh,
)
from scratchnn_cli.nn.layers.channels import column_sum, per_channel
from scratchnn_cli.nn.network import Network

DIGITS_CNN = ROOT / "configs" / "digits_cnn.yaml"


# --------------------------------------------------------------------------- naive references


def same_pads(size: int, k: int, s: int) -> tuple[int, int, int]:
    """TensorFlow's "same": (output size, padding before, padding after)."""
    out = math.ceil(size / s)
    total = max((out - 1) * s + k - size, 0)
    return out, total // 2, total - total // 2


def naive_conv2d(
    X: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int, padding: str
) -> np.ndarray:
    m, H, Wd, C = X.shape
    kh, kw, _, F = W.shape
    s = stride
    if padding == "same":
        Ho, top, bottom = same_pads(H, kh, s)
        Wo, left, right = same_pads(Wd, kw, s)
    else:
        Ho, Wo, top, bottom, left, right = (H - kh) // s + 1, (Wd - kw) // s + 1, 0, 0, 0, 0
    Xp = np.zeros((m, H + top + bottom, Wd + left + right, C))
    for n in range(m):
        for y in range(H):
            for x in range(Wd):
                for c in range(C):
                    Xp[n, top + y, left + x, c] = X[n, y, x, c]
    out = np.zeros((m, Ho, Wo, F))
    for n in range(m):
        for y in range(Ho):
            for x in range(Wo):
                for f in range(F):
                    total = b[f]
                    for i in range(kh):
                        for j in range(kw):
                            for c in range(C):
                                total += Xp[n, s * y + i, s * x + j, c] * W[i, j, c, f]
                    out[n, y, x, f] = total
    return out


# --------------------------------------------------------------------------- forward


KERNELS = [(1, 1), (3, 3), (2, 3), (5, 5)]
STRIDES = [1, 2, 3]


def conv_cases() -> list[Any]:
    """ "same" on a 5x7 input for every kernel and stride; "valid" on 5x7 where the windows
    tile it, and on an input sized (kh + 2s) x (kw + 3s) for every kernel and stride."""
    cases = []
    for k in KERNELS:
        for s in STRIDES:
            cases.append(pytest.param(k, s, "same", (5, 7), id=f"same-{k[0]}x{k[1]}-s{s}-5x7"))
            if (5 - k[0]) % s == 0 and (7 - k[1]) % s == 0:
                cases.append(
                    pytest.param(k, s, "valid", (5, 7), id=f"valid-{k[0]}x{k[1]}-s{s}-5x7")
                )
            hw = (k[0] + 2 * s, k[1] + 3 * s)
            cases.append(
                pytest.param(k, s, "valid", hw, id=f"valid-{k[0]}x{k[1]}-s{s}-{hw[0]}x{hw[1]}")
            )
    return cases


@pytest.mark.parametrize(("kernel", "stride", "padding", "hw"), conv_cases())
def test_conv2d_forward_equals_the_naive_loops(
    kernel: tuple[int, int], stride: int, padding: str, hw: tuple[int, int]
) -> None:
    H, W = hw
    conv = Conv2D(4, kernel=kernel, stride=stride, padding=padding)
    _, net = built(conv, (H, W, 3))
    X = np.random.default_rng(7).normal(size=(2, H, W, 3))
    A = conv.forward(X)
    expected = naive_conv2d(X, conv.params["W"], conv.params["b"], stride, padding)
    if padding == "same":
        assert A.shape == (2, math.ceil(H / stride), math.ceil(W / stride), 4)
    assert conv.params["W"].shape == (*kernel, 3, 4)
    assert A.shape == expected.shape
    np.testing.assert_allclose(A, expected, **FORWARD_TOL)


@pytest.mark.parametrize(
    ("kernel", "stride", "hw", "pads"),
    [
        ((2, 3), 1, (5, 7), ((0, 1), (1, 1))),
        ((3, 3), 2, (6, 8), ((0, 1), (0, 1))),
        ((5, 5), 3, (5, 7), ((1, 2), (2, 2))),
        ((1, 1), 2, (6, 8), ((0, 0), (0, 0))),
        ((2, 2), 3, (6, 6), ((0, 0), (0, 0))),
    ],
    ids=["2x3-s1-odd", "3x3-s2-even-input", "5x5-s3", "1x1-s2-even-input", "2x2-s3"],
)
def test_same_padding_puts_the_smaller_half_on_top_and_left(
    kernel: tuple[int, int], stride: int, hw: tuple[int, int], pads: tuple
) -> None:
    """TensorFlow's rule: output ceil(H / s); total padding max((Ho - 1) s + kh - H, 0), its
    smaller half before. A kernel of distinct weights shows which pixels each output sees."""
    H, W = hw
    assert (same_pads(H, kernel[0], stride)[1:], same_pads(W, kernel[1], stride)[1:]) == pads
    conv = Conv2D(1, kernel=kernel, stride=stride, padding="same")
    _, net = built(conv, (H, W, 1))
    conv.params["W"][...] = np.arange(1.0, 1 + math.prod(kernel)).reshape(*kernel, 1, 1)
    conv.params["b"][...] = 0.0
    X = np.random.default_rng(3).normal(size=(1, H, W, 1))
    A = conv.forward(X)
    assert A.shape == (1, math.ceil(H / stride), math.ceil(W / stride), 1)
    np.testing.assert_allclose(
        A, naive_conv2d(X, conv.params["W"], conv.params["b"], stride, "same"), **FORWARD_TOL
    )


# --------------------------------------------------------------------------- gradients


GRAD_CONV_CASES = [
    pytest.param((3, 3), 1, "same", (5, 7), id="3x3-s1-same"),
    pytest.param((3, 3), 1, "valid", (5, 7), id="3x3-s1-valid"),
    pytest.param((3, 3), 2, "same", (5, 7), id="3x3-s2-same"),
    pytest.param((3, 3), 2, "valid", (5, 7), id="3x3-s2-valid"),
    pytest.param((2, 3), 2, "same", (6, 8), id="2x3-s2-same-odd-padding"),
    pytest.param((2, 3), 3, "valid", (8, 9), id="2x3-s3-valid"),
    pytest.param((5, 5), 3, "same", (5, 7), id="5x5-s3-same"),
    pytest.param((1, 1), 2, "valid", (5, 7), id="1x1-s2-valid"),
]


@pytest.mark.parametrize(("kernel", "stride", "padding", "hw"), GRAD_CONV_CASES)
def test_conv2d_gradients_match_central_differences(
    kernel: tuple[int, int], stride: int, padding: str, hw: tuple[int, int]
) -> None:
    conv, _ = built(Conv2D(4, kernel=kernel, stride=stride, padding=padding), (*hw, 3))
    X = np.random.default_rng(11).normal(size=(2, *hw, 3))
    check_layer_gradients(conv, X, training=True)


@pytest.mark.parametrize(("kernel", "stride", "padding", "hw"), GRAD_CONV_CASES)
def test_conv2d_on_one_channel_matches_the_naive_loops_and_central_differences(
    kernel: tuple[int, int], stride: int, padding: str, hw: tuple[int, int]
) -> None:
    """One input channel takes im2col's copy-per-kernel-offset path (more channels: one copy
    of the sliding-window view); both give the naive numbers and the right gradients."""
    conv, _ = built(Conv2D(4, kernel=kernel, stride=stride, padding=padding), (*hw, 1))
    X = np.random.default_rng(23).normal(size=(2, *hw, 1))
    np.testing.assert_allclose(
        conv.forward(X),
        naive_conv2d(X, conv.params["W"], conv.params["b"], stride, padding),
        **FORWARD_TOL,
    )
    check_layer_gradients(conv, X, training=True)


def test_flatten_input_gradient_matches_central_differences() -> None:
    flat = in_network([Flatten()], (3, 5, 2)).layers[0]
    assert flat.output_shape == (30,)
    check_layer_gradients(flat, np.random.default_rng(14).normal(size=(2, 3, 5, 2)), True)


def relu_inputs(net: Network, X: np.ndarray, training: bool) -> list[np.ndarray]:
    """What each ReLU layer of ``net`` receives for ``X`` (to keep the check off the kinks)."""
    seen, A = [], np.asarray(X, dtype=net.dtype)
    for layer in net.layers:
        if isinstance(layer, ReLU):
            seen.append(A.copy())
        A = layer.forward(A, training)
    return seen


def check_network_gradients(net: Network, X: np.ndarray, y: np.ndarray, seed: int) -> None:
    """Every parameter of a softmax network against central differences of its cost, in
    training mode, dropout masks repeated by resetting the network's generator."""
    Y = net.loss.targets(y, 3, np.float64)

    def reset() -> None:
        net.rng = np.random.default_rng(seed)

    reset()
    for A in relu_inputs(net, X, training=True):
        assert np.abs(A).min() > 1e-4  # well away from ReLU's kink at 0

    def J() -> float:
        reset()
        return net.loss.cost(net.forward(X, training=True), Y)

    reset()
    Z = net.forward(X, training=True)
    net.backward(net.loss.dZ(Z, Y))
    analytic = [g.copy() for g in net.grads()]
    assert len(analytic) == len(net.params())
    for layer in net.layers:
        for name, P in layer.params.items():
            i = next(k for k, p in enumerate(net.params()) if p is P)
            np.testing.assert_allclose(
                analytic[i], numeric_grad(J, P), **GRAD_TOL, err_msg=f"{layer.describe()} {name}"
            )


def test_cnn_network_gradients_match_central_differences() -> None:
    """conv (same, non-square kernel) -> batchnorm -> relu -> overlapping max-pool -> avg-pool
    -> dropout -> flatten -> softmax; every parameter checked."""
    layers = [
        Conv2D(3, kernel=(2, 3), padding="same"),
        BatchNorm(),
        ReLU(),
        MaxPool2D(2, stride=1),
        AvgPool2D(2),
        Dropout(0.3),
        Flatten(),
    ]
    net = in_network(layers, (5, 7, 2), seed=30)
    assert net.layers[4].output_shape == (2, 3, 3)
    X = np.random.default_rng(31).normal(size=(4, 5, 7, 2))
    check_network_gradients(net, X, np.array([0, 1, 2, 1]), seed=32)


def test_strided_cnn_network_gradients_match_central_differences() -> None:
    """conv (stride 2, same, odd padding) -> tanh -> conv 1x1 -> global average -> batchnorm on
    dense input -> softmax."""
    layers = [
        Conv2D(4, kernel=3, stride=2, padding="same"),
        Tanh(),
        Conv2D(3, kernel=1),
        GlobalAvgPool(),
        BatchNorm(),
    ]
    net = in_network(layers, (6, 7, 3), seed=40)
    assert net.layers[0].output_shape == (3, 4, 4)
    X = np.random.default_rng(41).normal(size=(5, 6, 7, 3))
    check_network_gradients(net, X, np.array([0, 1, 2, 2, 0]), seed=42)


# --------------------------------------------------------------------------- validation


def test_a_kernel_larger_than_its_input_is_refused() -> None:
    one_line_value_error(
        [Conv2D(2, kernel=5), Flatten()],
        (4, 6, 1),
        r"^conv2d: the height of the window \(5\) is larger than its input \(4\)",
    )
    one_line_value_error(
        [Conv2D(2, kernel=(3, 7)), Flatten()],
        (4, 6, 1),
        r"^conv2d: the width of the window \(7\) is larger than its input \(6\)",
    )
    one_line_value_error(
        [MaxPool2D(3), Flatten()],
        (2, 6, 1),
        r"^maxpool2d: the height of the window \(3\) is larger than its input \(2\)",
    )


def test_a_dense_layer_on_images_needs_a_flatten() -> None:
    one_line_value_error(
        [Conv2D(2, kernel=3), Dense(4)],
        (5, 5, 1),
        r"^dense: needs flat input \(one row per sample\), got samples of shape \(3, 3, 2\); "
        "put a flatten layer before it$",
    )


def test_conv_and_pooling_need_images() -> None:
    for layer in (Conv2D(2), MaxPool2D(2), AvgPool2D(2), GlobalAvgPool()):
        one_line_value_error(
            [layer],
            (64,),
            rf"^{layer.kind}: needs images \(height, width, channels\), got samples of shape "
            r"\(64,\)",
        )


def test_a_non_flat_last_layer_is_refused_by_the_network() -> None:
    one_line_value_error(
        [Conv2D(2, kernel=3)], (5, 5, 1), r"^dense: needs flat input .* shape \(3, 3, 2\)"
    )


NOT_FLAT = [{"type": "conv2d", "filters": 4, "kernel": 3}, "relu"]


def test_a_non_flat_last_layer_is_a_config_error(digits_dataset: Any) -> None:
    """The same line whether the network is built or only sized (one path: network_for)."""
    config = validate_config(digits_spec(NOT_FLAT), "spec.yaml")
    for refuse in (assembly.network_for_dataset, assembly.check_memory):
        with pytest.raises(
            ConfigError,
            match=r"^model\.layers: the last layer gives \(6, 6, 4\) per sample; the output "
            "layer needs flat input: end with flatten or global_avgpool$",
        ):
            refuse(config, digits_dataset)


def test_image_layer_errors_through_the_experiment(digits_dataset: Any) -> None:
    big = validate_config(
        digits_spec([{"type": "conv2d", "filters": 2, "kernel": 9}, "flatten"]), "s"
    )
    with pytest.raises(
        ConfigError, match=r"^model\.layers: conv2d: the height of the window \(9\) is larger"
    ):
        assembly.check_memory(big, digits_dataset)
    untiled = validate_config(digits_spec([{"type": "maxpool2d", "size": 3}, "flatten"]), "s")
    with pytest.raises(ConfigError, match=r"^model\.layers: maxpool2d: windows of 3 at stride 3"):
        assembly.network_for_dataset(untiled, digits_dataset)
    tabular = validate_config(
        {"data": {"dataset": "blobs400"}, "model": {"layers": ["global_avgpool"]}}, "s"
    )
    blobs = load_dataset(tabular.data, tabular.seed, tabular.model.dtype)
    with pytest.raises(
        ConfigError, match=r"^model\.layers: global_avgpool needs images, but blobs400 is tabular"
    ):
        assembly.network_for_dataset(tabular, blobs)


def test_cli_refuses_a_non_flat_last_layer(tmp_path: Path) -> None:
    path = tmp_path / "cnn.yaml"
    path.write_text(yaml.safe_dump(digits_spec(NOT_FLAT, max_epochs=1)), encoding="utf-8")
    line = assert_one_line_error(invoke("train", path, "--runs-dir", tmp_path / "runs"))
    assert "the output layer needs flat input: end with flatten or global_avgpool" in line
    assert not run_folders(tmp_path / "runs")


# --------------------------------------------------------------------------- end to end

E2E_SET = ["--set", "train.max_epochs=3", "--set", "train.checkpoint_every=1"]
DIGITS_CNN_ARRAYS = [
    "W0",
    "b0",
    "gamma1",
    "beta1",
    "running_mean1",
    "running_var1",
    "W2",
    "b2",
    "W3",
    "b3",
]


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs_dir = tmp_path_factory.mktemp("whole")
    result = invoke("train", DIGITS_CNN, *E2E_SET, "--runs-dir", runs_dir)
    assert result.exit_code == 0, result.output
    return only_run(runs_dir)


@pytest.mark.slow
def test_digits_cnn_trains_and_saves_its_running_statistics(whole_run: Path) -> None:
    info = read_json(whole_run / "run.json")
    assert info["status"] == "completed"
    assert info["stop"]["epochs"] == 3
    arrays = model_arrays(whole_run)
    assert sorted(arrays) == sorted(DIGITS_CNN_ARRAYS)
    assert arrays["W0"].shape == (3, 3, 1, 16) and arrays["W2"].shape == (3, 3, 16, 32)
    assert arrays["running_mean1"].shape == arrays["running_var1"].shape == (16,)
    assert not np.allclose(arrays["running_mean1"], 0.0)
    assert not np.allclose(arrays["running_var1"], 1.0)
    metrics = read_json(whole_run / "metrics.json")
    assert metrics["test"]["n"] == 359
    assert metrics["test"]["accuracy"] > 0.5  # ten classes: chance is 0.1


@pytest.mark.slow
def test_evaluate_gives_the_test_accuracy_of_metrics_json(whole_run: Path) -> None:
    result = invoke("evaluate", whole_run)
    assert result.exit_code == 0, result.output
    accuracy = read_json(whole_run / "metrics.json")["test"]["accuracy"]
    evaluation = read_json(whole_run / "evaluation-test.json")
    assert evaluation["accuracy"] == accuracy
    assert evaluation["held_out"] is True
    assert f"test accuracy: {accuracy:.4f}" in result.output


@pytest.mark.slow
def test_an_interrupted_and_resumed_cnn_run_equals_an_uninterrupted_one(
    whole_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C (KeyboardInterrupt) from the epoch hook at epoch 2, then --resume: model.npz,
    every array of it, batchnorm's running statistics included, equals the whole run's."""
    real_train = experiment.train

    def train(*args: Any, hooks: Any, **kwargs: Any) -> Any:
        on_epoch = hooks.on_epoch

        def stop_at_2(record: Any) -> None:
            on_epoch(record)
            if record.epoch == 2:
                raise KeyboardInterrupt

        hooks.on_epoch = stop_at_2
        return real_train(*args, hooks=hooks, **kwargs)

    runs_dir = tmp_path / "runs"
    with monkeypatch.context() as patch:
        patch.setattr(experiment, "train", train)
        stopped = invoke("train", DIGITS_CNN, *E2E_SET, "--runs-dir", runs_dir)
    assert stopped.exit_code == 130, stopped.output
    run_dir = only_run(runs_dir)
    assert read_json(run_dir / "run.json")["status"] == "interrupted"
    halfway = model_arrays(run_dir)
    assert sorted(halfway) == sorted(DIGITS_CNN_ARRAYS)
    assert not np.array_equal(halfway["running_mean1"], model_arrays(whole_run)["running_mean1"])

    resumed = invoke("train", "--resume", run_dir)
    assert resumed.exit_code == 0, resumed.output
    info = read_json(run_dir / "run.json")
    assert info["status"] == "completed"
    assert [r["from_epoch"] for r in info["resumed"]] == [1]
    got, want = model_arrays(run_dir), model_arrays(whole_run)
    assert sorted(got) == sorted(want) == sorted(DIGITS_CNN_ARRAYS)
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert read_json(run_dir / "metrics.json") == read_json(whole_run / "metrics.json")


# --------------------------------------------------------------------------- float32


def test_a_float32_cnn_stays_float32_forward_and_backward() -> None:
    layers = [
        Conv2D(3, kernel=3, stride=2, padding="same"),
        BatchNorm(),
        ReLU(),
        MaxPool2D(2, stride=1),
        Conv2D(4, kernel=(2, 3)),
        Tanh(),
        Dropout(0.2),
        AvgPool2D(1),
        GlobalAvgPool(),
    ]
    net = in_network(layers, (7, 9, 2), seed=70, dtype=np.float32)
    assert net.dtype == np.float32
    X = np.random.default_rng(71).normal(size=(5, 7, 9, 2)).astype(np.float32)
    Y = net.loss.targets(np.array([0, 1, 2, 0, 1]), 3, np.float32)

    A = X
    for layer in net.layers:
        A = layer.forward(A, training=True)
        assert A.dtype == np.float32, layer.describe()
    assert A.shape == (5, 3)
    dA = net.loss.dZ(A, Y)
    assert dA.dtype == np.float32
    for layer in reversed(net.layers):
        dA = layer.backward(dA)
        assert dA.dtype == np.float32, layer.describe()
    assert dA.shape == X.shape
    grads = net.grads()
    assert len(grads) == 8  # conv W b, gamma beta, conv W b, dense W b
    for g in grads:
        assert g.dtype == np.float32
    assert all(np.isfinite(g).all() and np.any(g != 0) for g in grads)
    for array in net.state().values():
        assert array.dtype == np.float32

    # the network's own passes (float64 input is cast), training and evaluation
    Z = net.forward(X.astype(np.float64), training=True)
    assert Z.dtype == np.float32
    net.backward(net.loss.dZ(Z, Y))
    assert all(g.dtype == np.float32 for g in net.grads())
    assert net.forward(X, training=False).dtype == np.float32
    assert net.predict_proba(X).dtype == np.float32


def test_the_channel_helpers_sum_columns_and_repeat_channel_vectors() -> None:
    """column_sum (ones @ X) is X.sum(axis=0); in float32 it stays float32 and within float32
    rounding of the exact sum; per_channel(v, rows) puts v[c] at every position's channel c."""
    rng = np.random.default_rng(80)
    X = rng.normal(1.0, 2.0, size=(1000, 5))
    np.testing.assert_allclose(column_sum(X), X.sum(axis=0), rtol=1e-12)
    X32 = X.astype(np.float32)
    got = column_sum(X32)
    assert got.dtype == np.float32
    exact = X32.astype(np.float64).sum(axis=0)
    assert np.all(np.abs(got - exact) <= 1000 * 2.0**-24 * np.abs(X32).sum(axis=0))
    np.testing.assert_array_equal(column_sum(np.zeros((0, 3))), np.zeros(3))

    images = rng.normal(size=(2, 3, 4, 5))
    rows = images.reshape(2, -1)
    v = np.arange(5.0)
    np.testing.assert_array_equal((rows - per_channel(v, rows)).reshape(images.shape), images - v)


def test_float32_stays_float32_through_the_fast_paths() -> None:
    """One-channel conv (per-offset im2col), batchnorm on image rows and max-pool windows side
    by side (stride = size, the (m, Ho, k, Wo, k, C) view), forward and backward."""
    layers = [Conv2D(4, kernel=3, padding="same"), BatchNorm(), ReLU(), MaxPool2D(2), Flatten()]
    net = in_network(layers, (6, 8, 1), seed=90, dtype=np.float32)
    X = np.random.default_rng(91).normal(size=(3, 6, 8, 1)).astype(np.float32)
    A = X
    for layer in net.layers:
        A = layer.forward(A, training=True)
        assert A.dtype == np.float32, layer.describe()
    dA = np.random.default_rng(92).normal(size=A.shape).astype(np.float32)
    for layer in reversed(net.layers):
        dA = layer.backward(dA, need_dA_prev=True)
        assert dA.dtype == np.float32, layer.describe()
    assert dA.shape == X.shape
    assert all(g.dtype == np.float32 for g in net.grads())
