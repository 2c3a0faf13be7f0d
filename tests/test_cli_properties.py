"""Property-based tests of ``scratchnn train`` (in-process, via CliRunner): whatever config,
``--set`` overrides or CSV file it is given, the CLI ends with a documented exit code (0 ok,
2 bad input, 3 diverged), never shows a traceback, refuses bad input with exactly one error
line and no run folder, and never leaves a run folder whose run.json says "running".
"""

from __future__ import annotations

import copy
import csv
import io
import json
import re
import signal
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import run_folders
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from typer.testing import CliRunner, Result

from scratchnn_cli.cli import app
from scratchnn_cli.config import load_config
from scratchnn_cli.errors import ConfigError

SETTINGS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# --------------------------------------------------------------------------- the checks


def check_outcome(result: Result, runs_dir: Path) -> None:
    """The promises of ``train`` for any input at all (even keys or column names holding
    line breaks: the error must still be one line)."""
    output = result.output
    if currently_in_test_context():
        event(f"exit code {result.exit_code}")  # shown by --hypothesis-show-statistics
    assert result.exit_code in (0, 2, 3), output
    assert "Traceback" not in output, output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    folders = run_folders(runs_dir)
    if result.exit_code == 2:
        lines = [line for line in re.split(r"[\n\r]", output) if line.strip()]
        assert len(lines) == 1, output
        assert lines[0].startswith("error:"), output
        assert result.stdout == "", result.stdout
        assert folders == [], folders
        return
    assert len(folders) == 1, (folders, output)
    info = json.loads((folders[0] / "run.json").read_text(encoding="utf-8"))
    expected = "completed" if result.exit_code == 0 else "diverged"
    assert info["status"] == expected, (info["status"], output)
    assert (folders[0] / "model.npz").is_file()
    assert result.stdout.rstrip().splitlines()[-1] == str(folders[0])


def budget_overrides(config: Path, overrides: list[str]) -> list[str]:
    """Extra ``--set``s that keep a *valid* config quick (a mutation may remove
    ``max_iterations``, whose default is a million, or ask for a huge network)."""
    try:
        spec = load_config(config, list(overrides))
    except ConfigError:
        return []  # refused before any training (train exits 2): nothing to bound
    extra = []
    if spec.train.max_iterations > 300:
        extra.append("train.max_iterations=300")
    if len(spec.model.struct) > 3 or sum(spec.model.struct) > 48:
        extra.append("model.struct=[4]")
    if spec.train.checkpoint_every is not None and spec.train.checkpoint_every < 25:
        extra.append("train.checkpoint_every=25")
    return extra


def train(config: Path, overrides: list[str], runs_dir: Path) -> Result:
    overrides = [*overrides, *budget_overrides(config, overrides)]
    args = ["train", str(config), *(f"--set={item}" for item in overrides)]
    previous = signal.getsignal(signal.SIGTERM)  # train turns SIGTERM into Ctrl-C
    try:
        return CliRunner().invoke(app, [*args, "--runs-dir", str(runs_dir)])
    finally:
        signal.signal(signal.SIGTERM, previous)


# --------------------------------------------------------------------------- configs

# small, valid starting points: a few hundred updates on the built-in datasets
BASES: list[dict[str, Any]] = [
    {
        "name": "blobs",
        "seed": 0,
        "data": {"dataset": "blobs400", "target": "Class", "split": [0.5, 0.25, 0.25]},
        "model": {"struct": [3], "activation": "sigmoid", "sigma": 0.5},
        "train": {"lr": 0.05, "eps": 0, "max_iterations": 200},
    },
    {
        "name": "circles",
        "seed": 1,
        "data": {"dataset": "circles500", "split": [0.6, 0.2, 0.2]},
        "model": {"struct": [4], "activation": "tanh", "init": "xavier"},
        "train": {
            "lr": 0.05,
            "eps": 1.0e-6,
            "batch_size": 8,
            "optimizer": {"name": "adam", "beta1": 0.9},
            "early_stopping": {"patience": 2, "monitor": "val_accuracy"},
            "max_iterations": 150,
        },
    },
    {
        "name": "digits",
        "seed": 2,
        "data": {"dataset": "digits", "classes": [0, 1, 7], "train_on": "train"},
        "model": {"struct": [8], "activation": "relu", "init": "he", "dropout": 0.1},
        "train": {
            "lr": 0.05,
            "batch_size": 32,
            "sampling": "shuffle",
            "l2": 0.001,
            "lr_schedule": {"name": "step", "every": 2},
            "eval_every": 2,
            "max_iterations": 60,
        },
    },
]

