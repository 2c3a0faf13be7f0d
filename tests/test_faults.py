"""Fault injection: divergence, Ctrl-C / SIGTERM (real signals to a real process), resuming,
failed writes (disk full), broken backprop, the ``runs`` listing and bad CSV data.

Every test checks the promises of the CLI: a documented exit code, one error line and no
traceback, and a run folder whose files are each complete (old or new version, never half)
with a final status in run.json.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import SMALL_CONFIG, assert_one_line_error, invoke
from typer.testing import Result

from scratchnn_cli import runs
from scratchnn_cli.build import build_network, rng_streams, training_set
from scratchnn_cli.config import ExperimentConfig
from scratchnn_cli.data import load_dataset
from scratchnn_cli.nn.layers.activations import Sigmoid
from scratchnn_cli.training import Hooks, Snapshot, TrainResult, train

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ENOSPC = 28


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


# --------------------------------------------------------------------------- helpers


def write_config(folder: Path, text: str, filename: str = "exp.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    path.write_text(text, encoding="utf-8")
    return path


def run_folders(runs_dir: Path) -> list[Path]:
    return sorted(p for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.exists() else []


def only_run(runs_dir: Path) -> Path:
    folders = run_folders(runs_dir)
    assert len(folders) == 1, folders
    return folders[0]


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def assert_no_traceback(result: Result) -> None:
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )


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


def model_arrays(run_dir: Path) -> dict[str, np.ndarray]:
    with np.load(run_dir / "model.npz", allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def assert_same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert np.array_equal(a[key], b[key]), key


@pytest.fixture(autouse=True)
def _error_logs_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An internal error writes its traceback to a temp file: keep those out of /tmp."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


HISTORY_EXACT = ["epoch", "iteration", "cost", "train_accuracy", "val_cost", "val_accuracy", "lr"]


def history_frame(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "history.csv")[HISTORY_EXACT]


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


# --------------------------------------------------------------------------- real signals


def scratchnn_exe() -> str:
    """The installed console script (``pip install -e .`` puts it beside the interpreter)."""
    exe = Path(sys.executable).parent / "scratchnn"
    if exe.is_file():
        return str(exe)
    found = shutil.which("scratchnn")
    if found is None:
        pytest.fail(
            f"the scratchnn console script is not installed (not in {exe.parent} nor on PATH): "
            "pip install -e ."
        )
    return found


class Training:
    """``scratchnn train`` in a child process, its output in files."""

    def __init__(self, folder: Path, args: list[str]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.runs_dir = folder / "runs"
        self.stdout = (folder / "stdout.txt").open("wb")
        self.stderr = (folder / "stderr.txt").open("wb")
        self.proc = subprocess.Popen(
            [scratchnn_exe(), "train", *args],
            cwd=folder,
            stdout=self.stdout,
            stderr=self.stderr,
            stdin=subprocess.DEVNULL,
        )

    def checkpointed(self) -> bool:
        """True once a checkpoint (epoch 2) and history.csv are on disk."""
        return any(
            (d / "checkpoint.npz").is_file() and (d / "history.csv").is_file()
            for d in run_folders(self.runs_dir)
        )

    def wait(self, timeout: float = 120) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.stdout.close()
            self.stderr.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()

    def output(self) -> str:
        return (self.folder / "stdout.txt").read_text() + (self.folder / "stderr.txt").read_text()

    def run_dir(self) -> Path:
        return only_run(self.runs_dir)


def interrupt_when_checkpointed(
    jobs: dict[str, Training],
    send: dict[str, Callable[[subprocess.Popen[bytes]], None]],
    timeout: float = 90,
) -> dict[str, int]:
    """Poll every job; once it has a checkpoint, ``send`` it its signal(s); wait for all."""
    pending = dict(jobs)
    deadline = time.monotonic() + timeout
    try:
        while pending:
            for key, job in list(pending.items()):
                if job.checkpointed():
                    send[key](job.proc)
                    del pending[key]
                elif job.proc.poll() is not None:
                    raise AssertionError(f"{key} ended before a checkpoint:\n{job.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no checkpoint within {timeout} s: {sorted(pending)}")
            time.sleep(0.01)
        return {key: job.wait() for key, job in jobs.items()}
    finally:
        for job in jobs.values():
            job.kill()


def _sigint(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)


def _sigterm(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)


def _double_sigint(pause: float) -> Callable[[subprocess.Popen[bytes]], None]:
    def send(proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGINT)
        time.sleep(pause)
        proc.send_signal(signal.SIGINT)  # no-op when the process has already exited

    return send


# 80 epochs: long enough to be interrupted after epoch 2, short enough to finish when resumed
FINITE_EPOCHS = 80
FINITE_ITERATIONS = 68 * FINITE_EPOCHS
ENDLESS_ITERATIONS = 10**9


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, Training]]:
    """Three real trainings at once, each signalled once it wrote its first checkpoint."""
    base = tmp_path_factory.mktemp("signals")
    jobs: dict[str, Training] = {}
    # 5 ms after the first Ctrl-C the process is usually saving: the second one lands there
    sends = {"sigint": _sigint, "sigterm": _sigterm, "double": _double_sigint(0.005)}
    for key in sends:
        iterations = FINITE_ITERATIONS if key == "sigint" else ENDLESS_ITERATIONS
        config = write_config(
            base / key, DIGITS_CONFIG.format(name="digits", max_iterations=iterations)
        )
        jobs[key] = Training(base / key, [str(config), "--runs-dir", "runs"])
    codes = interrupt_when_checkpointed(jobs, sends)
    return {key: (codes[key], jobs[key]) for key in jobs}


def check_interrupted_folder(run_dir: Path) -> dict[str, Any]:
    info = assert_folder_whole(run_dir)
    assert info["status"] == "interrupted"
    assert info["stop"]["stopped_by"] == "interrupted"
    assert info["ended"] is not None
    for name in ("history.csv", "model.npz", "checkpoint.npz", "config.yaml"):
        assert (run_dir / name).is_file(), name
    # model.npz, the checkpoint and history.csv all describe the same last finished epoch
    snapshot = runs.read_checkpoint(run_dir / "checkpoint.npz")
    assert snapshot.epochs == info["stop"]["epochs"] >= 2
    assert snapshot.iterations == info["stop"]["iterations"] == 68 * snapshot.epochs
    weights = model_arrays(run_dir)
    for i, param in enumerate(snapshot.params):
        assert np.array_equal(param, weights[f"{'Wb'[i % 2]}{i // 2}"])
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history["epoch"]) == list(range(1, snapshot.epochs + 1))
    assert [r.epoch for r in snapshot.history] == list(history["epoch"])
    return info


@pytest.mark.parametrize("key", ["sigint", "sigterm"])
def test_a_signal_stops_cleanly_with_130(
    interrupted: dict[str, tuple[int, Training]], key: str
) -> None:
    code, job = interrupted[key]
    output = job.output()
    assert code == 130, output
    assert "Traceback" not in output
    run_dir = Path("runs") / job.run_dir().name  # as the command was given (--runs-dir runs)
    # not an error: the folder to go on from and the command that does it, no 'error:' prefix
    line = f"interrupted: {run_dir} is saved; go on with: scratchnn train --resume {run_dir}"
    assert line in output.splitlines(), output
    assert "error:" not in output
    check_interrupted_folder(job.run_dir())


def test_a_second_ctrl_c_still_leaves_whole_files(
    interrupted: dict[str, tuple[int, Training]],
) -> None:
    """Real signals, so the second one lands anywhere in the saving (the exact moment of a
    write is pinned down by test_second_ctrl_c_during_the_final_writes_leaves_no_temp_file)."""
    code, job = interrupted["double"]
    output = job.output()
    # once Python is shutting down its SIGINT handler is gone: killed by the signal, which a
    # shell reports as 130 too
    assert code in (130, -signal.SIGINT), output
    assert "Traceback" not in output
    run_dir = job.run_dir()
    # a second Ctrl-C once run.json says interrupted ends the process at once: .lock may stay
    info = assert_folder_whole(run_dir, lock_may_remain=True)
    assert info["status"] == "interrupted", info["status"]
    assert (run_dir / "checkpoint.npz").is_file()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits run of the ``sigint`` job, trained in one go (in-process)."""
    base = tmp_path_factory.mktemp("whole")
    config = write_config(
        base, DIGITS_CONFIG.format(name="digits", max_iterations=FINITE_ITERATIONS)
    )
    result = invoke("train", config, "--runs-dir", base / "runs")
    assert result.exit_code == 0, result.output
    return only_run(base / "runs")


