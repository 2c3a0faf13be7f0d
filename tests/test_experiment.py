"""experiment.py: a run trained, resumed and evaluated through the CLI. A diverged run exits 3
with a hint and whole files; what --resume accepts and refuses (completed runs, folders that are
not runs, overrides the checkpoint cannot honour, runs killed without a chance to clean up)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import (
    DIVERGING_CONFIG,
    assert_folder_whole,
    assert_no_traceback,
    assert_one_line_error,
    error_lines,
    invoke,
    model_arrays,
    only_run,
    read_json,
    write_config,
)

from scratchnn_cli import runs
from scratchnn_cli.assembly import network_for_dataset
from scratchnn_cli.config import load_config
from scratchnn_cli.data import load_dataset

# --------------------------------------------------------------------------- divergence


@pytest.mark.parametrize("lr", ["1.0e+6", "30"], ids=["first-epoch", "fourth-epoch"])
def test_divergence_exits_3_with_a_hint_and_whole_files(tmp_path: Path, lr: str) -> None:
    config = write_config(tmp_path, DIVERGING_CONFIG.replace("1.0e+6", lr))
    result = invoke("train", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 3, result.output
    assert_no_traceback(result)
    assert error_lines(result.output) == []
    run_dir = only_run(tmp_path / "runs")
    info = assert_folder_whole(run_dir)
    assert info["status"] == "diverged"
    assert info["stop"]["stopped_by"] == "diverged"
    reason = info["stop"]["reason"]
    assert "diverged" in reason and "lower train.lr" in reason, reason
    assert "stopped: diverged" in result.stdout
    for name in ("history.csv", "model.npz", "metrics.json", "checkpoint.npz", "config.yaml"):
        assert (run_dir / name).is_file(), name
    weights = model_arrays(run_dir)
    assert weights and all(np.isfinite(w).all() for w in weights.values())
    # the weights kept are those of the last good epoch, as checkpointed; the diverging
    # epoch is counted in run.json but has no row in history.csv
    snapshot = runs.read_checkpoint(run_dir / "checkpoint.npz")
    assert snapshot.epochs == info["stop"]["epochs"] - 1
    for i, param in enumerate(snapshot.params):
        assert np.array_equal(param, weights[f"{'Wb'[i % 2]}{i // 2}"])
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history["epoch"]) == list(range(1, snapshot.epochs + 1))
    assert np.isfinite(history["cost"].to_numpy(dtype=float)).all()


def test_a_diverged_run_scores_without_overflow_warnings(tmp_path: Path) -> None:
    """With lr 100 epoch 1 ends with a finite (1e300) cost but a nan validation cost; scoring
    the weights kept after the divergence must not spill RuntimeWarnings (errors here)."""
    config = write_config(tmp_path, DIVERGING_CONFIG.replace("1.0e+6", "100"))
    result = invoke("train", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 3, result.output
    assert "RuntimeWarning" not in result.output


@pytest.mark.slow
def test_a_diverged_run_resumes_with_a_lower_lr(tmp_path: Path) -> None:
    """lr 1e6 diverges in epoch 1 (the weights go back to the initial ones); resumed with lr
    0.01 (1e8 times lower, 3000 times below the lr 30 that diverges in epoch 4) it trains to
    the end and learns the blobs."""
    config = write_config(tmp_path, DIVERGING_CONFIG)
    assert invoke("train", config, "--runs-dir", tmp_path / "runs").exit_code == 3
    run_dir = only_run(tmp_path / "runs")
    diverged = read_json(run_dir / "metrics.json")
    assert read_json(run_dir / "run.json")["stop"]["epochs"] == 1
    result = invoke("train", "--resume", run_dir, "--set", "train.lr=0.01")
    assert result.exit_code == 0, result.output
    assert_no_traceback(result)
    info = assert_folder_whole(run_dir)
    assert info["status"] == "completed"
    assert info["stop"]["stopped_by"] == "max_iterations"
    assert (info["stop"]["epochs"], info["stop"]["iterations"]) == (10, 2000)
    assert info["resumed"][0]["from_epoch"] == 0  # no epoch of the diverged run was good
    assert info["resumed"][0]["overrides"] == ["train.lr=0.01"]
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["lr"] == 0.01
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history["epoch"]) == list(range(1, 11))
    assert (history["lr"] == 0.01).all()
    metrics = read_json(run_dir / "metrics.json")
    for split in ("train", "val", "test"):
        # from the initial weights' 0.34-0.4 to well above chance (0.5)
        assert diverged[split]["accuracy"] <= 0.4, split
        assert metrics[split]["accuracy"] >= 0.85, (split, metrics[split]["accuracy"])


def test_finite_but_huge_costs_do_not_crash_the_learning_curve(tmp_path: Path) -> None:
    """ReLU, sigma 10, lr 1e6: costs near 1e300 but finite; a log-scale learning curve of
    those made matplotlib's tick code overflow, failing the run with exit 1."""
    config = write_config(tmp_path, DIVERGING_CONFIG.replace("leaky_relu", "relu"))
    result = invoke("train", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code in (0, 3), result.output
    info = assert_folder_whole(only_run(tmp_path / "runs"))
    assert info["status"] in ("completed", "diverged")


# --------------------------------------------------------------------------- resume


@pytest.mark.slow
def test_resume_refuses_a_completed_run(uninterrupted: Path) -> None:
    before = (uninterrupted / "run.json").read_bytes()
    line = assert_one_line_error(invoke("train", "--resume", uninterrupted))
    assert "completed" in line
    assert (uninterrupted / "run.json").read_bytes() == before


def test_resume_refuses_folders_that_are_not_runs(tmp_path: Path) -> None:
    assert_one_line_error(invoke("train", "--resume", tmp_path / "missing"))
    assert_one_line_error(invoke("train", "--resume", tmp_path))


# --------------------------------------------------------------------------- resume rules


CONFIG = """\
name: resumable
seed: 0
data:
  dataset: digits
  split: [0.6, 0.2, 0.2]
model:
  struct: [16]
  activation: relu
  init: he
train:
  lr: 0.01
  eps: 0
  max_iterations: 1000000
  max_epochs: 6
  batch_size: 32
  sampling: shuffle
  optimizer: adam
  checkpoint_every: 2
"""


@pytest.fixture
def interrupted_run(tmp_path: Path) -> Path:
    """A finished run turned back into an interrupted one at its epoch-6 checkpoint."""
    config = tmp_path / "resumable.yaml"
    config.write_text(CONFIG)
    result = invoke("train", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    run_dir = Path(result.output.strip().splitlines()[-1])
    info = json.loads((run_dir / "run.json").read_text())
    info["status"] = "interrupted"
    (run_dir / "run.json").write_text(json.dumps(info))
    return run_dir


@pytest.mark.slow
@pytest.mark.parametrize(
    "override",
    ["model.struct=[8]", "model.activation=tanh", "train.optimizer=sgd", "seed=3"],
)
def test_resume_refuses_overrides_the_checkpoint_cannot_honour(
    interrupted_run: Path, override: str
) -> None:
    before = (interrupted_run / "config.yaml").read_text()
    result = invoke("train", "--resume", interrupted_run, "--set", override)
    assert result.exit_code == 2, result.output
    assert "only train.* keys" in result.output
    assert "Traceback" not in result.output
    assert (interrupted_run / "config.yaml").read_text() == before  # nothing rewritten
    assert json.loads((interrupted_run / "run.json").read_text())["status"] == "interrupted"


@pytest.mark.slow
def test_resume_with_a_train_override_goes_on_from_the_checkpoint(interrupted_run: Path) -> None:
    result = invoke(
        "train",
        "--resume",
        interrupted_run,
        "--set",
        "train.max_epochs=8",
        "--set",
        "train.lr=0.005",
    )
    assert result.exit_code == 0, result.output
    info = json.loads((interrupted_run / "run.json").read_text())
    assert info["status"] == "completed"
    assert info["resumed"][-1]["from_epoch"] == 6
    assert info["stop"]["epochs"] == 8
    history = (interrupted_run / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 8  # header + epochs 1..8, none twice


@pytest.mark.slow
@pytest.mark.parametrize("pid", ["gone", "init", "this process"])
def test_a_running_run_whose_lock_is_free_is_resumed_whatever_its_pid(
    interrupted_run: Path, pid: str
) -> None:
    """Whether a "running" run still trains is its lock's business (tests/test_runs.py), not its
    PID's: with nobody holding the lock, a run.json naming a process that does not exist, a
    live one (init, pid 1: the old PID check refused this) or this very process (a PID reused
    after a kill -9) is a run killed hard, and is resumed."""
    number = {"gone": 2**22 + 12345, "init": 1, "this process": os.getpid()}[pid]
    info = json.loads((interrupted_run / "run.json").read_text())
    info.update(status="running", pid=number, host=socket.gethostname())
    (interrupted_run / "run.json").write_text(json.dumps(info))
    result = invoke("train", "--resume", interrupted_run)
    assert result.exit_code == 0, result.output
    info = json.loads((interrupted_run / "run.json").read_text())
    assert info["status"] == "completed"
    assert len(info["resumed"]) == 1 and info["resumed"][0]["from_epoch"] == 6
    assert not (interrupted_run / ".lock").exists()  # given back, and deleted


def test_a_checkpoint_that_does_not_fit_the_config_is_refused(interrupted_run: Path) -> None:
    with np.load(interrupted_run / "checkpoint.npz") as data:
        arrays = {k: data[k] for k in data.files}
    arrays["param0"] = np.zeros((3, 3))
    np.savez(interrupted_run / "checkpoint.npz", **arrays)
    result = invoke("train", "--resume", interrupted_run)
    assert result.exit_code == 2, result.output
    assert "does not fit" in result.output


def test_a_diverged_run_can_be_evaluated(tmp_path: Path) -> None:
    config = tmp_path / "wild.yaml"
    config.write_text(
        "name: wild\ndata: {dataset: blobs400}\n"
        "model: {struct: [5], activation: leaky_relu, sigma: 10}\n"
        "train: {lr: 1.0e+6, max_iterations: 2000}\n"
    )
    result = invoke("train", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 3, result.output
    run_dir = Path(result.output.strip().splitlines()[-1])
    info = json.loads((run_dir / "run.json").read_text())
    assert (info["status"], info["stop"]["epochs"]) == ("diverged", 1)
    evaluated = invoke("evaluate", run_dir)
    assert evaluated.exit_code == 0, evaluated.output
    evaluation = json.loads((run_dir / "evaluation-test.json").read_text())
    # diverged in epoch 1: model.npz holds the initial weights, and evaluating it reproduces
    # the test accuracy that training recorded, and that of a freshly initialised network
    recorded = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert (evaluation["n"], evaluation["accuracy"]) == (recorded["n"], recorded["accuracy"])
    assert evaluation["confusion_matrix"] == recorded["confusion_matrix"]
    config = load_config(run_dir / "config.yaml")
    dataset = load_dataset(config.data, config.seed)
    fresh = network_for_dataset(config, dataset, np.random.default_rng([config.seed, 2]))
    with np.load(run_dir / "model.npz") as model:
        for key, value in fresh.state().items():
            np.testing.assert_array_equal(model[key], value, err_msg=key)
    X, y = dataset.split("test")
    with np.errstate(over="ignore", invalid="ignore"):  # weights of size ~10: huge logits
        assert evaluation["accuracy"] == float(np.mean(fresh.predict(X) == y))