# every key path of the schema, and the values the enumerations accept
KEY_PATHS = [
    "name",
    "seed",
    "data",
    "data.dataset",
    "data.target",
    "data.split",
    "data.classes",
    "data.train_size",
    "data.train_on",
    "model",
    "model.struct",
    "model.activation",
    "model.output",
    "model.init",
    "model.mu",
    "model.sigma",
    "model.dropout",
    "model.dtype",
    "train",
    "train.lr",
    "train.eps",
    "train.max_iterations",
    "train.max_epochs",
    "train.batch_size",
    "train.sampling",
    "train.optimizer",
    "train.optimizer.name",
    "train.optimizer.beta",
    "train.optimizer.beta1",
    "train.optimizer.beta2",
    "train.optimizer.epsilon",
    "train.optimizer.weight_decay",
    "train.lr_schedule",
    "train.lr_schedule.name",
    "train.lr_schedule.drop",
    "train.lr_schedule.every",
    "train.lr_schedule.gamma",
    "train.lr_schedule.lr_min",
    "train.lr_schedule.epochs",
    "train.l1",
    "train.l2",
    "train.early_stopping",
    "train.early_stopping.monitor",
    "train.early_stopping.patience",
    "train.early_stopping.min_delta",
    "train.early_stopping.restore_best",
    "train.eval_every",
    "train.checkpoint_every",
]
VALID_CHOICES: dict[str, list[Any]] = {
    "data.dataset": ["blobs400", "circles500", "digits"],
    "data.train_on": ["train", "train+val"],
    "data.split": [[0.5, 0.25, 0.25], [0.7, 0.3, 0.0], [1, 0, 0], [0.8, 0.1, 0.1]],
    "model.struct": [[], [2], [5, 3], [1, 1, 1]],
    "model.activation": ["sigmoid", "tanh", "relu", "leaky_relu"],
    "model.output": ["auto", "sigmoid", "softmax"],
    "model.init": ["normal", "xavier", "he"],
    "model.dtype": ["float64", "float32"],
    "model.dropout": [0.0, 0.5, 0.9],
    "train.lr": [1e-4, 0.5, 10.0, 1e4],
    "train.batch_size": [1, 7, "full", 10_000],
    "train.sampling": ["random", "shuffle"],
    "train.optimizer": ["sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"],
    "train.optimizer.name": ["sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"],
    "train.lr_schedule": ["constant", "step", "exponential", "cosine"],
    "train.lr_schedule.name": ["constant", "step", "exponential", "cosine"],
    "train.early_stopping": [None, {"patience": 1}, {"monitor": "val_cost", "min_delta": 0.1}],
    "train.early_stopping.monitor": ["val_cost", "val_accuracy"],
    "train.max_epochs": [1, 3],
    "train.eps": [0, 1e-3, 10],
    "train.l1": [0, 0.01],
    "train.checkpoint_every": [25, 1000],
}

SPECIAL_VALUES: list[Any] = [
    0,
    -1,
    1,
    2,
    0.5,
    1e-12,
    1e300,
    -1e300,
    10**30,
    float("nan"),
    float("inf"),
    float("-inf"),
    "nan",
    ".inf",
    "-.inf",
    "1e6",
    "1e-3",
    "full",
    "",
    " ",
    "~",
    "yes",
    "adam",
    "relu",
    "cosine",
    "train+val",
    "val_accuracy",
    "float32",
    "fashion_mnist",
    "no/such/file.csv",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(SPECIAL_VALUES),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=4),
    st.dictionaries(st.text(max_size=8), scalars, max_size=3),
)
key_paths = st.one_of(
    st.sampled_from(KEY_PATHS),
    st.builds(
        lambda section, key: f"{section}.{key}" if section else key,
        st.sampled_from(["", "data", "model", "train", "train.optimizer", "train.lr_schedule"]),
        st.text(max_size=10),
    ),
)