def test_resume_after_sigint_ends_like_an_uninterrupted_run(
    interrupted: dict[str, tuple[int, Training]], uninterrupted: Path, tmp_path: Path
) -> None:
    code, job = interrupted["sigint"]
    assert code == 130, job.output()
    run_dir = tmp_path / "copy" / job.run_dir().name
    shutil.copytree(job.run_dir(), run_dir)
    stopped_at = read_json(run_dir / "run.json")["stop"]["epochs"]
    result = invoke("train", "--resume", run_dir)
    assert result.exit_code == 0, result.output
    assert_no_traceback(result)
    assert str(run_dir) in result.stdout
    info = assert_folder_whole(run_dir)
    assert info["status"] == "completed"
    assert info["stop"]["stopped_by"] == "max_iterations"
    assert info["stop"]["epochs"] == FINITE_EPOCHS
    assert len(info["resumed"]) == 1
    assert info["resumed"][0]["from_epoch"] == stopped_at
    assert info["resumed"][0]["overrides"] == []
    assert_same_arrays(model_arrays(run_dir), model_arrays(uninterrupted))
    pd.testing.assert_frame_equal(history_frame(run_dir), history_frame(uninterrupted))
    whole_metrics = read_json(uninterrupted / "metrics.json")
    assert read_json(run_dir / "metrics.json") == whole_metrics
    # and the resumed run is now finished: evaluate accepts it
    result = invoke("evaluate", run_dir)
    assert result.exit_code == 0, result.output


def test_resume_refuses_a_completed_run(uninterrupted: Path) -> None:
    before = (uninterrupted / "run.json").read_bytes()
    line = assert_one_line_error(invoke("train", "--resume", uninterrupted))
    assert "completed" in line
    assert (uninterrupted / "run.json").read_bytes() == before


