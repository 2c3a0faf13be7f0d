"""Tests for scratchnn_cli.nn.optim.optimizers: hand-computed updates, agreement with scikit-learn's
optimizers, dtype, checkpoint round trips, subnormal flushing and convergence on a quadratic; and
through training: every rule learns, the config's hyper-parameters reach it, float32 stays."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from helpers import (
    LEARNING_RATES,
    OPTIMIZER_NAMES,
    capture_optimizer,
    fit,
    make_config,
    weights_of,
)
from sklearn.neural_network._stochastic_optimizers import AdamOptimizer, SGDOptimizer

from scratchnn_cli.config import validate_config
from scratchnn_cli.nn.optim.optimizers import (
    OPTIMIZERS,
    SGD,
    Adam,
    AdamW,
    Optimizer,
    make_optimizer,
)

STATEFUL = ["momentum", "nesterov", "rmsprop", "adam", "adamw"]
SHAPES = [(3, 4), (4,), (4, 2), (2,)]  # W0, b0, W1, b1 of a 3-4-2 network


def random_arrays(rng: np.random.Generator, dtype: type = np.float64) -> list[np.ndarray]:
    return [rng.normal(size=shape).astype(dtype) for shape in SHAPES]


def moment_arrays(opt: Optimizer) -> list[np.ndarray]:
    """Every state array of ``opt`` (velocities, moments), taken from its state_dict."""
    return [x for x in opt.state_dict().values() if isinstance(x, np.ndarray)]


# --------------------------------------------------------------------------- hand-computed steps
#
# One 2-element parameter theta0 = [1, -2], gradients g1 = [0.5, -1] then g2 = [-0.25, 0.5],
# lr = 0.1. The expected values are worked out by hand, element by element, from the textbook
# rule (plain Python arithmetic, not the classes under test).

THETA0, G1, G2, LR = [1.0, -2.0], [0.5, -1.0], [-0.25, 0.5], 0.1


def two_steps(name: str, **hyper: float) -> tuple[np.ndarray, np.ndarray]:
    """theta after step 1 and after step 2 for the example above."""
    theta = np.array(THETA0)
    opt = make_optimizer(name, [theta], LR, **hyper)
    opt.step([np.array(G1)])
    theta1 = theta.copy()
    opt.step([np.array(G2)])
    return theta1, theta


def test_sgd_by_hand() -> None:
    theta1, theta2 = two_steps("sgd")
    # theta1 = theta0 - 0.1 g1;  theta2 = theta1 - 0.1 g2
    np.testing.assert_allclose(theta1, [1 - 0.05, -2 + 0.1], rtol=1e-15)
    np.testing.assert_allclose(theta2, [0.95 + 0.025, -1.9 - 0.05], rtol=1e-15)


def test_sgd_uses_the_current_lr() -> None:
    """The trainer changes ``lr`` between steps (schedules): the next step must use it."""
    theta = np.array(THETA0)
    opt = SGD([theta], 0.1)  # the trainer's call: SGD(net.params(), lr)
    opt.step([np.array(G1)])
    opt.lr = 0.01
    opt.step([np.array(G2)])
    np.testing.assert_allclose(theta, [0.95 + 0.0025, -1.9 - 0.005], rtol=1e-15)


def test_momentum_by_hand() -> None:
    theta1, theta2 = two_steps("momentum", beta=0.9)
    # element 0: v1 = -0.1*0.5 = -0.05, theta1 = 0.95;
    #            v2 = 0.9*(-0.05) - 0.1*(-0.25) = -0.045 + 0.025 = -0.02, theta2 = 0.93
    # element 1: v1 = -0.1*(-1) = 0.1, theta1 = -1.9;  v2 = 0.09 - 0.05 = 0.04, theta2 = -1.86
    np.testing.assert_allclose(theta1, [0.95, -1.9], rtol=1e-15)
    np.testing.assert_allclose(theta2, [0.93, -1.86], rtol=1e-15)


def test_nesterov_by_hand() -> None:
    theta1, theta2 = two_steps("nesterov", beta=0.9)
    # v as for momentum; theta += 0.9 v - 0.1 g
    # element 0: theta1 = 1 + 0.9*(-0.05) - 0.05 = 0.905;
    #            theta2 = 0.905 + 0.9*(-0.02) + 0.025 = 0.912
    # element 1: theta1 = -2 + 0.9*0.1 + 0.1 = -1.81;  theta2 = -1.81 + 0.9*0.04 - 0.05 = -1.824
    np.testing.assert_allclose(theta1, [0.905, -1.81], rtol=1e-14)
    np.testing.assert_allclose(theta2, [0.912, -1.824], rtol=1e-14)


def test_rmsprop_by_hand() -> None:
    theta1, theta2 = two_steps("rmsprop", beta=0.9, epsilon=1e-8)
    # s1 = 0.1 g1^2 = [0.025, 0.1];  s2 = 0.9 s1 + 0.1 g2^2 = [0.0225 + 0.00625, 0.09 + 0.025]
    t1 = [1 - 0.1 * 0.5 / (math.sqrt(0.025) + 1e-8), -2 - 0.1 * -1.0 / (math.sqrt(0.1) + 1e-8)]
    t2 = [
        t1[0] - 0.1 * -0.25 / (math.sqrt(0.02875) + 1e-8),
        t1[1] - 0.1 * 0.5 / (math.sqrt(0.115) + 1e-8),
    ]
    np.testing.assert_allclose(theta1, t1, rtol=1e-14)
    np.testing.assert_allclose(theta2, t2, rtol=1e-14)


# Adam on the example, by hand (b1 = 0.9, b2 = 0.999, eps = 1e-8):
#   step 1: m = 0.1 g1 = [0.05, -0.1];  v = 0.001 g1^2 = [0.00025, 0.001]
#           m_hat = m / 0.1 = [0.5, -1];  v_hat = v / 0.001 = [0.25, 1]
#   step 2: m = 0.9 m + 0.1 g2 = [0.045 - 0.025, -0.09 + 0.05] = [0.02, -0.04]
#           v = 0.999 v + 0.001 g2^2 = [0.00024975 + 0.0000625, 0.000999 + 0.00025]
#           m_hat = m / (1 - 0.81) = m / 0.19;  v_hat = v / (1 - 0.998001) = v / 0.001999
ADAM_STEP1 = [0.1 * 0.5 / (0.5 + 1e-8), 0.1 * -1.0 / (1.0 + 1e-8)]
ADAM_STEP2 = [
    0.1 * (0.02 / 0.19) / (math.sqrt(0.00031225 / 0.001999) + 1e-8),
    0.1 * (-0.04 / 0.19) / (math.sqrt(0.001249 / 0.001999) + 1e-8),
]


def test_adam_by_hand() -> None:
    theta1, theta2 = two_steps("adam")
    t1 = [THETA0[0] - ADAM_STEP1[0], THETA0[1] - ADAM_STEP1[1]]
    t2 = [t1[0] - ADAM_STEP2[0], t1[1] - ADAM_STEP2[1]]
    np.testing.assert_allclose(theta1, t1, rtol=1e-13)
    np.testing.assert_allclose(theta2, t2, rtol=1e-13)


def test_adamw_by_hand() -> None:
    theta1, theta2 = two_steps("adamw", weight_decay=0.01)
    # theta <- theta - 0.1 * 0.01 theta = 0.999 theta, then the same Adam step as above
    t1 = [0.999 * THETA0[0] - ADAM_STEP1[0], 0.999 * THETA0[1] - ADAM_STEP1[1]]
    t2 = [0.999 * t1[0] - ADAM_STEP2[0], 0.999 * t1[1] - ADAM_STEP2[1]]
    np.testing.assert_allclose(theta1, t1, rtol=1e-13)
    np.testing.assert_allclose(theta2, t2, rtol=1e-13)


# --------------------------------------------------------------------------- scikit-learn


@pytest.mark.parametrize(
    ("name", "hyper", "sk_hyper"),
    [
        ("sgd", {}, {"momentum": 0.0, "nesterov": False}),
        ("momentum", {"beta": 0.8}, {"momentum": 0.8, "nesterov": False}),
        ("nesterov", {"beta": 0.8}, {"momentum": 0.8, "nesterov": True}),
    ],
)
def test_sgd_family_matches_sklearn(name: str, hyper: dict, sk_hyper: dict) -> None:
    rng = np.random.default_rng(0)
    ours = random_arrays(rng)
    theirs = [p.copy() for p in ours]
    opt = make_optimizer(name, ours, 0.05, **hyper)
    sk = SGDOptimizer(theirs, learning_rate_init=0.05, **sk_hyper)
    for _ in range(10):
        grads = random_arrays(rng)
        opt.step(grads)
        sk.update_params(theirs, grads)
    for p, q in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-13, atol=1e-15)


def away_from_zero(rng: np.random.Generator) -> list[np.ndarray]:
    """Gradients with 0.5 <= |g| <= 2, so that sqrt(v) is never tiny next to epsilon."""
    return [rng.choice([-1.0, 1.0], size=s) * rng.uniform(0.5, 2.0, size=s) for s in SHAPES]


@pytest.mark.parametrize("epsilon", [1e-300, 1e-8])
def test_adam_matches_sklearn(epsilon: float) -> None:
    # scikit-learn folds the bias corrections into the step size and adds its epsilon to the
    # UNcorrected sqrt(v):  theta -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps_sk).
    # That is the textbook update with eps = eps_sk / sqrt(1 - b2^t): the two coincide for a
    # constant epsilon only when it is ~0 (1e-300 here: epsilon must be > 0), then to rounding.
    # With the default 1e-8 they differ
    # in each denominator by at most 1e-8 against sqrt(v) >= 0.5 sqrt(1 - b2^t) > 0.015 here, a
    # relative 1e-6 of an update of size ~lr per step: at most ~1e-6 lr per step in theta.
    rng = np.random.default_rng(1)
    ours = random_arrays(rng)
    theirs = [p.copy() for p in ours]
    lr, steps = 0.01, 20
    opt = Adam(ours, lr, beta1=0.9, beta2=0.999, epsilon=epsilon)
    sk = AdamOptimizer(theirs, learning_rate_init=lr, beta_1=0.9, beta_2=0.999, epsilon=epsilon)
    for _ in range(steps):
        grads = away_from_zero(rng)
        opt.step(grads)
        sk.update_params(theirs, grads)
    atol = 1e-15 if epsilon < 1e-100 else 1e-6 * lr * steps
    for p, q in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=atol)


# --------------------------------------------------------------------------- AdamW


def test_adamw_is_adam_plus_decay() -> None:
    rng = np.random.default_rng(2)
    p_w = random_arrays(rng)
    p_a = [p.copy() for p in p_w]
    lr, wd = 0.01, 0.1
    adamw, adam = AdamW(p_w, lr, weight_decay=wd), Adam(p_a, lr)
    for _ in range(10):
        grads = random_arrays(rng)
        adamw.step(grads)
        for p in p_a:
            p -= lr * wd * p
        adam.step(grads)
    for p, q in zip(p_w, p_a, strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-14)


def test_adamw_without_decay_is_adam() -> None:
    rng = np.random.default_rng(3)
    p_w = random_arrays(rng)
    p_a = [p.copy() for p in p_w]
    adamw, adam = AdamW(p_w, 0.01, weight_decay=0.0), Adam(p_a, 0.01)
    for _ in range(10):
        grads = random_arrays(rng)
        adamw.step(grads)
        adam.step(grads)
    for p, q in zip(p_w, p_a, strict=True):
        np.testing.assert_array_equal(p, q)


def test_adamw_decays_every_param_with_zero_gradient() -> None:
    """g = 0: the Adam step is 0 and theta_t = (1 - lr wd)^t theta_0, biases included."""
    rng = np.random.default_rng(4)
    params = random_arrays(rng)
    start = [p.copy() for p in params]
    opt = AdamW(params, 0.1, weight_decay=0.5)
    zeros = [np.zeros_like(p) for p in params]
    for _ in range(5):
        opt.step(zeros)
    for p, p0 in zip(params, start, strict=True):
        np.testing.assert_allclose(p, 0.95**5 * p0, rtol=1e-14)


# --------------------------------------------------------------------------- dtype


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_float32_stays_float32(name: str) -> None:
    rng = np.random.default_rng(5)
    params = random_arrays(rng, np.float32)
    opt = make_optimizer(name, params, 0.01)
    for k in range(5):
        if k == 2:
            opt.lr = np.float64(0.005)  # e.g. from a schedule computed with NumPy
        opt.step(random_arrays(rng, np.float32))
    assert all(p.dtype == np.float32 for p in params)
    assert all(x.dtype == np.float32 for x in moment_arrays(opt))
    assert all(np.isfinite(p).all() for p in params)


# --------------------------------------------------------------------------- state round trip


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_state_dict_round_trip(name: str, tmp_path) -> None:
    rng = np.random.default_rng(6)
    params = random_arrays(rng, np.float32)
    opt = make_optimizer(name, params, 0.01)
    for _ in range(60):  # the next steps cross a subnormal flush (every 65 steps)
        opt.step(random_arrays(rng, np.float32))
    state = opt.state_dict()
    saved = {k: np.copy(v) for k, v in state.items()}
    np.savez(tmp_path / "opt.npz", **state)  # what a checkpoint does

    with np.load(tmp_path / "opt.npz") as npz:
        loaded = dict(npz)
    resumed_params = [p.copy() for p in params]
    resumed = make_optimizer(name, resumed_params, 0.5)  # lr and t come from the state
    resumed.load_state_dict(loaded)
    assert resumed.t == opt.t == 60

    for _ in range(10):
        grads = random_arrays(rng, np.float32)
        opt.step(grads)
        resumed.step(grads)
    for p, q in zip(params, resumed_params, strict=True):
        np.testing.assert_array_equal(p, q)
    # state_dict() handed out copies: the later steps did not change it
    for key, value in state.items():
        np.testing.assert_array_equal(value, saved[key])


def test_load_state_dict_checks_keys_shapes_and_values() -> None:
    rng = np.random.default_rng(7)
    opt = Adam(random_arrays(rng), 0.01)
    good = opt.state_dict()
    with pytest.raises(ValueError, match="missing keys \\['m0'\\]"):
        opt.load_state_dict({k: v for k, v in good.items() if k != "m0"})
    with pytest.raises(ValueError, match="unexpected keys \\['s0'\\]"):
        opt.load_state_dict({**good, "s0": good["m0"]})
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict({**good, "v1": np.zeros(5)})
    with pytest.raises(ValueError, match="beta1"):
        opt.load_state_dict({**good, "beta1": 1.5})
    with pytest.raises(ValueError, match="missing keys"):
        Adam(random_arrays(rng), 0.01).load_state_dict(SGD(random_arrays(rng), 0.1).state_dict())


# --------------------------------------------------------------------------- factory, checks


def test_make_optimizer_builds_every_rule() -> None:
    assert set(OPTIMIZERS) == {"sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"}
    for name, cls in OPTIMIZERS.items():
        opt = make_optimizer(name, [np.zeros(2)], 0.1)
        assert type(opt) is cls
    assert make_optimizer("adam", [np.zeros(2)], 0.1, beta2=0.99).beta2 == 0.99


def test_make_optimizer_rejects_unknown_names_and_hyperparameters() -> None:
    params = [np.zeros(2)]
    with pytest.raises(ValueError, match="unknown optimizer 'adagrad'"):
        make_optimizer("adagrad", params, 0.1)
    with pytest.raises(ValueError, match="'sgd' does not take beta \\(it takes: no hyper"):
        make_optimizer("sgd", params, 0.1, beta=0.9)
    with pytest.raises(ValueError, match="'adam' does not take beta, momentum \\(it takes: beta1"):
        make_optimizer("adam", params, 0.1, beta=0.9, momentum=0.5)


@pytest.mark.parametrize(
    ("name", "lr", "hyper", "message"),
    [
        ("sgd", 0.0, {}, r"^lr must be a positive number, got 0\.0$"),
        ("sgd", float("nan"), {}, r"^lr must be a finite number, got nan$"),
        ("momentum", 0.1, {"beta": 1.0}, r"^beta must be in \[0, 1\), got 1\.0$"),
        ("nesterov", 0.1, {"beta": -0.1}, r"^beta must be in \[0, 1\), got -0\.1$"),
        ("rmsprop", 0.1, {"epsilon": -1e-8}, r"^epsilon must be a positive number, got -1e-08$"),
        ("adam", 0.1, {"beta2": 1.0}, r"^beta2 must be in \[0, 1\), got 1\.0$"),
        (
            "adamw",
            0.1,
            {"weight_decay": -0.01},
            r"^weight_decay must be a number >= 0, got -0\.01$",
        ),
    ],
)
def test_invalid_values_are_rejected(name: str, lr: float, hyper: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_optimizer(name, [np.zeros(2)], lr, **hyper)


def test_integer_params_are_rejected() -> None:
    with pytest.raises(TypeError, match="floating-point"):
        SGD([np.zeros(2, dtype=np.int64)], 0.1)


# --------------------------------------------------------------------------- subnormals


def no_subnormals(x: np.ndarray) -> bool:
    """True when every non-zero entry of x is at least np.finfo(x.dtype).tiny in size."""
    nonzero = np.abs(x)[x != 0]
    return nonzero.size == 0 or nonzero.min() >= np.finfo(x.dtype).tiny


@pytest.mark.parametrize("name", STATEFUL)
def test_moments_never_become_subnormal_float32(name: str) -> None:
    """Gradients for 5 steps, then exactly 0: without flushing, beta^k shrinks the moments into
    the subnormals within ~1000 steps, where they stay (beta x rounds back to x)."""
    rng = np.random.default_rng(8)
    params = random_arrays(rng, np.float32)
    twin = [p.copy() for p in params]
    opt = make_optimizer(name, params, 1e-3)
    unflushed = make_optimizer(name, twin, 1e-3)
    unflushed.flush_every = 10**9
    for _ in range(5):
        grads = random_arrays(rng, np.float32)
        opt.step(grads)
        unflushed.step(grads)
    zeros = [np.zeros_like(p) for p in params]
    for _ in range(1500):
        opt.step(zeros)
        unflushed.step(zeros)
        assert all(no_subnormals(x) for x in moment_arrays(opt)), f"step {opt.t}"
    assert not all(no_subnormals(x) for x in moment_arrays(unflushed))  # the trap is real


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", STATEFUL)
def test_near_tiny_moments_are_flushed(name: str, dtype: type) -> None:
    """Moments just above tiny (as after ~80,000 zero-gradient steps of v, b2 = 0.999), loaded
    one step before a flush: from then on no decaying entry ever becomes subnormal."""
    params = [np.zeros(8, dtype=dtype)]
    opt = make_optimizer(name, params, 1e-3)
    tiny = np.finfo(dtype).tiny
    near = np.array([1e6, 1e3, 100, 10, 3, 2, 1.01, -5], dtype=dtype) * tiny
    state = opt.state_dict()
    for key in state:
        if key[0] in "msv" and key[1:].isdigit():  # m0, v0 or s0: the moment arrays
            squares = key[0] == "s" or (key[0] == "v" and name.startswith("adam"))  # >= 0
            state[key] = np.abs(near) if squares else near
    state["t"] = opt.flush_every - 1  # the next step ends with a flush
    opt.load_state_dict(state)
    zeros = [np.zeros_like(params[0])]
    for _ in range(300):
        opt.step(zeros)
        assert all(no_subnormals(x) for x in moment_arrays(opt)), f"step {opt.t}"


def subnormal(x: np.ndarray) -> np.ndarray:
    """Where 0 < |x| < tiny."""
    return (x != 0) & (np.abs(x) < np.finfo(x.dtype).tiny)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", STATEFUL)
def test_decayed_moments_are_flushed_to_zero_and_nothing_else_changes(
    name: str, dtype: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    """5 steps of gradients as small as sqrt(tiny / (1 - b2)) (so every moment starts a little
    above tiny) up to 1, then 4000 steps of g = 0: without flushing every moment array ends
    with subnormal entries; with it those entries are exactly 0, none is ever subnormal, every
    other entry and every parameter is bit-for-bit what the unflushed twin has."""
    rng = np.random.default_rng(9)
    params = random_arrays(rng, dtype)
    twin = [p.copy() for p in params]
    opt = make_optimizer(name, params, 1e-3)
    unflushed = make_optimizer(name, twin, 1e-3)
    monkeypatch.setattr(unflushed, "_flush", lambda: None)  # the flush disabled
    tiny = np.finfo(dtype).tiny
    # log10 of the smallest |g|: (1 - 0.999) g^2 = 10**0.4 tiny, still a normal number
    smallest = (math.log10(tiny) + 3 + 0.4) / 2
    for _ in range(5):
        grads = [
            (
                rng.choice([-1.0, 1.0], size=shape)
                * np.logspace(smallest, 0.0, math.prod(shape)).reshape(shape)
                * rng.uniform(1.0, 1.5, size=shape)
            ).astype(dtype)
            for shape in SHAPES
        ]
        assert all(no_subnormals(g) for g in grads)
        opt.step(grads)
        unflushed.step(grads)
    zeros = [np.zeros_like(p) for p in params]
    for _ in range(4000):
        opt.step(zeros)
        unflushed.step(zeros)
        if opt.t % 50 == 0:
            assert all(no_subnormals(x) for x in moment_arrays(opt)), f"step {opt.t}"
    moments, twin_moments = moment_arrays(opt), moment_arrays(unflushed)
    assert len(moments) == len(twin_moments) == len(SHAPES) * (2 if name.startswith("adam") else 1)
    for i, (x, y) in enumerate(zip(moments, twin_moments, strict=True)):
        assert x.dtype == y.dtype == dtype
        assert subnormal(y).any(), f"moment {i}: no subnormal without flushing"  # the trap
        assert not subnormal(x).any(), f"moment {i}: {x[subnormal(x)]}"
        assert (x[subnormal(y)] == 0).all(), f"moment {i}"  # flushed: exactly 0
        kept = x != 0
        if dtype == np.float64:  # (in float32 4000 steps take even the largest entries to 0)
            assert kept.any(), f"moment {i}"  # the large entries are still decaying
        np.testing.assert_array_equal(x[kept], y[kept])
    for p, q in zip(params, twin, strict=True):
        np.testing.assert_array_equal(p, q)


# --------------------------------------------------------------------------- convergence


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    ("name", "lr0", "hyper"),
    [
        ("sgd", 0.1, {}),
        ("momentum", 0.05, {}),
        ("nesterov", 0.05, {}),
        ("rmsprop", 0.05, {}),
        ("adam", 0.05, {}),
        ("adamw", 0.05, {"weight_decay": 0.0}),
    ],
)
def test_minimises_a_convex_quadratic(name: str, lr0: float, hyper: dict, dtype: type) -> None:
    """J(x) = 0.5 ||A x - b||^2, dJ/dx = A^T (A x - b); lr decays 0.5% a step (RMSprop and
    Adam hover at a distance ~lr from the minimum with a constant lr)."""
    A = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=dtype)
    b = np.array([1.0, -2.0, 0.5], dtype=dtype)
    x_star = np.linalg.lstsq(A.astype(np.float64), b.astype(np.float64), rcond=None)[0]
    x = np.zeros(2, dtype=dtype)
    g = np.empty_like(x)
    opt = make_optimizer(name, [x], lr0, **hyper)
    for k in range(2000):
        opt.lr = lr0 * 0.995**k
        np.matmul(A.T, A @ x - b, out=g)
        opt.step([g])
    assert x.dtype == dtype
    assert np.linalg.norm(x - x_star) < 1e-5


# --------------------------------------------------------------------------- through training


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
    config = validate_config(raw, "test")
    made = capture_optimizer(monkeypatch)
    tuned = fit(config)
    assert len(made) == 1
    for key, value in HYPERS[name].items():
        assert getattr(made[0], key) == value, key
    # and they change the run: the rule's defaults give other weights
    raw["train"]["optimizer"] = {"name": name}
    default = fit(validate_config(raw, "test"))
    assert not all(
        np.array_equal(a, b)
        for a, b in zip(weights_of(tuned.net), weights_of(default.net), strict=True)
    )


def test_optimizer_given_by_name_only_uses_the_rule_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = capture_optimizer(monkeypatch)
    config = validate_config(
        {
            "data": {"dataset": "blobs400"},
            "train": {"optimizer": "adam", "max_epochs": 1, "batch_size": 100},
        },
        "test",
    )
    fit(config)
    assert (made[0].beta1, made[0].beta2, made[0].epsilon) == (0.9, 0.999, 1e-8)


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