def set_path(raw: dict[str, Any], path: str, value: Any) -> None:
    node = raw
    parts = path.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def delete_path(raw: dict[str, Any], path: str) -> None:
    node: Any = raw
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(parts[-1], None)


mutations = st.one_of(
    st.tuples(st.just("delete"), st.sampled_from(KEY_PATHS)),
    st.tuples(st.just("set"), key_paths, values),
    st.tuples(st.just("set"), st.sampled_from(sorted(VALID_CHOICES)), st.text(max_size=12)),
    st.sampled_from(sorted(VALID_CHOICES)).flatmap(
        lambda path: st.tuples(st.just("set"), st.just(path), st.sampled_from(VALID_CHOICES[path]))
    ),
)


def yaml_value_text(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True).strip()
    return text.removesuffix("...").strip()


# dates and times PyYAML recognises as timestamps but may fail to build (2001-13-01)
date_like = st.builds(
    lambda year, month, day, time: f"{year:04d}-{month:02d}-{day:02d}{time}",
    st.integers(0, 9999),
    st.integers(0, 99),
    st.integers(0, 99),
    st.sampled_from(["", " 25:00:00", "T10:61:00", " 10:00:00+25:00", "T23:59:59Z"]),
)

overrides = st.lists(
    st.one_of(
        st.builds(lambda k, v: f"{k}={yaml_value_text(v)}", key_paths, values),
        st.builds(lambda k, v: f"{k}={v}", key_paths, date_like),
        st.sampled_from(sorted(VALID_CHOICES)).flatmap(
            lambda path: st.sampled_from(VALID_CHOICES[path]).map(
                lambda v: f"{path}={yaml_value_text(v)}"
            )
        ),
        st.text(max_size=20),  # anything at all, '=' or not
    ),
    max_size=3,
)


@pytest.mark.slow
@SETTINGS
@given(
    base=st.sampled_from(BASES),
    changes=st.lists(mutations, max_size=4),
    sets=overrides,
)
def test_mutated_configs_end_cleanly(
    base: dict[str, Any], changes: list[tuple[Any, ...]], sets: list[str]
) -> None:
    raw = copy.deepcopy(base)
    for change in changes:
        if change[0] == "delete":
            delete_path(raw, change[1])
        else:
            set_path(raw, change[1], change[2])
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "exp.yaml"
        config.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        runs_dir = Path(folder) / "runs"
        check_outcome(train(config, sets, runs_dir), runs_dir)


@st.composite
def typo_yaml(draw: st.DrawFn) -> bytes:
    """A base config as YAML with a few characters deleted, inserted or replaced."""
    text = yaml.safe_dump(draw(st.sampled_from(BASES)), sort_keys=False)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["delete", "insert", "replace"]))
        char = draw(st.sampled_from(list(":-[]{},#&*!|>'\"%@` \t\n0123456789.eE")))
        if kind == "delete":
            text = text[:at] + text[at + 1 :]
        elif kind == "insert":
            text = text[:at] + char + text[at:]
        else:
            text = text[:at] + char + text[at + 1 :]
    return text.encode("utf-8")


raw_files = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.dictionaries(st.text(max_size=8), values, max_size=4).map(
        lambda d: yaml.safe_dump(d, allow_unicode=True).encode("utf-8")
    ),
    values.map(lambda v: yaml.safe_dump(v, allow_unicode=True).encode("utf-8")),
    typo_yaml(),
    st.builds(
        lambda base, key, date: (yaml.safe_dump(base) + f"{key}: {date}\n").encode("utf-8"),
        st.sampled_from(BASES),
        st.sampled_from(["seed", "name", "extra"]),
        date_like,
    ),
)


