"""Tests for the ``scratchnn`` command line: refused configs, run folders, evaluate (its splits,
folders it cannot write, changed data, NaN weights), --version and the --help pages, internal
errors and train's arguments."""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime, tzinfo
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import (
    CONFIGS,
    PNG_SIGNATURE,
    SMALL_CONFIG,
    assert_one_line_error,
    csv_run,
    invoke,
    only_run,
    read_json,
    run_folders,
    write_config,
)
from typer.testing import Result

from scratchnn_cli import __version__, runs
from scratchnn_cli.config import apply_overrides, load_config
from scratchnn_cli.data import load_dataset

# --------------------------------------------------------------------------- refused configs


def _bad_yaml(tmp_path: Path, body: str) -> Path:
    return write_config(tmp_path, "name: bad\nseed: 0\n" + body)


# a conv2d layer on digits, its kernel to be added (block style: the bodies go through format)
CONV_ON_DIGITS = (
    "data:\n  dataset: digits\nmodel:\n  layers:\n    - type: conv2d\n      filters: 4\n"
)

REFUSED = {
    # id: (config text after name/seed, extra args, substrings the message must hold)
    "unknown-key": (
        "data:\n  dataset: blobs400\ntrain:\n  lrr: 0.1\n",
        [],
        ["train.lrr", "unknown key", "did you mean 'lr'"],
    ),
    "unknown-section": (
        "data:\n  dataset: blobs400\nmodle:\n  struct: [3]\n",
        [],
        ["modle", "did you mean 'model'"],
    ),
    "wrong-type": ("data:\n  dataset: blobs400\ntrain:\n  lr: abc\n", [], ["train.lr", "abc"]),
    "negative-lr": (
        "data:\n  dataset: blobs400\ntrain:\n  lr: -0.1\n",
        [],
        ["train.lr", "greater than 0"],
    ),
    "split-sum": (
        "data:\n  dataset: blobs400\n  split: [0.5, 0.3, 0.3]\n",
        [],
        ["data.split", "sum to 1"],
    ),
    "struct-zero": (
        "data:\n  dataset: blobs400\nmodel:\n  struct: [4, 0]\n",
        [],
        ["model.struct"],
    ),
    "missing-csv": ("data:\n  dataset: {tmp}/nowhere.csv\n", [], ["data.dataset", "nowhere.csv"]),
    "unknown-dataset": (
        "data:\n  dataset: blobs40\n",
        [],
        ["data.dataset", "blobs40", "did you mean 'blobs400'"],
    ),
    "missing-data": ("model:\n  struct: [3]\n", [], ["data", "missing"]),
    "set-without-equals": (
        "data:\n  dataset: blobs400\n",
        ["--set", "train.lr"],
        ["--set", "train.lr", "key.path=value"],
    ),
    "set-bad-value": ("data:\n  dataset: blobs400\n", ["--set", "train.lr=-1"], ["train.lr"]),
    "seed-bool": ("data:\n  dataset: blobs400\n", ["--set", "seed=true"], ["seed", "boolean"]),
    "data-seed-bool": (
        "data:\n  dataset: blobs400\n",
        ["--set", "data.seed=true"],
        ["data.seed", "boolean"],
    ),
    "name-too-long": (
        "data:\n  dataset: blobs400\n",
        ["--set", "name=" + "x" * 300],
        ["name", "at most 100 characters"],
    ),
    "kernel-zero": (
        CONV_ON_DIGITS + "      kernel: 0\n",
        [],
        ["model.layers.0.kernel: must be a positive whole number or a list [height, width]"],
    ),
    "kernel-list-of-one": (
        CONV_ON_DIGITS + "      kernel: [3]\n",
        [],
        ["model.layers.0.kernel: must be a positive whole number or a list [height, width]"],
    ),
    "classes-bool": (
        "data:\n  dataset: blobs400\n",
        ["--set", "data.classes=[true, false]"],
        ["data.classes.0", "boolean true"],
    ),
    "set-empty-key-part": (
        "data:\n  dataset: blobs400\n",
        ["--set", "train..lr=0.1"],
        ["--set 'train..lr=0.1': empty part in the key path"],
    ),
    "duplicate-key": (
        "data:\n  dataset: blobs400\ntrain:\n  lr: 0.1\n  lr: 0.5\n",
        [],
        ["exp.yaml:7:3:", "duplicate key 'lr'"],
    ),
    "sigmoid-output-for-10-classes": (
        "data:\n  dataset: digits\nmodel:\n  output: sigmoid\n",
        [],
        ["model.output", "2 classes"],
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_config_exits_2_with_one_line(case: str, tmp_path: Path) -> None:
    body, extra, expected = REFUSED[case]
    config = _bad_yaml(tmp_path, body.format(tmp=tmp_path))
    runs_dir = tmp_path / "runs"
    result = invoke("train", config, "--runs-dir", runs_dir, *extra)
    line = assert_one_line_error(result)
    for text in expected:
        assert text in line, line
    assert run_folders(runs_dir) == []


def test_yaml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    config = write_config(tmp_path, "seed: 0\ndata:\n  dataset: blobs400: x\n")
    runs_dir = tmp_path / "runs"
    line = assert_one_line_error(invoke("train", config, "--runs-dir", runs_dir))
    match = re.search(re.escape(str(config)) + r":(\d+):(\d+):", line)
    assert match, line
    assert int(match.group(1)) == 3  # the offending line
    assert int(match.group(2)) > 1
    assert "YAML" in line
    assert run_folders(runs_dir) == []


def test_unclosed_bracket_is_a_yaml_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, "data:\n  dataset: blobs400\n  split: [0.5, 0.25\n")
    line = assert_one_line_error(invoke("train", config, "--runs-dir", tmp_path / "runs"))
    assert re.search(re.escape(str(config)) + r":\d+:\d+: YAML syntax error", line), line
    assert run_folders(tmp_path / "runs") == []


INVALID_DATES = ["2001-13-01", "2001-02-30", "2001-01-01 25:00:00", "2001-01-01T10:00:00+25:00"]


@pytest.mark.parametrize("value", INVALID_DATES)
def test_invalid_yaml_date_in_the_file_names_the_file_and_line(value: str, tmp_path: Path) -> None:
    text = SMALL_CONFIG.format(name="d", max_iterations=100).replace("seed: 0", f"seed: {value}")
    config = write_config(tmp_path, text)
    line = assert_one_line_error(invoke("train", config, "--runs-dir", tmp_path / "runs"))
    assert "internal error" not in line
    match = re.search(re.escape(str(config)) + r":(\d+):(\d+): invalid YAML value", line)
    assert match, line
    assert (int(match.group(1)), int(match.group(2))) == (2, 7)  # "seed: " is 6 characters
    assert repr(value) in line
    assert run_folders(tmp_path / "runs") == []


def test_invalid_yaml_date_deep_in_the_file_is_located(tmp_path: Path) -> None:
    text = SMALL_CONFIG.format(name="d", max_iterations=100) + "  l2: [0, 2001-13-01]\n"
    config = write_config(tmp_path, text)
    line = assert_one_line_error(invoke("gradcheck", config))
    assert f"{config}:13:11:" in line and "month must be in 1..12" in line, line


@pytest.mark.parametrize("value", INVALID_DATES)
def test_invalid_yaml_date_in_set_is_checked_as_text(value: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, max_iterations=100)
    runs_dir = tmp_path / "runs"
    line = assert_one_line_error(
        invoke("train", config, "--runs-dir", runs_dir, "--set", f"seed={value}")
    )
    assert "internal error" not in line
    assert "seed" in line and repr(value) in line, line  # the schema's word on the raw text
    assert run_folders(runs_dir) == []


def test_set_keeps_an_invalid_date_as_its_text(tmp_path: Path) -> None:
    config = write_config(tmp_path, max_iterations=100)
    assert load_config(config, ["name=2001-13-01"]).name == "2001-13-01"
    assert apply_overrides({}, ["a.b=2001-02-30"]) == {"a": {"b": "2001-02-30"}}


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    line = assert_one_line_error(invoke("train", missing, "--runs-dir", tmp_path / "runs"))
    assert "not found" in line and "nope.yaml" in line
    assert run_folders(tmp_path / "runs") == []


def test_config_that_is_not_a_mapping(tmp_path: Path) -> None:
    config = write_config(tmp_path, "- just\n- a list\n")
    line = assert_one_line_error(invoke("train", config, "--runs-dir", tmp_path / "runs"))
    assert "exp.yaml" in line
    assert run_folders(tmp_path / "runs") == []


def test_bad_csv_is_refused_before_the_run_folder(tmp_path: Path) -> None:
    csv = tmp_path / "data.csv"
    csv.write_text("a,b,label\n1,x,0\n2,3,1\n4,5,0\n6,7,1\n", encoding="utf-8")
    config = _bad_yaml(tmp_path, f"data:\n  dataset: {csv}\n")
    line = assert_one_line_error(invoke("train", config, "--runs-dir", tmp_path / "runs"))
    assert "data.csv" in line and "'b'" in line
    assert run_folders(tmp_path / "runs") == []


def test_augmenting_a_tabular_csv_is_refused_before_the_run_folder(tmp_path: Path) -> None:
    csv = tmp_path / "data.csv"
    csv.write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40)))
    config = _bad_yaml(tmp_path, f"data:\n  dataset: {csv}\n  augment: {{hflip: true}}\n")
    line = assert_one_line_error(invoke("train", config, "--runs-dir", tmp_path / "runs"))
    assert line == f"error: data.augment: {csv} is not image data", line
    assert run_folders(tmp_path / "runs") == []


