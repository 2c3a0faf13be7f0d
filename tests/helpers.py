"""Helpers shared by the test files (pytest puts tests/ on sys.path): paths and specs, the
command line, run folders, training in-process, gradients and layers, Dask. Fixtures are in
conftest.py."""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner, Result

import scratchnn_cli.training.loop as train_module
from scratchnn_cli import runs
from scratchnn_cli.assembly import network_for_dataset, training_set
from scratchnn_cli.cli import app
from scratchnn_cli.config import ExperimentConfig
from scratchnn_cli.data import Dataset, load_dataset
from scratchnn_cli.metrics import score
from scratchnn_cli.nn.layers import (
    Flatten,
    Layer,
)
from scratchnn_cli.nn.network import Network
from scratchnn_cli.nn.optim.optimizers import Optimizer
from scratchnn_cli.streams import training_streams
from scratchnn_cli.training import EpochRecord, Hooks, TrainResult, train

# --------------------------------------------------------------------------- paths and specs


ROOT = Path(__file__).resolve().parents[1]  # the project

CONFIGS = ROOT / "configs"

LEGACY_RUNS = Path(__file__).resolve().parent / "fixtures" / "legacy_runs"  # written by 0.1.0
#: The course data beside the project (never committed): tests that need it skip without it.
SHARED_DATA = ROOT.parent / "shared" / "data"

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# small and fast: blobs400 (200 / 100 / 100 samples), a hidden layer of 3, 1000 iterations
SMALL_CONFIG = """\
name: {name}
seed: 0
data:
  dataset: blobs400
  split: [0.5, 0.25, 0.25]
model:
  struct: [3]
  sigma: 0.5
train:
  lr: 0.05
  eps: 0
  max_iterations: {max_iterations}
"""

# a sweep's base spec: circles500, a leaky-ReLU hidden layer of 4, 1,000 single-sample updates
TINY_SWEEP = """\
name: tiny
seed: 0
data:
  dataset: circles500
model:
  struct: [4]
  activation: leaky_relu
  sigma: 0.5
train:
  lr: 0.1
  eps: 0
  max_iterations: 1000
  checkpoint_every: 1
"""

# digits, mini-batches of 16 (68 updates an epoch, a few ms), a checkpoint every 2 epochs
DIGITS_CONFIG = """\
name: {name}
seed: 0
data:
  dataset: digits
  split: [0.6, 0.2, 0.2]
model:
  struct: [16]
  sigma: 0.1
train:
  lr: 0.05
  eps: 0
  batch_size: 16
  max_iterations: {max_iterations}
  checkpoint_every: 2
"""

# 80 epochs: long enough to be interrupted after epoch 2, short enough to finish when resumed
FINITE_EPOCHS = 80

FINITE_ITERATIONS = 68 * FINITE_EPOCHS

# leaky ReLU, huge weights and a huge step: the cost overflows within the first epochs
DIVERGING_CONFIG = """\
name: boom
seed: 0
data:
  dataset: blobs400
model:
  struct: [5]
  activation: leaky_relu
  sigma: 10
train:
  lr: 1.0e+6
  max_iterations: 2000
"""

# blobs400: 3 features, 2 classes (so a sigmoid output: one unit); layers 0..6, output 7
LAYERS_CONFIG = """\
name: layers
seed: 0
data:
  dataset: blobs400
  split: [0.5, 0.25, 0.25]
model:
  layers:
    - {type: dense, units: 5}
    - {type: tanh}
    - {type: dense, units: 4}
    - {type: leaky_relu, alpha: 0.1}
    - {type: dropout, rate: 0.3}
    - {type: dense, units: 3}
    - {type: relu}
  sigma: 0.5
train:
  lr: 0.05
  max_iterations: 100
"""


