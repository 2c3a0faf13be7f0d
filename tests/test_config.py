"""config/: specs and --set values as read. Careless or hostile input (alias bombs, deep nesting,
files that are no regular file or too large, bad --set YAML) is refused at once with one
``error:`` line and exit code 2, never a traceback, minutes of work or a MemoryError; whole numbers
written 1e3 are integers; data.target is for CSV files only."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import (
    SMALL_CONFIG,
    TINY_SWEEP,
    assert_nothing_ran,
    assert_one_line_error,
    invoke,
    make_config,
    train_here,
    write_config,
)

from scratchnn_cli.assembly import check_compatible
from scratchnn_cli.config import ExperimentConfig, load_config, validate_config
from scratchnn_cli.data import load_dataset
from scratchnn_cli.errors import ConfigError
from scratchnn_cli.experiment import run_experiment
from scratchnn_cli.yaml_limits import (
    MAX_CONFIG_BYTES,
    MAX_YAML_DEPTH,
    MAX_YAML_VALUES,
    YAMLLimitError,
    bounded_safe_load,
)

BASE = SMALL_CONFIG.format(name="limits", max_iterations=100)


def laughs(levels: int = 9, width: int = 10, indent: str = "") -> str:
    """A YAML alias bomb: ``width`` ** ``levels`` values (1e9 by default) from ~300 bytes, as
    block lines ``l0: &l0 [x, ...]``, ``l1: &l1 [*l0, ...]``, ..., each prefixed by ``indent``."""
    lines = [f"l0: &l0 [{', '.join(['x'] * width)}]"]
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    return "".join(f"{indent}{line}\n" for line in lines)


def nested(depth: int) -> str:
    """A flow list ``depth`` levels deep: ``[[[...]]]``."""
    return "[" * depth + "]" * depth


# --------------------------------------------------------------------------- alias bombs

BOMB_MESSAGE = f"expands to more than {MAX_YAML_VALUES:,} values"


def test_an_alias_bomb_in_a_sweep_grid_is_refused_at_once(tmp_path: Path) -> None:
    grid = "sweep:\n  grid:\n    train.lr:\n" + laughs(indent="      - ")
    config = write_config(tmp_path, TINY_SWEEP + grid)
    start = time.perf_counter()
    line = assert_one_line_error(invoke("sweep", config, "--runs-dir", tmp_path / "runs"))
    assert time.perf_counter() - start < 5
    assert f"{config}:" in line and BOMB_MESSAGE in line, line
    assert_nothing_ran(tmp_path)


def test_an_alias_bomb_anywhere_in_a_spec_is_refused(tmp_path: Path) -> None:
    bomb = laughs(indent="  ").replace(
        "  l8: &l8", "  classes: &l8"
    )  # the last level: data.classes
    config = write_config(tmp_path, "name: b\ndata:\n  dataset: blobs400\n" + bomb)
    line = assert_one_line_error(train_here(config))
    assert BOMB_MESSAGE in line, line
    assert_nothing_ran(tmp_path)


def test_an_alias_bomb_in_a_set_value_is_refused(tmp_path: Path) -> None:
    levels = ["&a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for name, previous in zip("bcdefghi", "abcdefgh", strict=True):
        levels.append(f"&{name} [{', '.join([f'*{previous}'] * 10)}]")
    config = write_config(tmp_path, BASE)
    line = assert_one_line_error(train_here(config, "--set", f"data.classes=[{', '.join(levels)}]"))
    assert line.startswith("error: --set 'data.classes=[&a") and BOMB_MESSAGE in line, line
    assert len(line) < 300, line  # the long value is cut short in the message


def test_a_collection_holding_itself_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path, BASE + "  l2: &me [0, *me]\n")
    line = assert_one_line_error(train_here(config))
    assert f"{config}:13:" in line and "holds itself" in line, line


def test_aliases_within_the_budget_still_work() -> None:
    text = "base: &b {lr: 0.1, l2: [1, 2]}\ncopies: [*b, *b, *b]\n"
    assert bounded_safe_load(text)["copies"] == [{"lr": 0.1, "l2": [1, 2]}] * 3
    # 1 + 2 keys + 1,000 (a) + 1 + 98 x 1,000 (b) = 99,004 values once expanded: accepted
    near = "a: &a [" + ", ".join(["0"] * 999) + "]\nb: [" + ", ".join(["*a"] * 98) + "]\n"
    assert len(bounded_safe_load(near)["b"]) == 98
    with pytest.raises(YAMLLimitError, match="expands to more than 100,000 values"):
        bounded_safe_load(near.replace("*a]", "*a, *a]"))  # 100,004


# --------------------------------------------------------------------------- deep nesting


def test_a_list_nested_5000_deep_in_the_file_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path, BASE.replace("struct: [3]", f"struct: {nested(5000)}"))
    line = assert_one_line_error(train_here(config))
    # the first '[' past the limit: the top mapping and model: are the first two levels
    column = len("  struct: ") + (MAX_YAML_DEPTH - 2) + 1
    assert f"{config}:7:{column}: the YAML document is nested deeper than 50 levels" in line, line
    assert_nothing_ran(tmp_path)


def test_a_list_nested_5000_deep_in_a_set_value_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path, BASE)
    line = assert_one_line_error(train_here(config, "--set", f"model.struct={nested(5000)}"))
    assert "--set 'model.struct=[[[" in line and "nested deeper than 50 levels" in line, line


def test_deep_nesting_built_from_aliases_is_refused() -> None:
    text = f"a: &a {nested(30)}\nb: " + "[" * 30 + "*a" + "]" * 30 + "\n"
    with pytest.raises(YAMLLimitError, match="nested deeper than 50 levels"):
        bounded_safe_load(text)


def test_the_depth_limit_is_exact() -> None:
    value, depth = bounded_safe_load(nested(MAX_YAML_DEPTH)), 1
    while value != []:  # [[[...[]...]]]: one list inside the other, down to the empty one
        (value,) = value
        depth += 1
    assert depth == MAX_YAML_DEPTH
    with pytest.raises(YAMLLimitError, match="nested deeper"):
        bounded_safe_load(nested(MAX_YAML_DEPTH + 1))


def test_a_set_key_path_deeper_than_the_limit_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path, BASE)
    line = assert_one_line_error(train_here(config, "--set", ".".join(["a"] * 5000) + "=1"))
    assert "the key path has more than 50 parts" in line, line


# --------------------------------------------------------------------------- files


def test_a_character_device_as_the_config_is_refused(tmp_path: Path) -> None:
    line = assert_one_line_error(invoke("train", os.devnull, "--runs-dir", tmp_path / "runs"))
    assert "config /dev/null is a character device, not a regular file" in line, line


def test_a_directory_as_the_config_is_refused(tmp_path: Path) -> None:
    line = assert_one_line_error(invoke("gradcheck", tmp_path))
    assert f"config {tmp_path} is a directory, not a regular file" in line, line


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_as_the_config_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)

    def unblock() -> None:  # were the FIFO opened for reading, this ends the wait (empty text)
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # no reader: nothing waits
            pass

    rescue = threading.Timer(5, unblock)
    rescue.start()
    try:
        line = assert_one_line_error(invoke("gradcheck", fifo))
    finally:
        rescue.cancel()
    assert "is a FIFO (named pipe), not a regular file" in line, line


def test_a_config_larger_than_the_cap_is_refused_unread(tmp_path: Path) -> None:
    config = tmp_path / "huge.yaml"
    with config.open("wb") as f:  # sparse: no time or disk spent
        f.truncate(MAX_CONFIG_BYTES + 1)
    line = assert_one_line_error(invoke("gradcheck", config))
    assert f"config {config} is larger than 1 MiB" in line, line


def test_a_config_at_the_cap_is_read(tmp_path: Path) -> None:
    padding = "#" * (MAX_CONFIG_BYTES - len(BASE) - 1) + "\n"
    config = write_config(tmp_path, BASE + padding)
    assert config.stat().st_size == MAX_CONFIG_BYTES
    assert load_config(config).name == "limits"


# --------------------------------------------------------------------------- 1e3 for an int

# every integer key of the spec: (--set items that make the key meaningful, the key, reader)
INT_KEYS = [
    ([], "seed", lambda c: c.seed),
    ([], "data.seed", lambda c: c.data.seed),
    ([], "data.train_size", lambda c: c.data.train_size),
    (["data.dataset=digits"], "data.augment.shift", lambda c: c.data.augment.shift),
    (["data.cv.folds=3"], "data.cv.fold", lambda c: c.data.cv.fold),
    ([], "data.cv.folds", lambda c: c.data.cv.folds),
    (["data.dataset=digits"], "data.image_shape", lambda c: c.data.image_shape),
    ([], "model.struct", lambda c: c.model.struct),
    ([], "train.max_iterations", lambda c: c.train.max_iterations),
    ([], "train.max_epochs", lambda c: c.train.max_epochs),
    ([], "train.batch_size", lambda c: c.train.batch_size),
    ([], "train.eval_every", lambda c: c.train.eval_every),
    ([], "train.checkpoint_every", lambda c: c.train.checkpoint_every),
    ([], "train.early_stopping.patience", lambda c: c.train.early_stopping.patience),
    (
        ["train.lr_schedule.name=step"],
        "train.lr_schedule.every",
        lambda c: c.train.lr_schedule.every,
    ),
    (
        ["train.lr_schedule.name=cosine"],
        "train.lr_schedule.epochs",
        lambda c: c.train.lr_schedule.epochs,
    ),
]
LAYER_INTS = ["units", "filters", "kernel", "stride", "size"]


def whole(key: str, text: str) -> str:
    """``key=text``, as a list of two for the list-valued keys."""
    return (
        f"{key}=[{text}, {text}]"
        if key in ("model.struct", "data.image_shape")
        else f"{key}={text}"
    )


@pytest.mark.parametrize(("before", "key", "read"), INT_KEYS, ids=[k for _, k, _ in INT_KEYS])
def test_a_whole_number_in_e_notation_is_accepted_for_every_int_key(
    before: list[str], key: str, read: Callable[[ExperimentConfig], Any], tmp_path: Path
) -> None:
    config = write_config(tmp_path, BASE)
    value = 8 if key == "data.image_shape" else 2
    got = read(load_config(config, [*before, whole(key, f"{value}e0")]))
    assert got in (value, [value, value]), got
    with pytest.raises(ConfigError, match="fractional part|must be a positive whole number"):
        load_config(config, [*before, whole(key, f"{value}.5")])


@pytest.mark.parametrize("key", LAYER_INTS)
def test_a_whole_number_in_e_notation_is_accepted_in_layers(key: str, tmp_path: Path) -> None:
    layer = {"units": "dense", "filters": "conv2d", "kernel": "conv2d"}.get(key, "maxpool2d")
    spec = yaml.safe_load(BASE)
    spec["data"]["dataset"] = "digits"
    del spec["model"]["struct"]
    extra = {"conv2d": {"filters": 2}, "dense": {"units": 2}}.get(layer, {})
    spec["model"]["layers"] = [{"type": layer, **extra, key: "2e0"}, "flatten"]
    config = write_config(tmp_path, yaml.safe_dump(spec))
    assert getattr(load_config(config).model.layers[0], key) == 2


def test_set_seed_1e3_trains_from_the_command_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, BASE)
    assert load_config(config, ["seed=1e3"]).seed == 1000
    result = invoke("summary", config, "--set", "seed=1e3")
    assert result.exit_code == 0, result.output
    line = assert_one_line_error(invoke("summary", config, "--set", "seed=1.5e0"))
    assert "seed:" in line and "fractional part" in line, line


# --------------------------------------------------------------------------- data.target


@pytest.mark.parametrize("dataset", ["blobs400", "circles500", "digits", "fashion-mnist"])
def test_a_target_for_a_built_in_dataset_is_refused(dataset: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, BASE.replace("blobs400", dataset))
    line = assert_one_line_error(train_here(config, "--set", "data.target=label"))
    assert f"data.target: {dataset} is a built-in dataset with fixed labels" in line, line
    assert_nothing_ran(tmp_path)


@pytest.mark.parametrize("dataset", ["blobs400", "circles500"])
def test_target_class_of_the_course_built_ins_is_accepted(dataset: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, BASE.replace("blobs400", dataset))
    assert load_config(config, ["data.target=Class"]).data.target == "Class"


# --------------------------------------------------------------------------- bad --set YAML


def test_bad_yaml_in_a_set_value_names_the_set_item(tmp_path: Path) -> None:
    config = write_config(tmp_path, BASE)
    line = assert_one_line_error(train_here(config, "--set", "model.struct=[10"))
    assert line.startswith("error: --set 'model.struct=[10': the value is not valid YAML"), line
    assert "expected ',' or ']'" in line and str(config) not in line, line
    assert_nothing_ran(tmp_path)


def test_an_impossible_date_in_a_set_value_is_still_text(tmp_path: Path) -> None:
    config = write_config(tmp_path, BASE)
    assert load_config(config, ["name=2001-13-01"]).name == "2001-13-01"


# --------------------------------------------------------------------------- training sections


def refused(train_section: dict[str, Any], match: str, **top: Any) -> str:
    """The message of the ConfigError the spec gets; it must match ``match`` (a regex)."""
    raw = {"data": {"dataset": "blobs400"}, "train": train_section, **top}
    with pytest.raises(ConfigError, match=match) as info:
        validate_config(raw, "spec.yaml")
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
    validate_config(
        {"data": {"dataset": "blobs400"}, "train": {"lr_schedule": "cosine", "max_epochs": 5}}, "s"
    )
    validate_config(
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