def test_a_shift_too_large_for_a_csvs_images_is_refused_before_the_run_folder(
    tmp_path: Path,
) -> None:
    csv = tmp_path / "pixels.csv"
    pixels = [f"p{i}" for i in range(16)]
    rows = "".join(",".join(str((i * j) % 7) for j in range(16)) + f",{i % 2}\n" for i in range(40))
    csv.write_text(",".join([*pixels, "label"]) + "\n" + rows, encoding="utf-8")
    body = f"data:\n  dataset: {csv}\n  image_shape: [1, 4, 4]\n  augment: {{shift: 2}}\n"
    result = invoke("train", _bad_yaml(tmp_path, body), "--runs-dir", tmp_path / "runs")
    line = assert_one_line_error(result)  # was: exit 1, an internal error, a failed run folder
    assert "data.augment: shift: 2 must be below half the image size (4x4: at most 1)" in line
    assert run_folders(tmp_path / "runs") == []


def test_a_long_file_stem_is_cut_to_the_longest_name(tmp_path: Path) -> None:
    text = SMALL_CONFIG.format(name="x", max_iterations=10).replace("name: x\n", "")
    config = write_config(tmp_path, text, filename="s" * 200 + ".yaml")
    assert load_config(config).name == "s" * 100


# --------------------------------------------------------------------------- config resolution