def test_resume_refuses_a_truncated_checkpoint_and_changes_nothing(
    uninterrupted: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / uninterrupted.name
    shutil.copytree(uninterrupted, run_dir)
    info = read_json(run_dir / "run.json")
    (run_dir / "run.json").write_text(json.dumps({**info, "status": "interrupted"}))
    whole = (run_dir / "checkpoint.npz").read_bytes()
    (run_dir / "checkpoint.npz").write_bytes(whole[:200])
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    line = assert_one_line_error(invoke("train", "--resume", run_dir))  # was: exit 1
    assert (
        line
        == f"error: {run_dir / 'checkpoint.npz'}: unreadable checkpoint (File is not a zip file)"
    )
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before


def test_train_wants_exactly_one_of_config_and_resume(tmp_path: Path) -> None:
    config = write_config(tmp_path, SMALL_CONFIG.format(name="x", max_iterations=100))
    both = invoke("train", config, "--resume", tmp_path, "--runs-dir", tmp_path / "runs")
    assert "not both" in assert_one_line_error(both)
    neither = invoke("train", "--runs-dir", tmp_path / "runs")
    assert_one_line_error(neither)
    assert not (tmp_path / "runs").exists()


def test_resume_refuses_folders_that_are_not_runs(tmp_path: Path) -> None:
    assert_one_line_error(invoke("train", "--resume", tmp_path / "missing"))
    assert_one_line_error(invoke("train", "--resume", tmp_path))


# Ctrl-C twice, deterministically: a driver runs `scratchnn train` whose first Ctrl-C (a real
# SIGINT, so the command's own handler runs) comes at the end of epoch 3; each test adds where
# the second one lands
CTRL_C_DRIVER_START = """\
import atexit, os, signal, sys, time
from pathlib import Path

import scratchnn_cli.experiment as experiment
import scratchnn_cli.runs.folder as run_files
from scratchnn_cli.cli import app
from scratchnn_cli.runs.writer import RunWriter

real_train = experiment.train


def train(*args, hooks, **kwargs):
    on_epoch = hooks.on_epoch

    def stop_at_3(record):
        on_epoch(record)
        if record.epoch == 3:
            os.kill(os.getpid(), signal.SIGINT)  # the first Ctrl-C
            time.sleep(5)

    hooks.on_epoch = stop_at_3
    return real_train(*args, hooks=hooks, **kwargs)


def second_ctrl_c():
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(1)


experiment.train = train
"""
CTRL_C_DRIVER_END = """
sys.argv = ["scratchnn", "train", sys.argv[1], "--runs-dir", sys.argv[2]]
app()
"""


def run_ctrl_c_driver(tmp_path: Path, second: str, *args: str) -> tuple[int, str, Path]:
    """(exit code, stdout + stderr, the run folder) of the driver with ``second`` added."""
    driver = tmp_path / "driver.py"
    driver.write_text(CTRL_C_DRIVER_START + second + CTRL_C_DRIVER_END, encoding="utf-8")
    config = write_config(tmp_path, SMALL_CONFIG.format(name="twice", max_iterations=10**6))
    proc = subprocess.run(
        [sys.executable, str(driver), str(config), str(tmp_path / "runs"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, proc.stdout + proc.stderr, only_run(tmp_path / "runs")


# the user hammering Ctrl-C on a slow disk: the second one in the middle of model.npz's write
MID_WRITE = """
real_atomic_write = run_files.atomic_write


def atomic_write(path, write):
    def slow_write(f):
        if Path(path).name == "model.npz":
            f.write(b"PK")
            f.flush()
            second_ctrl_c()
        write(f)

    real_atomic_write(path, slow_write)


run_files.atomic_write = atomic_write  # what write_npz & co. call
"""


def test_second_ctrl_c_during_the_final_writes_leaves_no_temp_file(tmp_path: Path) -> None:
    """Once run.json says interrupted a second Ctrl-C ends the process at once (os._exit);
    arriving in the middle of model.npz's atomic write it must not leave the temp file."""
    code, output, run_dir = run_ctrl_c_driver(tmp_path, MID_WRITE)
    assert code == 130, output
    assert read_json(run_dir / "run.json")["status"] == "interrupted"
    # the second Ctrl-C did land in model.npz's write: the process ended before it was saved
    assert not (run_dir / "model.npz").exists()
    # no temp file; the lock file stays (the process ended at once), but nothing holds it
    assert temp_files(run_dir, lock_may_remain=True) == []
    assert_folder_whole(run_dir, lock_may_remain=True)
    assert not runs.is_locked(run_dir)


# the second Ctrl-C the moment the run writer starts saving, before its guard is in place
BEFORE_THE_GUARD = """
real_interrupted = RunWriter.interrupted


def interrupted(self, model):
    second_ctrl_c()
    real_interrupted(self, model)


RunWriter.interrupted = interrupted
"""


def test_a_second_ctrl_c_before_the_save_is_marked_waits_for_it(tmp_path: Path) -> None:
    """Between the first Ctrl-C and run.json saying interrupted, a second one is ignored: a
    test run once left run.json saying running when it landed there."""
    code, output, run_dir = run_ctrl_c_driver(tmp_path, BEFORE_THE_GUARD)
    assert code == 130, output
    assert "Traceback" not in output
    assert "interrupted: " in output and "error:" not in output
    info = assert_folder_whole(run_dir)
    assert info["status"] == "interrupted"
    assert info["stop"]["stopped_by"] == "interrupted"
    assert (run_dir / "model.npz").is_file()


# the second Ctrl-C when everything is saved: right after the run folder is marked (before the
# command's error line) or during Python's shutdown (atexit)
WHEN_SAVED = """
if sys.argv[3] == "after-saving":
    real_interrupted = RunWriter.interrupted

    def interrupted(self, model):
        real_interrupted(self, model)
        second_ctrl_c()

    RunWriter.interrupted = interrupted
else:
    atexit.register(second_ctrl_c)
"""


@pytest.mark.parametrize("when", ["after-saving", "at-shutdown"])
def test_a_late_second_ctrl_c_exits_130_without_a_traceback(tmp_path: Path, when: str) -> None:
    """A second Ctrl-C after the run is saved, wherever it lands (Python's shutdown included:
    CI once saw a KeyboardInterrupt traceback from threading._shutdown), ends with 130."""
    code, output, run_dir = run_ctrl_c_driver(tmp_path, WHEN_SAVED, when)
    assert code == 130, output
    assert "Traceback" not in output
    assert "KeyboardInterrupt" not in output
    assert "interrupted: " in output and "error:" not in output
    info = assert_folder_whole(run_dir, lock_may_remain=True)
    assert info["status"] == "interrupted"
    assert (run_dir / "model.npz").is_file()


# any command interrupted (Python's own SIGINT handler in place, as in evaluate or reproduce),
# then a second Ctrl-C during Python's shutdown
HANDLE_ERRORS_DRIVER = """\
import atexit, os, signal, sys, time

import typer

from scratchnn_cli.cli.common import handle_errors


def second_ctrl_c():
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(1)


@handle_errors
def command():
    raise KeyboardInterrupt  # the first Ctrl-C


atexit.register(second_ctrl_c)
try:
    command()
except typer.Exit as exc:
    sys.exit(exc.exit_code)
"""


def test_any_interrupted_command_exits_130_at_a_second_ctrl_c(tmp_path: Path) -> None:
    driver = tmp_path / "driver.py"
    driver.write_text(HANDLE_ERRORS_DRIVER, encoding="utf-8")
    proc = subprocess.run([sys.executable, str(driver)], capture_output=True, text=True, timeout=60)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 130, output
    assert output.splitlines()[-1] == "interrupted", output  # a plain command: no folder to name
    assert "Traceback" not in output
    assert "KeyboardInterrupt" not in output


def test_ctrl_c_just_after_the_folder_is_created_marks_it_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C between writing run.json ('running') and the start of training (simulated
    in training_set) must still end with run.json saying interrupted."""
    import scratchnn_cli.experiment as experiment

    def interrupted_now(*args: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "training_set", interrupted_now)
    config = write_config(tmp_path, SMALL_CONFIG.format(name="early", max_iterations=100))
    result = invoke("train", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 130, result.output
    assert read_json(only_run(tmp_path / "runs") / "run.json")["status"] == "interrupted"


# --------------------------------------------------------------------------- resume in-process


def make_config(dataset: str, model: dict[str, Any], **train_kw: Any) -> ExperimentConfig:
    return ExperimentConfig.model_validate(
        {"seed": 3, "data": {"dataset": dataset}, "model": model, "train": train_kw}
    )


RESUME_CASES = {
    # the course assignment: single-sample SGD, sampling with replacement, eps stopping rule
    "sgd-batch-1": make_config("blobs400", {"struct": [5]}, lr=0.05, max_iterations=200 * 12),
    "adam-batch-16-dropout": make_config(
        "digits",
        {"struct": [16], "activation": "relu", "init": "he", "dropout": 0.2},
        optimizer={"name": "adam"},
        lr=0.01,
        eps=0,
        batch_size=16,
        sampling="shuffle",
        max_epochs=8,
    ),
    "early-stopping": make_config(
        "circles500",
        {"struct": [8], "activation": "tanh"},
        optimizer="adam",
        lr=0.1,
        eps=0,
        batch_size=16,
        max_epochs=60,
        early_stopping={"patience": 3, "min_delta": 0.001},
    ),
    "float32-momentum-l2-step": make_config(
        "blobs400",
        {"struct": [4, 3], "dtype": "float32", "init": "xavier"},
        optimizer={"name": "momentum", "beta": 0.8},
        lr=0.2,
        eps=0,
        batch_size=7,
        l2=0.001,
        lr_schedule={"name": "step", "drop": 0.5, "every": 3},
        max_epochs=10,
    ),
}


def fit(
    config: ExperimentConfig,
    stop_at_epoch: int | None = None,
    stop_at_forward: int | None = None,
    resume_from: Snapshot | None = None,
) -> tuple[TrainResult, list[np.ndarray], list[Snapshot], int]:
    """What run_experiment does, minus the files: fresh data, streams and initial weights.

    A Ctrl-C (KeyboardInterrupt) is raised by the epoch callback at epoch ``stop_at_epoch``,
    or by the network's ``stop_at_forward``-th forward pass (mid-epoch, where a real Ctrl-C
    nearly always lands). Returns (result, weights, checkpoints, forward passes); the result's
    ``stopped_by`` is "interrupted" when the KeyboardInterrupt came through.
    """
    dataset = load_dataset(config.data, config.seed)
    streams = rng_streams(config.seed)
    net = build_network(config, dataset, streams["init"], streams["dropout"])
    X, y = training_set(config, dataset)
    checkpoints: list[Snapshot] = []
    forwards = 0
    real_forward = net.forward

    def forward(X: np.ndarray, training: bool = False) -> np.ndarray:
        nonlocal forwards
        forwards += 1
        if forwards == stop_at_forward:
            raise KeyboardInterrupt
        return real_forward(X, training)

    net.forward = forward  # type: ignore[method-assign]

    def on_epoch(record: Any) -> None:
        if record.epoch == stop_at_epoch:
            raise KeyboardInterrupt

    result = TrainResult()
    try:
        train(
            net,
            X,
            y,
            dataset.n_classes,
            config.train,
            streams["sampling"],
            validation=dataset.split("val"),
            hooks=Hooks(on_epoch, checkpoints.append, checkpoint_every=2),
            result=result,
            resume_from=resume_from,
        )
    except KeyboardInterrupt:
        assert result.stopped_by == "interrupted"
    return result, [p.copy() for p in net.params()], checkpoints, forwards


@pytest.fixture(scope="module")
def whole_fits() -> dict[str, tuple[TrainResult, list[np.ndarray], int]]:
    fits = {}
    for key, config in RESUME_CASES.items():
        result, weights, _, forwards = fit(config)
        assert result.stopped_by != "interrupted"
        fits[key] = (result, weights, forwards)
    assert fits["early-stopping"][0].stopped_by == "early_stopping"
    assert fits["sgd-batch-1"][0].stopped_by == "max_iterations"
    return fits


def history_rows(result: TrainResult) -> list[tuple[Any, ...]]:
    """Every column of the history except the wall-clock seconds."""
    return [
        (r.epoch, r.iteration, r.cost, r.train_accuracy, r.val_cost, r.val_accuracy, r.lr)
        for r in result.history
    ]


def check_resume(
    config: ExperimentConfig,
    whole: TrainResult,
    whole_weights: list[np.ndarray],
    stopped: tuple[TrainResult, list[np.ndarray], list[Snapshot], int],
    via_disk: Path | None,
    what: str,
) -> None:
    """The Ctrl-C'd fit rolled back to its last finished epoch, checkpointed it, and a fresh
    fit resumed from that checkpoint ends exactly like the uninterrupted one."""
    result, weights, checkpoints, _ = stopped
    assert result.stopped_by == "interrupted", what
    snapshot = checkpoints[-1]
    assert result.epochs == snapshot.epochs, what
    assert [r.epoch for r in result.history] == list(range(1, snapshot.epochs + 1)), what
    assert [r.epoch for r in snapshot.history] == list(range(1, snapshot.epochs + 1)), what
    assert all(np.array_equal(a, b) for a, b in zip(weights, snapshot.params, strict=True))
    if via_disk is not None:
        runs.write_checkpoint(via_disk, snapshot)
        assert temp_files(via_disk.parent) == []
        snapshot = runs.read_checkpoint(via_disk)
    resumed, resumed_weights, _, _ = fit(config, resume_from=snapshot)
    assert (resumed.stopped_by, resumed.epochs, resumed.iterations, resumed.best_epoch) == (
        whole.stopped_by,
        whole.epochs,
        whole.iterations,
        whole.best_epoch,
    ), what
    assert history_rows(resumed) == history_rows(whole), what
    costs = np.array([r.cost for r in resumed.history])
    assert np.array_equal(costs, np.array([r.cost for r in whole.history])), what
    for a, b in zip(resumed_weights, whole_weights, strict=True):
        assert a.dtype == b.dtype, what
        assert np.array_equal(a, b), what


@pytest.mark.parametrize("via_disk", [False, True], ids=["in-memory", "checkpoint-file"])
@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_after_a_mid_epoch_ctrl_c_gives_identical_weights(
    whole_fits: dict[str, tuple[TrainResult, list[np.ndarray], int]],
    case: str,
    via_disk: bool,
    tmp_path: Path,
) -> None:
    whole, whole_weights, forwards = whole_fits[case]
    # the first forward pass, a third and two thirds in, and the very last one (the last
    # epoch's validation pass; for early stopping, in the middle of the patience)
    for k in sorted({1, forwards // 3, 2 * forwards // 3, forwards}):
        stopped = fit(RESUME_CASES[case], stop_at_forward=k)
        disk = tmp_path / f"checkpoint-{k}.npz" if via_disk else None
        check_resume(RESUME_CASES[case], whole, whole_weights, stopped, disk, f"forward {k}")


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_after_a_ctrl_c_in_the_epoch_callback_gives_identical_weights(
    whole_fits: dict[str, tuple[TrainResult, list[np.ndarray], int]],
    case: str,
    tmp_path: Path,
) -> None:
    """A Ctrl-C inside the epoch callback (the CLI's progress line, the learning-curve redraw)
    comes after the epoch was added to the history: it must be dropped with the rollback."""
    whole, whole_weights, _ = whole_fits[case]
    for k in sorted({1, max(1, whole.epochs // 2), whole.epochs}):
        stopped = fit(RESUME_CASES[case], stop_at_epoch=k)
        disk = tmp_path / f"checkpoint-{k}.npz"
        check_resume(RESUME_CASES[case], whole, whole_weights, stopped, disk, f"epoch {k}")


# --------------------------------------------------------------------------- failed writes


class _FailingOs:
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


def write_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: Path) -> list[str]:
    """The files a successful run writes atomically, in order (one rename each)."""
    counting = _FailingOs(None)
    monkeypatch.setattr(runs.folder, "os", counting)
    result = invoke("train", config, "--runs-dir", tmp_path / "count")
    assert result.exit_code == 0, result.output
    return counting.calls


def check_failed_write(result: Result, runs_dir: Path, what: str) -> dict[str, Any]:
    assert result.exit_code == 1, (what, result.output)
    assert_no_traceback(result)
    errors = error_lines(result.output)
    assert len(errors) == 1, (what, result.output)
    assert "No space left on device" in errors[0], (what, errors[0])
    assert "stopped:" not in result.stdout, what
    folders = run_folders(runs_dir)
    assert len(folders) <= 1, folders
    return assert_folder_whole(folders[0]) if folders else {}


def test_a_failed_write_at_any_point_leaves_whole_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, SMALL_CONFIG.format(name="full", max_iterations=400))
    calls = write_calls(tmp_path, monkeypatch, config)
    for name in ("config.yaml", "run.json", "checkpoint.npz", "history.csv", "model.npz"):
        assert name in calls, calls
    for k in range(1, len(calls) + 1):
        failing = _FailingOs(k)
        monkeypatch.setattr(runs.folder, "os", failing)
        runs_dir = tmp_path / f"runs-{k}"
        result = invoke("train", config, "--runs-dir", runs_dir)
        what = f"write {k} ({calls[k - 1]}) failed"
        if calls[k - 1] == "learning_curve.png":  # a picture never costs the run: a note
            assert result.exit_code == 0, (what, result.output)
            assert "note: learning_curve.png not drawn (OSError" in result.output, what
            assert assert_folder_whole(only_run(runs_dir))["status"] == "completed", what
            continue
        info = check_failed_write(result, runs_dir, what)
        if "run.json" in calls[: k - 1]:  # run.json was written before the failure
            assert info["status"] == "failed", what
            assert "No space left on device" in info["error"], what
            assert (only_run(runs_dir) / "error.log").is_file(), what


def test_the_results_do_not_write_history_csv_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The final checkpoint writes history.csv with the whole history; the results that follow
    (model, metrics, run.json) do not write the same file again."""
    config = write_config(tmp_path, SMALL_CONFIG.format(name="once", max_iterations=1000))
    calls = write_calls(tmp_path, monkeypatch, config)
    assert calls.count("history.csv") == calls.count("checkpoint.npz") >= 1, calls
    assert calls[-4:] == ["model.npz", "metrics.json", "confusion_matrix.png", "run.json"], calls
    run_dir = only_run(tmp_path / "count")
    epochs = read_json(run_dir / "run.json")["stop"]["epochs"]
    assert len(pd.read_csv(run_dir / "history.csv")) == epochs == 5  # 1000 updates of 200


def test_a_failed_final_run_json_write_marks_the_run_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The very last write (run.json 'completed') fails once: a failed write (exit 1, 'could
    not write the run folder'), and the retry marks the run failed, not 'running'."""
    config = write_config(tmp_path, SMALL_CONFIG.format(name="full", max_iterations=400))
    calls = write_calls(tmp_path, monkeypatch, config)
    assert calls[-1] == "run.json"
    monkeypatch.setattr(runs.folder, "os", _FailingOs(len(calls)))
    result = invoke("train", config, "--runs-dir", tmp_path / "runs")
    info = check_failed_write(result, tmp_path / "runs", "the final run.json write failed")
    assert "could not write the run folder" in error_lines(result.output)[0]
    assert info["status"] == "failed"


def test_a_disk_that_stays_full_still_leaves_whole_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, SMALL_CONFIG.format(name="full", max_iterations=400))
    calls = write_calls(tmp_path, monkeypatch, config)
    for k in sorted({1, 2, 3, len(calls) // 2, len(calls)}):
        monkeypatch.setattr(runs.folder, "os", _FailingOs(k, once=False))
        runs_dir = tmp_path / f"runs-{k}"
        result = invoke("train", config, "--runs-dir", runs_dir)
        info = check_failed_write(result, runs_dir, f"writes from {k} ({calls[k - 1]}) on failed")
        # run.json keeps its last complete version (it cannot say 'failed' on a full disk)
        assert info.get("status") in (None, "running", "failed")


def test_a_failed_write_while_saving_an_interrupted_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C, then the disk is full while the interrupted run is saved: exit 130 or 1,
    one error line, whole files."""
    import scratchnn_cli.experiment as experiment

    real_train = experiment.train

    def train_then_ctrl_c(*args: Any, hooks: Any, **kwargs: Any) -> Any:
        on_epoch = hooks.on_epoch

        def stop(record: Any) -> None:
            on_epoch(record)
            if record.epoch == 2:
                monkeypatch.setattr(runs.folder, "os", _FailingOs(1, once=False))
                raise KeyboardInterrupt

        hooks.on_epoch = stop
        return real_train(*args, hooks=hooks, **kwargs)

    monkeypatch.setattr(experiment, "train", train_then_ctrl_c)
    config = write_config(tmp_path, SMALL_CONFIG.format(name="full", max_iterations=10**6))
    result = invoke("train", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code in (1, 130), result.output
    assert_no_traceback(result)
    assert len(error_lines(result.output)) == 1, result.output
    info = assert_folder_whole(only_run(tmp_path / "runs"))
    assert info["status"] == "running"  # the last version that could be written


def test_a_read_only_runs_dir_is_a_failed_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """root (as in CI) may write into a read-only folder, so ``Path.mkdir`` refuses as the
    kernel does for anyone else: EACCES for a new entry in a folder without write permission."""
    real_mkdir = Path.mkdir
    refused: list[Path] = []

    def mkdir(self: Path, *args: Any, **kwargs: Any) -> None:
        if not self.exists() and not self.parent.stat().st_mode & stat.S_IWUSR:
            refused.append(self)
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    config = write_config(tmp_path, SMALL_CONFIG.format(name="ro", max_iterations=100))
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    runs_dir.chmod(0o555)
    try:
        result = invoke("train", config, "--runs-dir", runs_dir)
    finally:
        runs_dir.chmod(0o755)
    assert [p.parent for p in refused] == [runs_dir]  # the run folder, refused once
    assert result.exit_code == 1, result.output
    assert_no_traceback(result)
    errors = error_lines(result.output)
    assert len(errors) == 1, result.output
    assert "Permission denied" in errors[0] and str(runs_dir) in errors[0], errors[0]
    assert run_folders(runs_dir) == []


@pytest.mark.parametrize("below", ["", "runs"], ids=["the-file", "a-folder-below-it"])
def test_a_runs_dir_that_is_a_file_is_bad_input(tmp_path: Path, below: str) -> None:
    """--runs-dir naming a file (or a folder inside one): exit 2, one line naming the file,
    nothing created or changed."""
    config = write_config(tmp_path, SMALL_CONFIG.format(name="f", max_iterations=100))
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    before = sorted(p.name for p in tmp_path.iterdir())
    result = invoke("train", config, "--runs-dir", blocker / below if below else blocker)
    line = assert_one_line_error(result, 2)
    assert f"{blocker}: is a file, not a folder" in line, line
    assert "internal error" not in line, line
    assert blocker.read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


class _Halfway(Exception):
    pass


@pytest.mark.parametrize("error", [_Halfway, KeyboardInterrupt, OSError])
def test_atomic_write_keeps_the_old_file_when_the_writer_fails(
    tmp_path: Path, error: type[BaseException]
) -> None:
    target = tmp_path / "run.json"
    target.write_bytes(b'{"status": "running"}\n')

    def write(f: Any) -> None:
        f.write(b'{"status": "comp')
        f.flush()
        raise error("halfway")

    with pytest.raises(error, match="^halfway$"):
        runs.atomic_write(target, write)
    assert target.read_bytes() == b'{"status": "running"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_atomic_write_keeps_the_old_file_when_the_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "model.npz"
    runs.write_npz(target, {"W0": np.zeros((2, 2))})
    old = target.read_bytes()
    monkeypatch.setattr(runs.folder, "os", _FailingOs(1))
    with pytest.raises(OSError, match="No space left"):
        runs.write_npz(target, {"W0": np.ones((2, 2))})
    assert target.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


def test_atomic_write_replaces_the_file_and_leaves_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "history.csv"
    target.write_text("old\n")
    runs.write_text(target, "epoch,iteration,cost\n1,10,0.5\n")
    assert target.read_text() == "epoch,iteration,cost\n1,10,0.5\n"
    runs.write_text(tmp_path / "new.txt", "fresh")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv", "new.txt"]


class _SpyOs:
    """Stands in for ``os`` inside scratchnn_cli.runs.folder: records each fsync (by the path of
    the fd's file) and each rename, in the order they happen; ``fail`` names the call (and the
    file) that raises ENOSPC instead, e.g. ``("fsync", "b.txt")``."""

    def __init__(self, fail: tuple[str, str] | None = None) -> None:
        self.fail = fail
        self.events: list[tuple[str, str]] = []

    def _event(self, kind: str, name: str) -> None:
        self.events.append((kind, name))
        if self.fail == (kind, name):
            raise OSError(ENOSPC, "No space left on device")

    def fsync(self, fd: int) -> None:
        time.sleep(0.01)  # a slow disk: a rename must still wait for every fsync
        name = Path(os.readlink(f"/proc/self/fd/{fd}")).name
        self._event("fsync", name.split(".")[1] + "." + name.split(".")[2])  # .a.txt.xyz.tmp
        os.fsync(fd)

    def replace(self, src: Any, dst: Any) -> None:
        self._event("replace", Path(dst).name)
        os.replace(src, dst)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


NEW_FILES = [("a.txt", b"new a"), ("b.txt", b"new b"), ("c.txt", b"new c")]


def old_folder(tmp_path: Path) -> Path:
    """a.txt and b.txt in their old versions; no c.txt yet."""
    (tmp_path / "a.txt").write_bytes(b"old a")
    (tmp_path / "b.txt").write_bytes(b"old b")
    return tmp_path


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name an fd")
def test_write_files_fsyncs_every_file_before_any_rename_then_renames_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = old_folder(tmp_path)
    spy = _SpyOs()
    monkeypatch.setattr(runs.folder, "os", spy)
    runs.write_files(folder, NEW_FILES)
    kinds = [kind for kind, _ in spy.events]
    assert kinds == ["fsync"] * 3 + ["replace"] * 3, spy.events
    assert sorted(name for kind, name in spy.events if kind == "fsync") == [
        "a.txt",
        "b.txt",
        "c.txt",
    ]
    assert [name for kind, name in spy.events if kind == "replace"] == ["a.txt", "b.txt", "c.txt"]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == dict(NEW_FILES)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name an fd")
def test_write_files_renames_nothing_when_an_fsync_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = old_folder(tmp_path)
    spy = _SpyOs(fail=("fsync", "c.txt"))
    monkeypatch.setattr(runs.folder, "os", spy)
    with pytest.raises(OSError, match="No space left"):
        runs.write_files(folder, NEW_FILES)
    assert [kind for kind, _ in spy.events] == ["fsync"] * 3  # all waited for, none renamed
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == {
        "a.txt": b"old a",
        "b.txt": b"old b",
    }


@pytest.mark.parametrize("k", [1, 2, 3])
def test_write_files_keeps_the_old_versions_from_a_failed_rename_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, k: int
) -> None:
    folder = old_folder(tmp_path)
    monkeypatch.setattr(runs.folder, "os", _FailingOs(k))
    with pytest.raises(OSError, match="No space left"):
        runs.write_files(folder, NEW_FILES)
    expected = {"a.txt": b"old a", "b.txt": b"old b"}
    expected.update(dict(NEW_FILES[: k - 1]))  # renamed before the failure
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == expected


@pytest.mark.parametrize("error", [KeyboardInterrupt, TypeError])
def test_write_files_leaves_no_temp_file_when_writing_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: type[BaseException]
) -> None:
    folder = old_folder(tmp_path)
    real_fsync_all = runs.folder.fsync_all

    def fsync_all(fds: Any) -> None:
        assert len(temp_files(folder)) == 3  # the three temp files exist by then
        real_fsync_all(fds)
        raise error("halfway")

    monkeypatch.setattr(runs.folder, "fsync_all", fsync_all)
    with pytest.raises(error, match="^halfway$"):
        runs.write_files(folder, NEW_FILES)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == {
        "a.txt": b"old a",
        "b.txt": b"old b",
    }


def test_write_files_leaves_no_thread_to_wait_for_at_exit(tmp_path: Path) -> None:
    """The fsync threads are kept between calls, but as daemons: a Ctrl-C while the interpreter
    exits must not land in a join of them (a traceback after 'error: interrupted')."""
    import threading

    runs.write_files(tmp_path, [("a.txt", b"a"), ("b.txt", b"b")])
    fsync = [t for t in threading.enumerate() if t.name == "scratchnn-fsync"]
    assert fsync and all(t.daemon for t in fsync)  # (other tests may leave threads of their own)


def _write_in_a_forked_child(folder: str) -> None:
    runs.write_files(Path(folder), [("child.txt", b"from the child")])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_write_files_works_in_a_forked_child(tmp_path: Path) -> None:
    """A child forked after the parent's fsync threads started has none of them: it must make
    its own (the parent's pool, copied, would take the work and never do it)."""
    import multiprocessing

    runs.write_files(tmp_path, [("parent.txt", b"x"), ("parent2.txt", b"y")])
    child = multiprocessing.get_context("fork").Process(
        target=_write_in_a_forked_child, args=(str(tmp_path),)
    )
    child.start()
    child.join(30)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0
    assert (tmp_path / "child.txt").read_bytes() == b"from the child"


# --------------------------------------------------------------------------- gradcheck


GRADCHECK_OVERRIDES = ["--set", "model.activation=tanh", "--set", "train.l2=0.01"]


@pytest.mark.parametrize("config", ["circles_shallow.yaml", "digits_softmax.yaml"])
def test_gradcheck_passes(config: str) -> None:
    result = invoke("gradcheck", CONFIGS / config, *GRADCHECK_OVERRIDES)
    assert result.exit_code == 0, result.output
    assert_no_traceback(result)
    assert "gradient check" in result.stdout
    assert "relative error" in result.stdout
    assert "passed" in result.stdout
    assert "FAIL" not in result.stdout
    # one row per W and b of each of the two layers
    assert result.stdout.count(" ok") >= 4, result.stdout


def test_gradcheck_fails_with_4_on_a_broken_backprop(monkeypatch: pytest.MonkeyPatch) -> None:
    def wrong_derivative(self: Sigmoid, Z: np.ndarray, A: np.ndarray, dA: np.ndarray) -> Any:
        return dA * A  # forgets the (1 - A) factor

    monkeypatch.setattr(Sigmoid, "dZ", wrong_derivative)
    result = invoke("gradcheck", CONFIGS / "circles_shallow.yaml")
    assert result.exit_code == 4, result.output
    assert_no_traceback(result)
    assert "FAILED" in result.stdout
    assert "FAIL" in result.stdout


def test_gradcheck_of_a_bad_config_is_exit_2(tmp_path: Path) -> None:
    config = write_config(tmp_path, SMALL_CONFIG.format(name="g", max_iterations=100))
    assert_one_line_error(invoke("gradcheck", config, "--set", "model.activation=swish"))


# --------------------------------------------------------------------------- runs listing


def test_runs_lists_status_and_accuracy(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    good = write_config(tmp_path, SMALL_CONFIG.format(name="a", max_iterations=200), "a.yaml")
    assert invoke("train", good, "--runs-dir", runs_dir).exit_code == 0
    bad = write_config(tmp_path, DIVERGING_CONFIG.replace("name: boom", "name: b"), "b.yaml")
    assert invoke("train", bad, "--runs-dir", runs_dir).exit_code == 3
    (runs_dir / "not-a-run").mkdir()  # ignored: no run.json
    completed, diverged = run_folders(runs_dir)[:2]
    if completed.name.endswith("-b"):
        completed, diverged = diverged, completed
    result = invoke("runs", runs_dir)
    assert result.exit_code == 0, result.output
    assert_no_traceback(result)
    table = result.stdout
    assert "not-a-run" not in table
    for folder, status in ((completed, "completed"), (diverged, "diverged")):
        row = next(line for line in table.splitlines() if folder.name in line)
        assert status in row, row
        accuracy = read_json(folder / "metrics.json")["test"]["accuracy"]
        assert f"{accuracy:.4f}" in row, row


def test_runs_of_a_missing_folder_is_exit_2(tmp_path: Path) -> None:
    assert_one_line_error(invoke("runs", tmp_path / "nowhere"))


def test_runs_of_an_empty_folder_says_so(tmp_path: Path) -> None:
    result = invoke("runs", tmp_path)
    assert result.exit_code == 0, result.output
    assert "no runs" in result.stdout


# --------------------------------------------------------------------------- bad CSV data


def csv_rows(n: int, label: Callable[[int], object], x1: Callable[[int], object] = str) -> str:
    lines = ["x1,x2,label"] + [f"{x1(i)},{(i * 7) % 5 / 5},{label(i)}" for i in range(n)]
    return "\n".join(lines) + "\n"


BAD_CSVS = {
    "missing value": (
        csv_rows(40, lambda i: i % 2, lambda i: "" if i == 7 else str(i)),
        "missing values",
    ),
    "non-numeric feature": (
        csv_rows(40, lambda i: i % 2, lambda i: "abc" if i == 3 else str(i)),
        "non-numeric",
    ),
    "single class": (csv_rows(40, lambda i: "cat"), "single class"),
    "too few rows": (csv_rows(4, lambda i: i % 2), "too few"),
    "class with one sample": (csv_rows(40, lambda i: 2 if i == 0 else i % 2), "needs at least 2"),
    "header only": ("x1,x2,label\n", "no data rows"),
    "empty file": ("", "empty"),
    "one column": ("label\n0\n1\n0\n1\n", "at least two columns"),
    "infinite feature": (
        csv_rows(40, lambda i: i % 2, lambda i: "inf" if i == 5 else str(i)),
        "infinite",
    ),
    "fractional labels": (csv_rows(40, lambda i: i % 2 + 0.5), "non-integer"),
    "ragged rows": ("x1,x2,label\n1,2,0\n1,2,3,4,5\n", "cannot parse"),
    "binary junk": ("\x00\xff\xfe garbage \x00\n\x01,\x02\n", None),
}


@pytest.mark.parametrize("case", list(BAD_CSVS))
def test_bad_csv_is_exit_2_before_any_run_folder(tmp_path: Path, case: str) -> None:
    text, expected = BAD_CSVS[case]
    data = tmp_path / "data.csv"
    data.write_bytes(text.encode("utf-8", "surrogateescape"))
    config = write_config(
        tmp_path, f"name: csv\ndata:\n  dataset: {data}\ntrain:\n  max_iterations: 100\n"
    )
    # 4 rows split (0.9, 0.05, 0.05) leave the val and test splits empty
    split = ["--set", "data.split=[0.9, 0.05, 0.05]"] if case == "too few rows" else []
    result = invoke("train", config, *split, "--runs-dir", tmp_path / "runs")
    line = assert_one_line_error(result)
    assert str(data) in line
    if expected is not None:
        assert expected in line, line
    assert not (tmp_path / "runs").exists()


def test_unknown_target_column_is_exit_2(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text(csv_rows(40, lambda i: i % 2))
    config = write_config(tmp_path, f"name: csv\ndata:\n  dataset: {data}\n")
    result = invoke("train", config, "--set", "data.target=nope", "--runs-dir", tmp_path / "r")
    assert "target column 'nope' not found" in assert_one_line_error(result)
    assert not (tmp_path / "r").exists()


def test_string_labels_keep_their_class_names(tmp_path: Path) -> None:
    data = tmp_path / "pets.csv"
    data.write_text(csv_rows(40, lambda i: ["dog", "cat"][i % 2], lambda i: str(i % 2 + i / 100)))
    config = write_config(
        tmp_path,
        f"name: pets\ndata:\n  dataset: {data}\nmodel:\n  struct: [3]\n"
        "train:\n  lr: 1.0\n  eps: 0\n  max_iterations: 1000\n",
    )
    result = invoke("train", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    run_dir = only_run(tmp_path / "runs")
    info = assert_folder_whole(run_dir)
    assert info["status"] == "completed"
    assert info["data"]["classes"] == ["cat", "dog"]  # text labels in sorted order
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["dataset"] == str(data)
    metrics = read_json(run_dir / "metrics.json")
    # x1 >= 1 for every cat, < 0.4 for every dog: learned, every split is classified right,
    # which only holds if the text labels map to the same class index in every split
    for split, n in (("train", 20), ("val", 10), ("test", 10)):
        assert metrics[split]["confusion_matrix"] == [[n // 2, 0], [0, n // 2]], split
        assert metrics[split]["accuracy"] == 1.0, split
    evaluation = invoke("evaluate", run_dir)
    assert evaluation.exit_code == 0, evaluation.output
    assert "cat" in evaluation.stdout and "dog" in evaluation.stdout
    assert read_json(run_dir / "evaluation-test.json")["class_names"] == ["cat", "dog"]


def test_labels_with_dollar_signs_are_plain_text(tmp_path: Path) -> None:
    """Class names go to matplotlib as tick labels; '$...$' must not be parsed as mathtext
    (an invalid formula like '$x^$' failed the run after training)."""
    data = tmp_path / "prices.csv"
    data.write_text(csv_rows(40, lambda i: ["$x^$", "$y$"][i % 2]))
    config = write_config(
        tmp_path, f"name: prices\ndata:\n  dataset: {data}\ntrain:\n  max_iterations: 100\n"
    )
    result = invoke("train", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    assert read_json(only_run(tmp_path / "runs") / "run.json")["status"] == "completed"


@pytest.mark.parametrize("landing", [0, 1])
def test_ctrl_c_just_after_a_temp_file_is_created_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, landing: int
) -> None:
    """A Ctrl-C (KeyboardInterrupt) landing between the creation of a temp file and the code
    that tracks it (seen in CI once checkpoints came every few milliseconds: a SIGTERM left
    .checkpoint.npz.*.tmp). Simulated at the first and at the second file of a write."""
    import scratchnn_cli.runs.folder as run_files

    real_fdopen, calls = os.fdopen, []

    def fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        calls.append(fd)
        if len(calls) == landing + 1:  # the temp file exists: the interrupt lands now
            os.close(fd)
            raise KeyboardInterrupt
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(run_files.os, "fdopen", fdopen)
    with pytest.raises(KeyboardInterrupt):
        run_files.write_files(tmp_path, [("a.txt", b"a"), ("b.txt", b"b")])
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    calls[:] = [-1] * landing  # atomic_write opens one file: let the interrupt land there
    with pytest.raises(KeyboardInterrupt):
        run_files.atomic_write(tmp_path / "c.txt", lambda f: f.write(b"c"))
    assert sorted(p.name for p in tmp_path.iterdir()) == []