@pytest.mark.slow
@SETTINGS
@given(content=raw_files, sets=overrides)
def test_random_files_as_config_end_cleanly(content: bytes, sets: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "exp.yaml"
        config.write_bytes(content)
        runs_dir = Path(folder) / "runs"
        check_outcome(train(config, sets, runs_dir), runs_dir)


# --------------------------------------------------------------------------- CSV files

# '$' included on purpose: class names end up as matplotlib tick labels (mathtext)
CELL_ALPHABET = st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00")
messy_cells = st.one_of(
    st.sampled_from(["", "nan", "NA", "inf", "-inf", "1e400", "abc", "1,5", " ", "True", "$x^$"]),
    st.text(CELL_ALPHABET, max_size=6),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
clean_numbers = st.one_of(
    st.floats(-1e3, 1e3).map(repr),
    st.integers(-5, 5).map(str),
)


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[str, str | None]:
    """(CSV text, data.target): numeric feature columns and a label column, each maybe
    dirty; random shapes, from no rows and a single column up."""
    n_rows = draw(st.integers(0, 30))
    n_cols = draw(st.integers(1, 4))
    header = [
        draw(st.one_of(st.sampled_from(["x1", "x2", "x3", "label"]), st.text(max_size=5)))
        for _ in range(n_cols)
    ]
    classes = draw(
        st.one_of(
            st.lists(st.integers(-3, 3), min_size=1, max_size=4, unique=True),
            st.lists(st.text(CELL_ALPHABET, min_size=1, max_size=4), min_size=1, max_size=4),
            st.just(["yes", "no"]),
            st.just([0, 1]),
        )
    )
    columns = []
    for j in range(n_cols):
        is_label = j == n_cols - 1
        dirty = draw(st.integers(0, 4)) == 0
        cell = (
            messy_cells
            if dirty
            else st.sampled_from(classes).map(str)
            if is_label
            else clean_numbers
        )
        columns.append([draw(cell) for _ in range(n_rows)])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(zip(*columns, strict=True))
    target = draw(st.one_of(st.none(), st.sampled_from(header), st.text(max_size=5)))
    return buffer.getvalue(), target


@pytest.mark.slow
@SETTINGS
@given(
    data=csv_files(),
    split=st.sampled_from([[0.5, 0.25, 0.25], [0.6, 0.2, 0.2], [1, 0, 0], [0.8, 0.2, 0]]),
    struct=st.sampled_from([[], [3]]),
)
def test_random_csv_files_end_cleanly(
    data: tuple[str, str | None], split: list[float], struct: list[int]
) -> None:
    text, target = data
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.csv"
        path.write_text(text, encoding="utf-8")
        raw = {
            "name": "csv",
            "data": {"dataset": str(path), "split": split, "target": target},
            "model": {"struct": struct},
            "train": {"lr": 0.1, "eps": 0, "max_iterations": 100},
        }
        config = Path(folder) / "exp.yaml"
        config.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        runs_dir = Path(folder) / "runs"
        result = train(config, [], runs_dir)
        check_outcome(result, runs_dir)
        if result.exit_code in (0, 3):
            info = json.loads((run_folders(runs_dir)[0] / "run.json").read_text())
            classes = info["data"]["classes"]
            assert len(classes) >= 2 and len(set(classes)) == len(classes), classes
            assert all(isinstance(c, str) for c in classes), classes


# --------------------------------------------------------------------------- examples


def test_an_unknown_key_with_a_newline_is_one_error_line(tmp_path: Path) -> None:
    config = tmp_path / "exp.yaml"
    config.write_text('data: {dataset: blobs400}\n"bad\\nkey": 1\n', encoding="utf-8")
    result = train(config, [], tmp_path / "runs")
    assert result.exit_code == 2, result.output
    check_outcome(result, tmp_path / "runs")


@pytest.mark.parametrize("key, value", [("target", "a\nb"), ("dataset", "no\nsuch")])
def test_a_name_with_a_newline_is_one_error_line(tmp_path: Path, key: str, value: str) -> None:
    data = tmp_path / "data.csv"
    data.write_text("x1,label\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    raw = {"data": {"dataset": str(data), key: value}}
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = train(config, [], tmp_path / "runs")
    assert result.exit_code == 2, result.output
    check_outcome(result, tmp_path / "runs")
