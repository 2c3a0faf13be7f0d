"""interrupts.py: Ctrl-C and SIGTERM, real signals to a real process. The run stops with exit
code 130, saved and resumable; a second Ctrl-C, wherever it lands (before the save is marked,
in the middle of a write, after saving, during Python's shutdown), never leaves a half-written
file, a temp file or a traceback."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers import (
    DIGITS_CONFIG,
    FINITE_EPOCHS,
    FINITE_ITERATIONS,
    SMALL_CONFIG,
    assert_folder_whole,
    assert_no_traceback,
    assert_same_arrays,
    history_frame,
    invoke,
    model_arrays,
    only_run,
    read_json,
    run_folders,
    temp_files,
    write_config,
)

from scratchnn_cli import runs

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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


# --------------------------------------------------------------------------- a second Ctrl-C


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


@pytest.mark.slow
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


def interrupted(self, model, *extra):
    second_ctrl_c()
    real_interrupted(self, model, *extra)


RunWriter.interrupted = interrupted
"""


@pytest.mark.slow
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

    def interrupted(self, model, *extra):
        real_interrupted(self, model, *extra)
        second_ctrl_c()

    RunWriter.interrupted = interrupted
else:
    atexit.register(second_ctrl_c)
"""


@pytest.mark.slow
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


@pytest.mark.slow
def test_any_interrupted_command_exits_130_at_a_second_ctrl_c(tmp_path: Path) -> None:
    driver = tmp_path / "driver.py"
    driver.write_text(HANDLE_ERRORS_DRIVER, encoding="utf-8")
    proc = subprocess.run([sys.executable, str(driver)], capture_output=True, text=True, timeout=60)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 130, output
    assert output.splitlines()[-1] == "interrupted", output  # a plain command: no folder to name
    assert "Traceback" not in output
    assert "KeyboardInterrupt" not in output


# ------------------------------------------------------------------------- a Ctrl-C before training


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
