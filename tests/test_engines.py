"""The compiled engine (``nn/compiled.py``) against the NumPy layers, and which engine trains what.

The two engines compute the same formulas in a different order of rounding (BLAS sums, another
exp), so they agree to ~1e-15 per step and stay within 1e-12 after 10,000 steps on runs whose
training is not chaotic (moderate learning rates, weights away from L1's kink at 0).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import assert_one_line_error, invoke

from scratchnn_cli.config import TrainConfig
from scratchnn_cli.nn import engines
from scratchnn_cli.nn.engines import EngineError, choose_engine, compiled_unsupported
from scratchnn_cli.nn.layers import Dense, Dropout, ReLU, Tanh
from scratchnn_cli.nn.losses import LOSSES
from scratchnn_cli.nn.network import Network
from scratchnn_cli.records import Snapshot
from scratchnn_cli.training.hooks import Hooks
from scratchnn_cli.training.loop import trainer_for

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu")
RULES = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw")
LR = {"sgd": 0.01, "momentum": 0.001, "nesterov": 0.001}  # the adaptive rules: 0.0005


def rings(K: int, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Points in the plane labelled by rings around the origin (K = 2 or 3 classes)."""
    X = np.random.default_rng(3).normal(size=(n, 2))
    r = np.hypot(X[:, 0], X[:, 1])
    y = (r > 1.18).astype(np.int64) if K == 2 else (r > 1.0).astype(np.int64) + (r > 1.6)
    return X, y


def fit(
    engine: str,
    activation: str = "tanh",
    output: str = "sigmoid",
    rule: str = "sgd",
    B: int = 1,
    l1: float = 0.0,
    l2: float = 0.0,
    dtype: type = np.float64,
    steps: int = 10_000,
    eps: float = 0.0,
) -> tuple[Network, object, np.ndarray]:
    """A 2-4-3-k network trained by ``engine``; (net, result, the last epoch's logits)."""
    K = 3 if output == "softmax" else 2
    X, y = rings(K)
    net = Network.from_struct(
        2,
        [4, 3],
        K if output == "softmax" else 1,
        activation=activation,
        output=output,
        rng=np.random.default_rng(1),
        dtype=dtype,
        mu=0.3 if l1 else 0.0,  # L1's sign(W) jumps at 0: keep the weights away from it
        sigma=0.1 if l1 else 0.3,
    )
    cfg = TrainConfig(
        lr=LR.get(rule, 0.0005),
        eps=eps,
        max_iterations=steps,
        batch_size=B,
        optimizer={"name": rule},
        l1=l1,
        l2=l2,
    )
    trainer = trainer_for(net, X, y, K, cfg, np.random.default_rng(2), engine=engine)
    assert trainer.engine == engine
    result = trainer.run()
    return net, result, trainer.Z_epoch.copy()


def assert_close(a: np.ndarray, b: np.ndarray, rtol: float = 1e-12) -> None:
    """Largest difference relative to the largest entry (entries near 0 have no relative size)."""
    scale = float(np.max(np.abs(a)))
    assert scale > 0
    assert float(np.max(np.abs(a - b))) <= rtol * scale, float(np.max(np.abs(a - b))) / scale


def assert_engines_agree(**kwargs: object) -> None:
    net_np, result_np, Z_np = fit("numpy", **kwargs)
    net_c, result_c, Z_c = fit("compiled", **kwargs)
    start = Network.from_struct(2, [4, 3], 1, rng=np.random.default_rng(1)).theta
    assert np.max(np.abs(net_np.theta[: start.size] - start)) > 0.05  # it trained
    assert_close(net_np.theta, net_c.theta)
    assert_close(Z_np, Z_c)
    assert len(result_np.history) == len(result_c.history)
    for a, b in zip(result_np.history, result_c.history, strict=True):  # every epoch's cost
        assert a.cost == pytest.approx(b.cost, rel=1e-12)
        assert a.train_accuracy == b.train_accuracy