@pytest.mark.slow
def test_eps_written_as_1e_8_is_the_number(tmp_path: Path) -> None:
    text = SMALL_CONFIG.format(name="eps", max_iterations=300).replace("eps: 0", "eps: 1e-8")
    assert yaml.safe_load(text)["train"]["eps"] == "1e-8"  # what PyYAML makes of it
    config = write_config(tmp_path, text)
    result = invoke("train", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    saved_text = (only_run(tmp_path / "runs") / "config.yaml").read_text(encoding="utf-8")
    saved = yaml.safe_load(saved_text)
    assert isinstance(saved["train"]["eps"], float)
    assert saved["train"]["eps"] == 1e-8
    assert re.search(r"^\s+eps: 1\.0e-08$", saved_text, flags=re.MULTILINE), saved_text


def test_set_overrides_show_up_in_the_resolved_config(tmp_path: Path) -> None:
    config = write_config(tmp_path, max_iterations=300)
    result = invoke(
        "train",
        config,
        "--runs-dir",
        tmp_path / "runs",
        "--set",
        "train.lr=0.01",
        "--set",
        "model.struct=[3]",
        "--set",
        "model.activation=tanh",
    )
    assert result.exit_code == 0, result.output
    run_dir = only_run(tmp_path / "runs")
    saved = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    assert saved["train"]["lr"] == 0.01
    assert saved["model"]["struct"] == [3]
    assert saved["model"]["activation"] == "tanh"
    assert saved["train"]["max_iterations"] == 300  # untouched keys keep the file's value
    info = read_json(run_dir / "run.json")
    assert info["network"]["sizes"] == [3, 3, 1]
    assert info["network"]["activation"] == "tanh"


def test_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    text = SMALL_CONFIG.format(name="x", max_iterations=200).replace("name: x\n", "")
    config = write_config(tmp_path, text, filename="my-spec.yaml")
    assert invoke("train", config, "--runs-dir", tmp_path / "runs").exit_code == 0
    run_dir = only_run(tmp_path / "runs")
    assert run_dir.name.endswith("-my-spec")
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["name"] == "my-spec"


# --------------------------------------------------------------------------- the run folder


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Result, Path]:
    """One completed training run shared by the read-only tests below."""
    tmp_path = tmp_path_factory.mktemp("cli")
    config = write_config(tmp_path, name="shared", max_iterations=1000)
    result = invoke("train", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    return result, only_run(tmp_path / "runs")


def test_run_folder_holds_every_file(finished_run: tuple[Result, Path]) -> None:
    _, run_dir = finished_run
    names = {p.name for p in run_dir.iterdir()}
    expected = {
        "config.yaml",
        "run.json",
        "history.csv",
        "metrics.json",
        "learning_curve.png",
        "confusion_matrix.png",
        "model.npz",
    }
    assert expected <= names
    assert not [n for n in names if n.endswith(".tmp")]  # no temp files left behind
    assert re.fullmatch(r"\d{8}-\d{6}-shared", run_dir.name)


def test_run_json_records_status_stop_data_and_versions(
    finished_run: tuple[Result, Path],
) -> None:
    _, run_dir = finished_run
    info = read_json(run_dir / "run.json")
    assert info["status"] == "completed"
    assert info["name"] == "shared"
    stop = info["stop"]
    assert stop["stopped_by"] == "max_iterations"
    assert stop["iterations"] == 1000
    assert stop["epochs"] == 5
    assert stop["reason"] == "reached max_iterations = 1,000 (after 5 epochs, 1,000 updates)"
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", info["data"]["fingerprint"])
    assert (info["data"]["n_train"], info["data"]["n_val"], info["data"]["n_test"]) == (
        200,
        100,
        100,
    )
    versions = info["versions"]
    assert versions["scratchnn"] == __version__
    assert versions["numpy"] == np.__version__
    assert {"python", "scikit-learn"} <= set(versions)
    assert info["network"]["sizes"] == [3, 3, 1]
    started = datetime.fromisoformat(info["started"])
    ended = datetime.fromisoformat(info["ended"])
    assert started.tzinfo is not None and started <= ended
    assert (ended - started).total_seconds() <= info["seconds"] + 2  # stamps are whole seconds


def test_history_csv_has_one_row_per_epoch(finished_run: tuple[Result, Path]) -> None:
    _, run_dir = finished_run
    history = pd.read_csv(run_dir / "history.csv")
    assert {"epoch", "iteration", "cost"} <= set(history.columns)
    assert len(history) == read_json(run_dir / "run.json")["stop"]["epochs"] == 5
    assert history["epoch"].tolist() == [1, 2, 3, 4, 5]
    assert history["iteration"].tolist() == [200, 400, 600, 800, 1000]
    assert np.isfinite(history["cost"]).all() and (history["cost"] > 0).all()


def accuracy_by_hand(run_dir: Path, split: str) -> float:
    """The accuracy of model.npz on a split of the run's data, with plain NumPy: the sigmoid
    hidden layer and the sigmoid output unit of SMALL_CONFIG written out."""
    config = load_config(run_dir / "config.yaml")
    X, y = load_dataset(config.data, config.seed).split(split)
    with np.load(run_dir / "model.npz") as model:
        A = 1.0 / (1.0 + np.exp(-(X @ model["W0"] + model["b0"])))
        z = (A @ model["W1"] + model["b1"])[:, 0]
    return float(np.mean((z > 0) == (y == 1)))


def test_metrics_json_has_accuracy_and_confusion_matrices(
    finished_run: tuple[Result, Path],
) -> None:
    result, run_dir = finished_run
    metrics = read_json(run_dir / "metrics.json")
    data = read_json(run_dir / "run.json")["data"]
    assert set(metrics) == {"train", "val", "test"}
    for split in ("train", "val", "test"):
        m = metrics[split]
        assert m["accuracy"] == accuracy_by_hand(run_dir, split)
        assert m["accuracy"] >= 0.9, split  # two well-separated blobs: chance is 0.5
        matrix = np.array(m["confusion_matrix"])
        assert matrix.shape == (2, 2)
        assert matrix.sum() == m["n"] == data[f"n_{split}"]
        assert np.trace(matrix) / matrix.sum() == pytest.approx(m["accuracy"])
        assert f"{split:>5} accuracy: {m['accuracy']:.4f}" in result.stdout


def test_pngs_are_real_images(finished_run: tuple[Result, Path]) -> None:
    _, run_dir = finished_run
    for name in ("learning_curve.png", "confusion_matrix.png"):
        data = (run_dir / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE), name
        assert len(data) > 5_000, name


def test_model_npz_holds_finite_weights_of_the_right_shapes(
    finished_run: tuple[Result, Path],
) -> None:
    _, run_dir = finished_run
    with np.load(run_dir / "model.npz", allow_pickle=False) as model:
        shapes = {key: model[key].shape for key in model.files}
        assert all(np.isfinite(model[key]).all() for key in model.files)
    assert shapes == {"W0": (3, 3), "b0": (3,), "W1": (3, 1), "b1": (1,)}


def test_run_path_is_the_last_line_of_stdout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a relative --runs-dir (still tmp_path / "runs") keeps the printed path short; long paths
    # are covered by the test below
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path, name="last", max_iterations=200)
    result = invoke("train", config, "--runs-dir", "runs")
    assert result.exit_code == 0, result.output
    run_dir = only_run(tmp_path / "runs")
    last = result.stdout.strip().splitlines()[-1]
    assert Path(last) == Path("runs") / run_dir.name
    assert (tmp_path / last / "run.json").is_file()