def write_config(
    folder: Path, text: str | None = None, filename: str = "exp.yaml", **fields: object
) -> Path:
    """Write ``text`` to ``folder / filename`` (``folder`` made if missing); without ``text``,
    ``SMALL_CONFIG`` with ``fields`` (name ``exp`` and 1,000 iterations unless given)."""
    folder.mkdir(parents=True, exist_ok=True)
    values = {"name": "exp", "max_iterations": 1000, **fields}
    path = folder / filename
    path.write_text(text if text is not None else SMALL_CONFIG.format(**values), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- the command line


def invoke(*args: object) -> Result:
    """Run the ``scratchnn`` CLI in-process with these arguments (paths become strings)."""
    return CliRunner().invoke(app, [str(a) for a in args])


def train_here(config: Path, *args: object) -> Result:
    """``scratchnn train config ...``, its run folders under ``config``'s folder."""
    return invoke("train", config, "--runs-dir", config.parent / "runs", *args)


def assert_one_line_error(result: Result, code: int = 2) -> str:
    """Exit ``code``, exactly one non-empty output line, which is the error; no traceback, and
    no exception other than the exit itself."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), repr(result.exception)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error:"), lines[0]
    return lines[0]


def assert_no_traceback(result: Result) -> None:
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def render(renderable: Any, width: int, terminal: bool = False) -> str:
    """What a Console ``width`` columns wide prints for ``renderable`` (no colours)."""
    console = Console(width=width, file=io.StringIO(), force_terminal=terminal, color_system=None)
    with console.capture() as captured:
        console.print(renderable)
    return captured.get()


# --------------------------------------------------------------------------- run folders


def run_folders(runs_dir: Path) -> list[Path]:
    return sorted(p for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.exists() else []


def only_run(runs_dir: Path) -> Path:
    folders = run_folders(runs_dir)
    assert len(folders) == 1, folders
    return folders[0]


def assert_nothing_ran(folder: Path) -> None:
    runs = folder / "runs"
    assert not runs.exists() or not any(runs.iterdir())


def read_json(path: Path) -> Any:
    """The JSON file at ``path``, read here rather than by the code under test."""
    return json.loads(path.read_text(encoding="utf-8"))


def model_arrays(run_dir: Path) -> dict[str, np.ndarray]:
    with np.load(run_dir / "model.npz", allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def assert_same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert np.array_equal(a[key], b[key]), key


HISTORY_EXACT = ["epoch", "iteration", "cost", "train_accuracy", "val_cost", "val_accuracy", "lr"]


def history_frame(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "history.csv")[HISTORY_EXACT]


def temp_files(folder: Path, lock_may_remain: bool = False) -> list[str]:
    """Leftovers of atomic writes (``.<name>.<random>.tmp``) or any other hidden file, the run
    lock ``.lock`` included unless ``lock_may_remain`` (a process that ends at once, as on a
    second Ctrl-C, cannot delete it; it is empty and harmless)."""
    allowed = {".lock"} if lock_may_remain else set()
    return sorted(
        p.name for p in folder.iterdir() if p.name.startswith(".") and p.name not in allowed
    )


def assert_folder_whole(run_dir: Path, lock_may_remain: bool = False) -> dict[str, Any]:
    """Every file in ``run_dir`` parses completely; no temp file is left, nor the run lock
    unless ``lock_may_remain``; returns run.json."""
    assert temp_files(run_dir, lock_may_remain) == [], temp_files(run_dir)
    for path in run_dir.iterdir():
        name = path.name
        if name.startswith("."):
            continue
        if name.endswith(".json"):
            assert isinstance(read_json(path), dict), name
        elif name == "checkpoint.npz":
            runs.read_checkpoint(path)
        elif name.endswith(".npz"):
            with np.load(path, allow_pickle=False) as data:
                assert data.files, name
                for key in data.files:
                    assert np.isfinite(data[key]).all(), (name, key)
        elif name == "diagnostics.csv":
            from scratchnn_cli.runs.diagnostics import read_diagnostics

            assert read_diagnostics(path), name  # parses whole, and holds rows
        elif name.endswith(".csv"):
            frame = pd.read_csv(path)
            assert list(frame.columns[:3]) == ["epoch", "iteration", "cost"], name
        elif name.endswith(".yaml"):
            assert isinstance(yaml.safe_load(path.read_text(encoding="utf-8")), dict), name
        elif name.endswith(".png"):
            data = path.read_bytes()
            assert data.startswith(PNG_SIGNATURE) and data.rstrip().endswith(b"IEND\xaeB`\x82")
        elif name.endswith(".log"):
            path.read_text(encoding="utf-8")
        else:
            raise AssertionError(f"unexpected file in the run folder: {name}")
    info = read_json(run_dir / "run.json") if (run_dir / "run.json").exists() else {}
    return info


def csv_run(tmp_path: Path, names: tuple[str, str]) -> Path:
    """A finished run on a CSV whose two class names are ``names``."""
    rng = np.random.default_rng(0)
    rows = ["x1,x2,label"]
    for i in range(60):
        c = i % 2
        x = rng.normal(2.0 * c, 0.5, size=2)
        rows.append(f'{x[0]:.4f},{x[1]:.4f},"{names[c]}"')
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    config = tmp_path / "c.yaml"
    config.write_text(
        SMALL_CONFIG.format(name="classes", max_iterations=200).replace(
            "dataset: blobs400", f"dataset: {tmp_path / 'data.csv'}"
        ),
        encoding="utf-8",
    )
    result = invoke("train", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    return next((tmp_path / "runs").iterdir())


ENOSPC = 28


class FailingOs:
    """Stands in for ``os`` inside scratchnn_cli.runs.folder: ``replace`` fails as on a full disk
    at the k-th call (``once``) or from the k-th call on; everything else is the real os."""

    def __init__(self, fail_at: int | None, once: bool = True) -> None:
        self.fail_at, self.once = fail_at, once
        self.calls: list[str] = []

    def replace(self, src: Any, dst: Any) -> None:
        self.calls.append(Path(dst).name)
        k = len(self.calls)
        if self.fail_at is not None and (k == self.fail_at or (not self.once and k > self.fail_at)):
            raise OSError(ENOSPC, "No space left on device")
        os.replace(src, dst)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


# --------------------------------------------------------------------------- training in-process


OPTIMIZER_NAMES = ["sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"]

LEARNING_RATES = {
    "sgd": 0.5,
    "momentum": 0.1,
    "nesterov": 0.1,
    "rmsprop": 0.01,
    "adam": 0.01,
    "adamw": 0.01,
}


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
        return score(self.net, X, y, self.dataset.n_classes).accuracy

    def val_cost(self) -> float:
        X, y = self.dataset.split("val")
        Y = self.net.loss.targets(y, self.dataset.n_classes, self.net.dtype)
        return self.net.loss.cost(self.net.forward(np.asarray(X, dtype=self.net.dtype)), Y)


def fit(config: ExperimentConfig) -> Fit:
    """What run_experiment does, minus the files (validation split and dropout stream included);
    the weights are copied at the end of every epoch."""
    dataset = load_dataset(config.data, config.seed)
    streams = training_streams(config.seed)
    net = network_for_dataset(config, dataset, streams.init, streams.dropout)
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
        streams.sampling,
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
    return Network.from_struct(
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


# --------------------------------------------------------------------------- gradients and layers


def numeric_grad(f: Callable[[], float], P: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """dJ/dP by central differences, perturbing the array ``P`` in place (restored after).

    Written independently of ``scratchnn_cli.nn.gradcheck`` so the tests do not trust the code
    they check.
    """
    grad = np.zeros_like(P, dtype=np.float64)
    for idx in np.ndindex(P.shape):
        saved = P[idx]
        P[idx] = saved + h
        f_plus = f()
        P[idx] = saved - h
        f_minus = f()
        P[idx] = saved
        grad[idx] = (f_plus - f_minus) / (2 * h)
    return grad


def assert_grad_close(
    analytic: np.ndarray, numeric: np.ndarray, what: str, whole: float | None = None
) -> None:
    """Every entry agrees to 1e-6 (relative) or 1e-8 (absolute slack for entries whose gradient
    is (nearly) zero); with ``whole``, the shapes agree and so does the whole array, to ``whole``
    relative to its norm."""
    if whole is not None:
        analytic = np.asarray(analytic, dtype=np.float64)
        assert analytic.shape == numeric.shape, what
    err = np.abs(analytic - numeric)
    bound = 1e-6 * np.maximum(np.abs(analytic), np.abs(numeric)) + 1e-8
    bad = np.argwhere(err > bound)
    assert bad.size == 0, (
        f"{what}: {len(bad)} entries differ, first at {tuple(bad[0])}: "
        f"analytic {analytic[tuple(bad[0])]!r} vs numeric {numeric[tuple(bad[0])]!r}"
    )
    if whole is not None:
        scale = np.linalg.norm(analytic) + np.linalg.norm(numeric)
        if scale > 0:
            assert np.linalg.norm(analytic - numeric) / scale < whole, what


FORWARD_TOL = {"rtol": 1e-12, "atol": 1e-12}  # float64, only the order of the sums differs

GRAD_TOL = {"rtol": 1e-6, "atol": 1e-8}  # central differences, h = 1e-6


def in_network(
    layers: list[Layer],
    input_shape: tuple[int, ...],
    seed: int = 0,
    n_outputs: int = 3,
    dtype: type = np.float64,
) -> Network:
    """The layers (ending flat) in a small softmax network, built the way the CLI builds one;
    biases and batchnorm's gamma / beta randomised so that none of them is a plain 0 or 1."""
    net = Network.from_layers(
        layers,
        input_shape,
        n_outputs,
        output="softmax",
        rng=np.random.default_rng(seed),
        init="he",
        dtype=dtype,
        dropout_rng=np.random.default_rng(seed + 100),
    )
    rng = np.random.default_rng(seed + 200)
    for layer in net.layers:
        for name, p in layer.params.items():
            if name in ("b", "beta"):
                p[...] = rng.normal(0.0, 0.3, p.shape)
            elif name == "gamma":
                p[...] = rng.uniform(0.5, 1.5, p.shape)
    return net


def tail_for(shape: tuple[int, ...]) -> list[Layer]:
    return [Flatten()] if len(shape) > 1 else []


def built(layer: Layer, input_shape: tuple[int, ...], seed: int = 0) -> tuple[Layer, Network]:
    """``layer`` built and bound inside a network on samples of ``input_shape``."""
    net = in_network([layer, *tail_for(layer_output(layer, input_shape))], input_shape, seed)
    return layer, net


def layer_output(layer: Layer, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    return layer.output_shape_for(tuple(input_shape))


def check_layer_gradients(
    layer: Layer,
    X: np.ndarray,
    training: bool,
    seed: int = 1,
    before_forward: Any = None,
) -> None:
    """J = sum(A * R), R random: backward's dA_prev and parameter gradients equal central
    differences of J with respect to the input and to every parameter."""
    reset = before_forward or (lambda: None)
    reset()
    A = layer.forward(X, training)
    R = np.random.default_rng(seed).normal(size=A.shape)

    def J() -> float:
        reset()
        return float(np.sum(layer.forward(X, training) * R))

    reset()
    layer.forward(X, training)
    dX = layer.backward(R.copy())
    analytic = {name: g.copy() for name, g in layer.grads.items()}
    assert dX.shape == X.shape
    np.testing.assert_allclose(dX, numeric_grad(J, X), **GRAD_TOL, err_msg="dA_prev")
    for name, P in layer.params.items():
        np.testing.assert_allclose(analytic[name], numeric_grad(J, P), **GRAD_TOL, err_msg=name)


def one_line_value_error(layers: list[Layer], input_shape: tuple[int, ...], match: str) -> str:
    with pytest.raises(ValueError, match=match) as info:
        Network.from_layers(layers, input_shape, 3, "softmax", rng=np.random.default_rng(0))
    message = str(info.value)
    assert "\n" not in message
    return message


def digits_spec(layers: list[Any], **train: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "cnn",
        "data": {"dataset": "digits"},
        "model": {"layers": layers},
    }
    if train:
        spec["train"] = train
    return spec


# --------------------------------------------------------------------------- dask


def require_dask() -> None:
    """Fail under CI=true (make install installs the dask extra), skip elsewhere, when
    dask.distributed is missing."""
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("dask.distributed is not installed: pip install -e '.[test,dask]'")
        pytest.skip("dask.distributed is not installed (pip install -e '.[dask]')")


@contextlib.contextmanager
def loopback_cluster() -> Iterator[str]:
    """A Dask LocalCluster (one single-threaded worker, in this process) on 127.0.0.1 over tcp,
    reached by its address like a remote one: yields the scheduler address; closed after."""
    require_dask()
    from dask.distributed import LocalCluster

    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        host="127.0.0.1",
        protocol="tcp",
        dashboard_address=None,
    ) as cluster:
        yield cluster.scheduler_address


def require_shared_fashion(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point $SCRATCHNN_DATA at the shared Fashion-MNIST; skip when it is missing (the course
    data is never committed, so a clone without ../shared/data runs without these tests)."""
    if not (SHARED_DATA / "fashion-mnist").is_dir():
        pytest.skip(f"shared Fashion-MNIST not available at {SHARED_DATA / 'fashion-mnist'}")
    monkeypatch.setenv("SCRATCHNN_DATA", str(SHARED_DATA))