@pytest.mark.slow
@pytest.mark.parametrize("output", ["sigmoid", "softmax"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_and_output_agrees(activation: str, output: str) -> None:
    assert_engines_agree(activation=activation, output=output)


@pytest.mark.slow
@pytest.mark.parametrize("rule", RULES)
def test_every_update_rule_agrees(rule: str) -> None:
    assert_engines_agree(activation="sigmoid", output="softmax", rule=rule)


@pytest.mark.slow
@pytest.mark.parametrize(("l1", "l2"), [(1e-4, 0.0), (0.0, 1e-3), (1e-4, 1e-3)])
def test_penalties_agree(l1: float, l2: float) -> None:
    assert_engines_agree(activation="relu", rule="momentum", l1=l1, l2=l2)


@pytest.mark.parametrize("rule", ["sgd", "adam"])
def test_mini_batches_agree_with_a_short_last_batch(rule: str) -> None:
    assert 200 % 7 != 0  # every epoch ends with a batch of 4
    assert_engines_agree(activation="leaky_relu", output="softmax", rule=rule, B=7, steps=3_000)


def test_float32_stays_float32_and_agrees_to_float32_rounding() -> None:
    net_np, _, Z_np = fit("numpy", dtype=np.float32, rule="adam", steps=2_000)
    net_c, _, Z_c = fit("compiled", dtype=np.float32, rule="adam", steps=2_000)
    assert net_c.theta.dtype == Z_c.dtype == np.float32
    assert_close(net_np.theta, net_c.theta, rtol=1e-4)
    assert_close(Z_np, Z_c, rtol=1e-4)


@pytest.mark.slow
def test_both_stop_at_the_same_epoch_for_the_same_reason() -> None:
    _, a, _ = fit("numpy", activation="sigmoid", eps=1e-4, steps=200_000)
    _, b, _ = fit("compiled", activation="sigmoid", eps=1e-4, steps=200_000)
    assert a.stopped_by == b.stopped_by == "eps"
    assert 1 < a.epochs == b.epochs < 1000


def test_the_compiled_engine_is_bit_identical_run_to_run() -> None:
    a, _, Z_a = fit("compiled", rule="adam", steps=3_000)
    b, _, Z_b = fit("compiled", rule="adam", steps=3_000)
    assert np.array_equal(a.theta, b.theta) and np.array_equal(Z_a, Z_b)


def test_resuming_a_compiled_run_gives_the_bits_of_an_unbroken_one() -> None:
    """The optimizer's moments and step count live where snapshots read them."""
    X, y = rings(2)
    cfg = TrainConfig(lr=0.001, eps=0.0, max_epochs=8, optimizer={"name": "adam"})

    def fresh() -> Network:
        return Network.from_struct(2, [4], 1, activation="tanh", rng=np.random.default_rng(1))

    snapshots: list[Snapshot] = []
    whole = fresh()
    hooks = Hooks(None, snapshots.append, checkpoint_every=1)
    trainer_for(whole, X, y, 2, cfg, np.random.default_rng(2), hooks=hooks, engine="compiled").run()
    at_3 = next(s for s in snapshots if s.epochs == 3)
    assert at_3.optimizer["t"] == 3 * 200 and np.any(at_3.optimizer["m0"] != 0)
    resumed = fresh()
    trainer = trainer_for(
        resumed, X, y, 2, cfg, np.random.default_rng(9), resume_from=at_3, engine="compiled"
    )
    trainer.run()
    assert np.array_equal(resumed.theta, whole.theta)


# --------------------------------------------------------------------------- which engine


def net_of(*layers: object, output: str = "sigmoid", n_in: int = 2) -> Network:
    return Network([*layers, Dense(1)], LOSSES[output](), n_in)


def test_what_the_compiled_engine_does_not_run_is_named() -> None:
    assert compiled_unsupported(net_of(Dense(4), Tanh()), "adam") is None
    assert compiled_unsupported(net_of(Dense(4), Dense(3), ReLU()), "sgd") is None  # no g
    dropout = compiled_unsupported(net_of(Dense(4), Tanh(), Dropout(0.5)), "sgd")
    assert dropout == "the network has a dropout layer"
    twice = compiled_unsupported(net_of(Dense(4), Tanh(), ReLU()), "sgd")
    assert twice == "the network has an activation (relu) that does not follow a dense layer"
    assert compiled_unsupported(net_of(Dense(4)), "lion") == "the update rule lion"
    augmenting = compiled_unsupported(net_of(Dense(4)), "sgd", augments=True)
    assert augmenting == "image augmentation"


def test_auto_takes_the_compiled_engine_for_small_updates_only() -> None:
    small = net_of(Dense(5), Tanh())
    assert choose_engine("auto", small, "sgd", 1).engine == "compiled"
    big = net_of(Dense(1000), Tanh(), n_in=784)  # 786k parameters, batch 128
    choice = choose_engine("auto", big, "adam", 128)
    assert choice.engine == "numpy" and "matrix products" in choice.why
    assert choose_engine("compiled", big, "adam", 128).engine == "compiled"  # asked: it runs
    assert choose_engine("numpy", small, "sgd", 1).engine == "numpy"
    with pytest.raises(EngineError, match="compiled cannot train this spec: the network has a"):
        choose_engine("compiled", net_of(Dense(4), Dropout(0.5)), "sgd", 1)


def test_auto_takes_single_samples_compiled_whatever_the_size_and_batches_while_small() -> None:
    wide = net_of(Dense(256), ReLU(), Dense(128), ReLU(), n_in=784)  # 234k parameters
    assert choose_engine("auto", wide, "adam", 1).engine == "compiled"
    assert choose_engine("auto", wide, "adam", 2).engine == "numpy"
    tiny = net_of(Dense(5), Tanh())  # 21 parameters
    assert choose_engine("auto", tiny, "adam", 256).engine == "compiled"
    medium = net_of(Dense(32), ReLU(), n_in=64)  # 2,113 parameters x 16 = 33,808
    assert choose_engine("auto", medium, "sgd", 16).engine == "numpy"


def test_without_numba_auto_trains_with_numpy_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engines, "numba_missing", lambda: "numba cannot be imported (test)")
    choice = choose_engine("auto", net_of(Dense(5), Tanh()), "sgd", 1)
    assert (choice.engine, choice.note) == (
        "numpy",
        "numba cannot be imported (test): training with numpy",
    )
    with pytest.raises(EngineError, match="numba cannot be imported"):
        choose_engine("compiled", net_of(Dense(5), Tanh()), "sgd", 1)


# --------------------------------------------------------------------------- the command line

SPEC = """\
name: tiny
data: {{dataset: blobs400}}
model: {{struct: [3]{extra}}}
train: {{lr: 0.05, max_iterations: 2000, engine: {engine}}}
"""


def spec(tmp_path: Path, engine: str, extra: str = "") -> Path:
    path = tmp_path / f"{engine}.yaml"
    path.write_text(SPEC.format(engine=engine, extra=extra))
    return path


def trained(tmp_path: Path, engine: str) -> dict:
    result = invoke("train", spec(tmp_path, engine), "--runs-dir", tmp_path / engine)
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / engine).iterdir()
    return json.loads((run / "run.json").read_text())