def test_long_run_path_is_still_the_last_line_of_stdout(tmp_path: Path) -> None:
    runs_dir = tmp_path / ("long-folder-name-" * 5) / "runs"
    config = write_config(tmp_path, name="long", max_iterations=200)
    result = invoke("train", config, "--runs-dir", runs_dir)
    assert result.exit_code == 0, result.output
    run_dir = only_run(runs_dir)
    assert len(str(run_dir)) > 80
    assert result.stdout.strip().splitlines()[-1] == str(run_dir)


def test_run_path_with_square_brackets_is_printed_verbatim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path, name="br", max_iterations=200)
    result = invoke("train", config, "--runs-dir", "runs[ab]")
    assert result.exit_code == 0, result.output
    run_dir = only_run(tmp_path / "runs[ab]")
    assert result.stdout.strip().splitlines()[-1] == f"runs[ab]/{run_dir.name}"


def test_error_message_keeps_square_brackets(tmp_path: Path) -> None:
    missing = tmp_path / "spec[v2].yaml"
    line = assert_one_line_error(invoke("train", missing, "--runs-dir", tmp_path / "runs"))
    assert "spec[v2].yaml" in line


@pytest.mark.slow
def test_two_runs_in_the_same_second_get_distinct_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class FrozenClock(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> datetime:
            return datetime(2030, 1, 2, 3, 4, 5, tzinfo=tz)

    monkeypatch.setattr(runs.folder, "datetime", FrozenClock)
    config = write_config(tmp_path, name="twice", max_iterations=200)
    runs_dir = tmp_path / "runs"
    first = invoke("train", config, "--runs-dir", runs_dir)
    second = invoke("train", config, "--runs-dir", runs_dir)
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    folders = run_folders(runs_dir)
    assert [f.name for f in folders] == ["20300102-030405-twice", "20300102-030405-twice-2"]
    for folder in folders:
        assert read_json(folder / "run.json")["status"] == "completed"
    # same config and seed: the same model, written to two places
    with np.load(folders[0] / "model.npz") as a, np.load(folders[1] / "model.npz") as b:
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.slow
def test_two_quick_runs_get_distinct_folders(tmp_path: Path) -> None:
    config = write_config(tmp_path, name="quick", max_iterations=100)
    runs_dir = tmp_path / "runs"
    for _ in range(2):
        assert invoke("train", config, "--runs-dir", runs_dir).exit_code == 0
    assert len(run_folders(runs_dir)) == 2


def test_diverged_run_exits_3_and_keeps_finite_weights(tmp_path: Path) -> None:
    text = (
        "name: boom\nseed: 0\ndata:\n  dataset: blobs400\n"
        "model:\n  struct: [5]\n  activation: leaky_relu\n  sigma: 10\n"
        "train:\n  lr: 1.0e+6\n  max_iterations: 2000\n"
    )
    config = write_config(tmp_path, text)
    result = invoke("train", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    run_dir = only_run(tmp_path / "runs")
    info = read_json(run_dir / "run.json")
    assert info["status"] == "diverged"
    assert info["stop"]["stopped_by"] == "diverged"
    with np.load(run_dir / "model.npz") as model:
        assert all(np.isfinite(model[key]).all() for key in model.files)
    assert (run_dir / "metrics.json").is_file()


# --------------------------------------------------------------------------- evaluate


@pytest.mark.parametrize("split", ["test", "val"])
def test_evaluate_reproduces_the_recorded_accuracy(
    finished_run: tuple[Result, Path], split: str
) -> None:
    _, run_dir = finished_run
    metrics = read_json(run_dir / "metrics.json")[split]
    args = ["evaluate", run_dir] + (["--split", split] if split != "test" else [])
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    evaluation = read_json(run_dir / f"evaluation-{split}.json")  # one file per split
    assert evaluation["split"] == split
    assert evaluation["accuracy"] == metrics["accuracy"]
    assert evaluation["confusion_matrix"] == metrics["confusion_matrix"]
    assert evaluation["n"] == metrics["n"]
    assert evaluation["held_out"] is (split != "train")
    assert ("not a held-out score" in result.output) is (split == "train")
    assert evaluation["data_fingerprint"] == read_json(run_dir / "run.json")["data"]["fingerprint"]
    assert f"{split} accuracy: {metrics['accuracy']:.4f}" in result.stdout


def test_evaluate_refuses_an_unknown_split(finished_run: tuple[Result, Path]) -> None:
    _, run_dir = finished_run
    line = assert_one_line_error(invoke("evaluate", run_dir, "--split", "holdout"))
    assert "holdout" in line


def test_evaluate_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    folder = tmp_path / "not-a-run"
    folder.mkdir()
    line = assert_one_line_error(invoke("evaluate", folder))
    assert "run.json" in line


def test_evaluate_a_missing_folder(tmp_path: Path) -> None:
    line = assert_one_line_error(invoke("evaluate", tmp_path / "gone"))
    assert "gone" in line


def test_evaluate_a_run_that_is_still_running(
    finished_run: tuple[Result, Path], tmp_path: Path
) -> None:
    _, run_dir = finished_run
    copy = tmp_path / "runs" / run_dir.name
    shutil.copytree(run_dir, copy)
    info = read_json(copy / "run.json")
    info["status"] = "running"
    (copy / "run.json").write_text(json.dumps(info), encoding="utf-8")
    line = assert_one_line_error(invoke("evaluate", copy))
    assert "running" in line


def test_evaluate_a_run_whose_model_does_not_fit(
    finished_run: tuple[Result, Path], tmp_path: Path
) -> None:
    _, run_dir = finished_run
    copy = tmp_path / "runs" / run_dir.name
    shutil.copytree(run_dir, copy)
    np.savez(copy / "model.npz", W0=np.zeros((2, 2)), b0=np.zeros(2))
    line = assert_one_line_error(invoke("evaluate", copy))
    assert "model.npz" in line


@pytest.mark.parametrize("command", ["evaluate", "report"])
def test_a_truncated_model_npz_is_one_line_exit_2(
    finished_run: tuple[Result, Path], tmp_path: Path, command: str
) -> None:
    _, run_dir = finished_run
    copy = tmp_path / "runs" / run_dir.name
    shutil.copytree(run_dir, copy)
    whole = (copy / "model.npz").read_bytes()
    (copy / "model.npz").write_bytes(whole[: len(whole) // 2])  # the zip's directory is gone
    line = assert_one_line_error(invoke(command, copy))  # was: exit 1, BadZipFile
    assert line == f"error: {copy / 'model.npz'}: unreadable model file (File is not a zip file)"


# ------------------------------------------------------------ per-class accuracy and confused pairs

# three overlapping 2-D classes with Fashion-MNIST-like names, one that looks like Rich markup
PAIR_NAMES = ["Shirt", "T-shirt/top", "[bold]Bag"]
PAIR_CONFIG = """\
name: pairs
seed: 0
data:
  dataset: {csv}
  split: [0.5, 0.2, 0.3]
model:
  struct: [4]
  sigma: 0.5
train:
  lr: 0.05
  eps: 0
  max_iterations: 600
"""


def recall_by_numpy(matrix: list[list[int]]) -> list[float | None]:
    """Per true class: diagonal / row sum (None for an empty row), with plain NumPy."""
    mat = np.asarray(matrix)
    rows = mat.sum(axis=1)
    return [None if n == 0 else float(d / n) for d, n in zip(np.diag(mat), rows, strict=True)]


def pairs_by_numpy(matrix: list[list[int]], names: list[str], top: int = 5) -> list[dict]:
    """The off-diagonal cells, most errors first (ties by true, predicted name), with plain
    NumPy indexing; cells of zero left out."""
    mat = np.asarray(matrix)
    t, p = np.nonzero(mat * (1 - np.eye(len(mat), dtype=int)))
    cells = sorted(zip(-mat[t, p], [names[i] for i in t], [names[j] for j in p], t, strict=True))
    return [
        {
            "true": true,
            "predicted": pred,
            "count": int(-neg),
            "share_of_true": int(-neg) / int(mat[i].sum()),
        }
        for neg, true, pred, i in cells[:top]
    ]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A quick softmax run on the built-in digits (10 classes) that still gets some wrong."""
    runs_dir = tmp_path_factory.mktemp("digits") / "runs"
    result = invoke(
        "train",
        CONFIGS / "digits_softmax.yaml",
        "--runs-dir",
        runs_dir,
        "--set",
        "train.max_iterations=1500",
    )
    assert result.exit_code == 0, result.output
    return only_run(runs_dir)


@pytest.fixture(scope="module")
def pairs_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run on a CSV of three overlapping classes named like clothes (and like markup)."""
    root = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(3), 60)
    centres = np.array([[0.0, 0.0], [1.0, 0.0], [4.0, 4.0]])  # Shirt, T-shirt/top overlap
    points = centres[labels] + rng.normal(scale=0.8, size=(len(labels), 2))
    csv = root / "clothes.csv"
    frame = {"x": points[:, 0], "y": points[:, 1], "label": [PAIR_NAMES[k] for k in labels]}
    pd.DataFrame(frame).to_csv(csv, index=False)
    config = write_config(root, PAIR_CONFIG.format(csv=csv))
    result = invoke("train", config, "--runs-dir", root / "runs")
    assert result.exit_code == 0, result.output
    return only_run(root / "runs")


def test_metrics_json_has_per_class_accuracy_and_confused_pairs(digits_run: Path) -> None:
    metrics = read_json(digits_run / "metrics.json")
    names = read_json(digits_run / "run.json")["data"]["classes"]
    assert names == [str(d) for d in range(10)]
    assert set(metrics) == {"train", "val", "test"}
    for split, m in metrics.items():
        assert len(m["per_class_accuracy"]) == 10, split
        assert m["per_class_accuracy"] == recall_by_numpy(m["confusion_matrix"]), split
        assert m["confused_pairs"] == pairs_by_numpy(m["confusion_matrix"], names), split
    test = metrics["test"]
    assert 0 < test["accuracy"] < 1, "the quick digits run should get some test images wrong"
    assert len(test["confused_pairs"]) == 5  # 10 classes and dozens of errors: a full top 5
    counts = [p["count"] for p in test["confused_pairs"]]
    assert counts == sorted(counts, reverse=True) and counts[-1] > 0
    # n-weighted per-class accuracy is the accuracy
    rows = np.asarray(test["confusion_matrix"]).sum(axis=1)
    weighted = sum(a * n for a, n in zip(test["per_class_accuracy"], rows, strict=True))
    assert weighted / test["n"] == pytest.approx(test["accuracy"])


def test_metrics_json_confusion_matrices_are_sklearns(digits_run: Path) -> None:
    # the saved model's predictions on each split, counted by scikit-learn, 10 classes
    from sklearn.metrics import confusion_matrix

    from scratchnn_cli.experiment import load_run_model

    run = load_run_model(digits_run)
    dataset, net = run.dataset, run.net
    for split, m in read_json(digits_run / "metrics.json").items():
        X, y = dataset.split(split)
        expected = confusion_matrix(y, net.predict(X), labels=np.arange(10))
        assert m["confusion_matrix"] == expected.tolist(), split


def test_binary_metrics_json_has_the_new_keys_too(finished_run: tuple[Result, Path]) -> None:
    _, run_dir = finished_run
    for split, m in read_json(run_dir / "metrics.json").items():
        assert m["per_class_accuracy"] == recall_by_numpy(m["confusion_matrix"]), split
        assert m["confused_pairs"] == pairs_by_numpy(m["confusion_matrix"], ["0", "1"]), split


def test_metrics_json_pairs_use_the_class_names(pairs_run: Path) -> None:
    metrics = read_json(pairs_run / "metrics.json")
    names = sorted(PAIR_NAMES)  # text labels are sorted: [bold]Bag, Shirt, T-shirt/top
    assert read_json(pairs_run / "run.json")["data"]["classes"] == names
    for split, m in metrics.items():
        assert m["confused_pairs"] == pairs_by_numpy(m["confusion_matrix"], names), split
    true_pred = {(p["true"], p["predicted"]) for p in metrics["test"]["confused_pairs"]}
    assert true_pred & {("Shirt", "T-shirt/top"), ("T-shirt/top", "Shirt")}


def _table_rows(stdout: str, title: str) -> list[list[str]]:
    """The body cells of the Rich table titled ``title`` in ``stdout``."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == title)
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith(("└", "+")):  # the bottom border
            break
        cells = [c.strip() for c in re.split(r"[│┃|]", line)[1:-1]]
        if cells:
            rows.append(cells)
    return rows[1:]  # the header row goes


def test_evaluate_prints_per_class_accuracy_and_confused_pairs(digits_run: Path) -> None:
    result = invoke("evaluate", digits_run)
    assert result.exit_code == 0, result.output
    evaluation = read_json(digits_run / "evaluation-test.json")
    matrix = np.asarray(evaluation["confusion_matrix"])
    assert evaluation["per_class_accuracy"] == recall_by_numpy(evaluation["confusion_matrix"])
    assert evaluation["confused_pairs"] == pairs_by_numpy(matrix, evaluation["class_names"])
    stdout = result.stdout
    rows = _table_rows(stdout, "test per-class accuracy")
    expected = [
        [name, f"{matrix[c, c] / matrix[c].sum():.4f}", f"{matrix[c, c]} / {matrix[c].sum()}"]
        for c, name in enumerate(evaluation["class_names"])
    ]
    assert rows == expected
    lines = stdout.splitlines()
    header = lines.index("most confused pairs (true -> predicted):")
    pair_lines = lines[header + 1 : header + 6]
    assert pair_lines == [
        f"  {p['true']} -> {p['predicted']}: {p['count']} "
        f"({100 * p['count'] / matrix[int(p['true'])].sum():.1f}% of {p['true']})"
        for p in evaluation["confused_pairs"]
    ]
    # order: confusion matrix, per-class table, pairs, accuracy; the json path stays last
    stripped = [line.strip() for line in lines]
    order = [
        stripped.index("test confusion matrix"),
        stripped.index("test per-class accuracy"),
        header,
        next(i for i, line in enumerate(lines) if line.startswith("test accuracy:")),
    ]
    assert order == sorted(order)
    assert lines[-1] == str(digits_run / "evaluation-test.json")


def test_evaluate_prints_class_names_verbatim(pairs_run: Path) -> None:
    result = invoke("evaluate", pairs_run)
    assert result.exit_code == 0, result.output
    evaluation = read_json(pairs_run / "evaluation-test.json")
    matrix = np.asarray(evaluation["confusion_matrix"])
    names = evaluation["class_names"]
    rows = _table_rows(result.stdout, "test per-class accuracy")
    assert [row[0] for row in rows] == names  # "[bold]Bag" is not eaten as Rich markup
    shirt, tee = names.index("Shirt"), names.index("T-shirt/top")
    assert matrix[shirt, tee] > 0, "the two overlapping classes should be confused"
    share = 100 * matrix[shirt, tee] / matrix[shirt].sum()
    line = f"  Shirt -> T-shirt/top: {matrix[shirt, tee]} ({share:.1f}% of Shirt)"
    assert line in result.stdout.splitlines()
    assert result.stdout.strip().splitlines()[-1] == str(pairs_run / "evaluation-test.json")


def test_evaluate_a_legacy_run_prints_the_new_sections(tmp_path: Path) -> None:
    legacy = Path(__file__).parent / "fixtures" / "legacy_runs" / "legacy_small"
    run_dir = Path(shutil.copytree(legacy, tmp_path / "legacy_small"))
    result = invoke("evaluate", run_dir)
    assert result.exit_code == 0, result.output
    recorded = read_json(run_dir / "metrics.json")["test"]  # 0.1.0: no per-class keys
    assert "per_class_accuracy" not in recorded and "confused_pairs" not in recorded
    evaluation = read_json(run_dir / "evaluation-test.json")
    assert evaluation["per_class_accuracy"] == [0.96, 1.0]  # [[48, 2], [0, 50]]
    assert evaluation["confused_pairs"] == [
        {"true": "0", "predicted": "1", "count": 2, "share_of_true": 0.04}
    ]
    assert "  0 -> 1: 2 (4.0% of 0)" in result.stdout.splitlines()
    assert _table_rows(result.stdout, "test per-class accuracy") == [
        ["0", "0.9600", "48 / 50"],
        ["1", "1.0000", "50 / 50"],
    ]


def test_a_class_without_samples_shows_a_dash() -> None:
    from rich.console import Console

    from scratchnn_cli.report.tables import per_class_table

    console = Console(record=True, width=80)
    console.print(per_class_table([[0, 0], [1, 3]], ["absent", "b"], "val"))
    rows = _table_rows(console.export_text(), "val per-class accuracy")
    assert rows == [["absent", "-", "0 / 0"], ["b", "0.7500", "3 / 4"]]


def test_no_errors_is_one_line() -> None:
    from scratchnn_cli.records import ConfusedPair
    from scratchnn_cli.report.tables import confused_pair_lines

    assert confused_pair_lines([]) == ["most confused pairs: none (no errors)"]
    pair = ConfusedPair("Shirt", "T-shirt/top", 112, 0.112)
    assert confused_pair_lines([pair])[1] == "  Shirt -> T-shirt/top: 112 (11.2% of Shirt)"


# --------------------------------------------------------------------------- version


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"scratchnn {__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", __version__)


def test_reproduce_help_names_the_folder_it_writes() -> None:
    result = invoke("reproduce", "--help")
    assert result.exit_code == 0, result.output
    assert "reproduce-<timestamp>" in result.stdout, result.stdout  # not eaten as an HTML tag


@pytest.mark.parametrize(
    "entry, message",
    [
        ("{title: x}", "experiments.0: needs id, config"),
        (
            "{id: 1, title: x, config: c.yaml, seconds: abc}",
            "experiments.0.seconds: must be a number",
        ),
        (
            "{id: 1, title: x, config: c.yaml, reported: 5}",
            "experiments.0.reported: must be a mapping",
        ),
    ],
)
def test_a_bad_reproduce_manifest_is_refused_before_its_folder(
    tmp_path: Path, entry: str, message: str
) -> None:
    manifest = tmp_path / "reproduce.yaml"
    manifest.write_text(f"experiments:\n  - {entry}\n", encoding="utf-8")
    result = invoke("reproduce", "--configs-dir", tmp_path, "--runs-dir", tmp_path / "runs")
    line = assert_one_line_error(result)  # was: exit 1 (KeyError, ValueError), a stray folder
    assert line.startswith(f"error: {manifest}: {message}"), line
    assert run_folders(tmp_path / "runs") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sweep", "--cv", "1", "x.yaml"], "Invalid value for '--cv'"),
        (["sweep", "--jobs", "abc", "x.yaml"], "Invalid value for '--jobs'"),
        (["train", "a.yaml", "b.yaml"], "Got unexpected extra argument(s) (b.yaml)"),
        (["train", "--bogus", "a.yaml"], "No such option: --bogus"),
        (["evaluate"], "Missing argument 'RUN_DIR'"),
        (["nosuch"], "No such command 'nosuch'"),
    ],
)
def test_command_line_errors_are_one_line_with_exit_2(args: list[str], message: str) -> None:
    """Click's usage box (three lines and a frame) becomes one line naming the --help to read."""
    line = assert_one_line_error(invoke(*args))
    assert message in line
    command = "scratchnn" if args[0] == "nosuch" else f"scratchnn {args[0]}"
    assert line.endswith(f"(see {command} --help)"), line


def test_help_and_version_still_exit_0() -> None:
    for args in (["--help"], ["train", "--help"], ["--version"]):
        result = invoke(*args)
        assert result.exit_code == 0, (args, result.output)
        assert "error:" not in result.output


def test_runs_of_a_file_says_it_is_not_a_folder(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("x", encoding="utf-8")
    assert assert_one_line_error(invoke("runs", path)).endswith("notes.txt: a file, not a folder")
    line = assert_one_line_error(invoke("runs", tmp_path / "missing"))
    assert line.endswith("missing: no such folder")


# ------------------------------------------ evaluate: splits, folders it cannot write, changed data


def test_evaluate_keeps_one_file_per_split(blobs_run: Path) -> None:
    """--split val no longer overwrites the test scores; a train+val run's val split is not
    held out, and evaluate says so."""
    test = invoke("evaluate", blobs_run)
    assert test.exit_code == 0, test.output
    assert "not a held-out score" not in test.output
    val = invoke("evaluate", blobs_run, "--split", "val")
    assert val.exit_code == 0, val.output
    assert "note: the model was trained on the val split: this is not a held-out score" in (
        " ".join(val.output.split())
    )
    assert read_json(blobs_run / "evaluation-test.json")["split"] == "test"
    scored = read_json(blobs_run / "evaluation-val.json")
    assert scored["split"] == "val" and scored["held_out"] is False
    assert val.output.splitlines()[-1] == str(blobs_run / "evaluation-val.json")


def test_evaluate_on_a_folder_it_cannot_write_still_shows_the_scores(
    blobs_run: Path, tmp_path: Path
) -> None:
    """A run folder evaluate cannot write into (here: a folder where its file goes, which
    stops root too): the scores are printed, then one 'could not write' line, exit 1."""
    import shutil

    run_dir = tmp_path / blobs_run.name
    shutil.copytree(blobs_run, run_dir)
    (run_dir / "evaluation-test.json").unlink(missing_ok=True)
    (run_dir / "evaluation-test.json").mkdir()
    result = invoke("evaluate", run_dir)
    assert result.exit_code == 1, result.output
    assert "test accuracy: " in result.output and "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"error: {run_dir / 'evaluation-test.json'}: could not write ("), last
    assert "internal error" not in result.output


def test_evaluate_refuses_a_run_whose_data_changed(tmp_path: Path) -> None:
    """The CSV a run trained on was edited: its splits would be other splits, so evaluate
    refuses as --resume does (it printed a test score on another split and exited 0)."""
    run_dir = csv_run(tmp_path, ("a", "b"))
    data = tmp_path / "data.csv"
    data.write_text(data.read_text(encoding="utf-8").replace("\n0.", "\n1.", 3), encoding="utf-8")
    result = invoke("evaluate", run_dir)
    line = assert_one_line_error(result, code=2)
    assert "the data differs from what the run was trained on" in line
    assert not list(run_dir.glob("evaluation*.json"))


def test_evaluate_refuses_a_model_with_nan_weights(blobs_run: Path, tmp_path: Path) -> None:
    """NaN weights predicted one class for every sample and evaluate reported its share."""
    import shutil

    run_dir = tmp_path / blobs_run.name
    shutil.copytree(blobs_run, run_dir)
    with np.load(run_dir / "model.npz") as data:
        arrays = {key: data[key] for key in data.files}
    arrays["W1"][0, 0] = np.nan
    np.savez(run_dir / "model.npz", **arrays)
    line = assert_one_line_error(invoke("evaluate", run_dir), code=2)
    assert "model.npz: W1 holds NaN or infinite values" in line, line


# --------------------------------------------------------------------------- internal errors


@pytest.mark.slow
def test_internal_error_logs_stay_in_one_folder_and_the_newest_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each internal error left a scratchnn-error-*.log in /tmp, forever."""
    from scratchnn_cli import experiment
    from scratchnn_cli.cli.common import KEPT_ERROR_LOGS

    def bug(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(experiment, "evaluate_run", bug)
    folder = tmp_path / "cache" / "scratchnn" / "errors"
    for _ in range(KEPT_ERROR_LOGS + 3):
        line = assert_one_line_error(invoke("evaluate", tmp_path), code=1)
        assert f"(traceback in {folder}/scratchnn-error-" in line, line
    logs = list(folder.glob("scratchnn-error-*.log"))
    assert len(logs) == KEPT_ERROR_LOGS
    assert all("RuntimeError: a bug" in log.read_text() for log in logs)


# --------------------------------------------------------------------------- --help pages


COMMANDS = ["train", "evaluate", "reproduce", "sweep", "gradcheck", "summary", "runs", "report"]


@pytest.mark.parametrize("command", [*COMMANDS, "compare"])
def test_help_pages_show_no_python_types(command: str) -> None:
    """They showed <bool> beside flags, <str>, <int range>, <path> and list[str]."""
    import re

    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    types = r"<(?:bool|str|int|float|path|text|int range|float range)>|list\[\w+\]"
    shown = re.findall(types, result.output, flags=re.IGNORECASE)
    assert shown == [], shown


def test_help_pages_name_an_argument_one_way() -> None:
    """The usage line said [config], the panel config, the text CONFIG."""
    import re

    result = invoke("train", "--help")
    assert "Usage: scratchnn train [OPTIONS] [CONFIG]" in result.output
    assert "[config]" not in result.output
    assert re.search(r"│\s+CONFIG\s", result.output) and not re.search(
        r"│\s+config\s", result.output
    )


@pytest.mark.parametrize(
    ("command", "choices"), [("sweep", "<local|dask>"), ("evaluate", "<test|val|train>")]
)
def test_choices_are_listed_and_checked(command: str, choices: str) -> None:
    help_page = invoke(command, "--help").output
    assert choices in help_page
    option = "--backend" if command == "sweep" else "--split"
    line = assert_one_line_error(invoke(command, "x", option, "nonsense"))
    assert f"Invalid value for '{option}'" in line and "nonsense" in line, line


# --------------------------------------------------------------------------- train's arguments


def test_train_wants_exactly_one_of_config_and_resume(tmp_path: Path) -> None:
    config = write_config(tmp_path, SMALL_CONFIG.format(name="x", max_iterations=100))
    both = invoke("train", config, "--resume", tmp_path, "--runs-dir", tmp_path / "runs")
    assert "not both" in assert_one_line_error(both)
    neither = invoke("train", "--runs-dir", tmp_path / "runs")
    assert_one_line_error(neither)
    assert not (tmp_path / "runs").exists()