@pytest.mark.slow
def test_run_json_records_the_engine_auto_chose(tmp_path: Path) -> None:
    assert trained(tmp_path, "auto")["engine"] == "compiled"
    assert trained(tmp_path, "numpy")["engine"] == "numpy"


def test_compiled_on_a_network_it_cannot_run_is_refused_before_any_folder(tmp_path: Path) -> None:
    path = spec(tmp_path, "compiled", extra=", dropout: 0.2")
    result = invoke("train", path, "--runs-dir", tmp_path / "runs")
    line = assert_one_line_error(result, 2)
    assert "compiled cannot train this spec: the network has a dropout layer" in line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_summary_says_which_engine_would_train(tmp_path: Path) -> None:
    result = invoke("summary", spec(tmp_path, "auto"))
    assert result.exit_code == 0, result.output
    assert "engine: compiled (auto: a dense network with small updates)" in result.output
    result = invoke("summary", spec(tmp_path, "auto", extra=", dropout: 0.2"))
    assert "engine: numpy (auto; the compiled engine cannot train it: the network has a " in (
        result.output
    )


@pytest.mark.slow
def test_a_compiled_sweep_gives_the_same_results_on_any_jobs(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(SPEC.format(engine="auto", extra="").replace("2000", "600"))
    tables = []
    for jobs in (1, 2):
        runs = tmp_path / f"jobs{jobs}"
        args = ("--grid", "train.lr=0.3,0.03", "--cv", 2, "--no-refit", "--jobs", jobs)
        result = invoke("sweep", path, *args, "--runs-dir", runs)
        assert result.exit_code == 0, result.output
        (sweep_dir,) = runs.iterdir()
        sub_runs = [p for p in sweep_dir.iterdir() if p.is_dir()]
        assert len(sub_runs) == 4
        assert {json.loads((p / "run.json").read_text())["engine"] for p in sub_runs} == {
            "compiled"
        }
        tables.append(pd.read_csv(sweep_dir / "results.csv").drop(columns=["seconds"]))
    pd.testing.assert_frame_equal(tables[0], tables[1])


def test_a_run_resumes_with_the_engine_run_json_names_and_older_ones_with_numpy() -> None:
    from scratchnn_cli.experiment import resumed_engine
    from scratchnn_cli.runs import RunRecord

    def record(**engine: str) -> RunRecord:
        return RunRecord(status="interrupted", **engine)

    assert resumed_engine(Path("run"), record(engine="compiled")) == "compiled"
    assert resumed_engine(Path("run"), record(engine="numpy")) == "numpy"
    assert resumed_engine(Path("run"), record(engine="lockstep")) == "numpy"  # 0.2.0 development
    assert resumed_engine(Path("run"), record()) == "numpy"  # written before train.engine
