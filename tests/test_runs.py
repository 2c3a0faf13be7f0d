"""Run folders: run.json as a RunRecord, folders written by scratchnn 0.1.0, the run lock."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from helpers import LEGACY_RUNS, SMALL_CONFIG, assert_one_line_error, invoke, read_json

import scratchnn_cli.experiment as experiment
import scratchnn_cli.runs.writer as writer
from scratchnn_cli.errors import RunFolderError
from scratchnn_cli.runs import (
    KILLED,
    LOCK_NAME,
    RunLock,
    RunRecord,
    is_locked,
    list_runs,
    load_run_record,
    read_checkpoint,
)

LEGACY_STATUS = {
    "legacy_small": "completed",
    "legacy_diverged": "diverged",
    "legacy_interrupted": "interrupted",
    "gold_dropout_adam": "completed",
    "gold_digits_f32": "completed",
}


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def fingerprint(folder: Path) -> dict[str, str]:
    """name -> sha256 of every file in ``folder`` (hidden ones included)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def legacy_fingerprints() -> dict[str, dict[str, str]]:
    return {name: fingerprint(LEGACY_RUNS / name) for name in LEGACY_STATUS}


@pytest.fixture
def legacy_copy(tmp_path: Path, legacy_fingerprints: dict[str, dict[str, str]]) -> Iterator[Any]:
    """copy(name) -> a copy of a 0.1.0 run folder in tmp_path; the fixture itself must end
    unchanged (checked after the test)."""

    def copy(name: str) -> Path:
        return Path(shutil.copytree(LEGACY_RUNS / name, tmp_path / name))

    yield copy
    for name, files in legacy_fingerprints.items():
        assert fingerprint(LEGACY_RUNS / name) == files, f"{name}: the fixture was modified"


# --------------------------------------------------------------------------- run.json


@pytest.mark.parametrize("name", sorted(LEGACY_STATUS))
def test_every_legacy_run_json_validates(name: str) -> None:
    raw = read_json(LEGACY_RUNS / name / "run.json")
    record = RunRecord.model_validate(raw)
    assert record.status == LEGACY_STATUS[name]
    assert record.name == name
    assert record.versions["scratchnn"] == "0.1.0"
    assert record.stop is not None and record.stop.epochs == raw["stop"]["epochs"] > 0
    assert record.data["fingerprint"] == raw["data"]["fingerprint"]
    assert record.resumed == []  # 0.1.0 wrote no "resumed" key: the default
    via_folder, as_read = load_run_record(LEGACY_RUNS / name)
    assert via_folder == record and as_read == raw


def test_unknown_keys_are_kept() -> None:
    raw = read_json(LEGACY_RUNS / "legacy_small" / "run.json")
    raw["written_by_a_newer_version"] = {"anything": [1, 2]}
    raw["stop"]["also_new"] = "kept"
    record = RunRecord.model_validate(raw)
    dumped = record.model_dump()
    assert dumped["written_by_a_newer_version"] == {"anything": [1, 2]}
    assert dumped["stop"]["also_new"] == "kept"


MALFORMED = {
    "not-json": ("{", "unreadable"),
    "a-list": ("[]", "valid dictionary"),
    "no-status": ({"name": "x"}, "status: Field required"),
    "unknown-status": ({"status": "done"}, "status: Input should be 'running'"),
    "string-seconds": ({"status": "completed", "seconds": "fast"}, "seconds:"),
    "bool-pid": ({"status": "completed", "pid": True}, "pid:"),
    "stop-without-epochs": (
        {"status": "completed", "stop": {"stopped_by": "eps", "reason": "r", "iterations": 1}},
        "stop.epochs: Field required",
    ),
    "data-not-a-mapping": ({"status": "completed", "data": "blobs"}, "data:"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_run_json_is_one_line(legacy_copy: Any, case: str) -> None:
    content, expected = MALFORMED[case]
    run_dir = legacy_copy("legacy_small")
    text = content if isinstance(content, str) else json.dumps(content)
    (run_dir / "run.json").write_text(text, encoding="utf-8")
    for args in (("evaluate", run_dir), ("report", run_dir), ("train", "--resume", run_dir)):
        line = assert_one_line_error(invoke(*args))
        assert f"{run_dir / 'run.json'}:" in line, (args, line)
        assert expected in line, (args, line)
    assert (run_dir / "run.json").read_text(encoding="utf-8") == text
    assert not (run_dir / LOCK_NAME).exists()
    (row,) = list_runs(run_dir.parent)
    assert row.status == "unreadable"


# --------------------------------------------------------------------------- 0.1.0 folders


@pytest.mark.parametrize("name", ["legacy_small", "gold_digits_f32", "gold_dropout_adam"])
def test_evaluate_a_legacy_run(legacy_copy: Any, name: str) -> None:
    run_dir = legacy_copy(name)
    result = invoke("evaluate", run_dir)
    assert result.exit_code == 0, result.output
    evaluation = read_json(run_dir / "evaluation-test.json")
    recorded = read_json(run_dir / "metrics.json")["test"]
    assert (evaluation["n"], evaluation["accuracy"]) == (recorded["n"], recorded["accuracy"])
    assert evaluation["confusion_matrix"] == recorded["confusion_matrix"]
    assert evaluation["held_out"] is True


def test_report_of_a_legacy_run(legacy_copy: Any) -> None:
    run_dir = legacy_copy("legacy_small")
    before = {p.name for p in run_dir.iterdir()}
    result = invoke("report", run_dir)
    assert result.exit_code == 0, result.output
    assert {p.name for p in run_dir.iterdir()} == before | {"report.html"}
    assert (run_dir / "report.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_resume_a_legacy_interrupted_run(legacy_copy: Any) -> None:
    run_dir = legacy_copy("legacy_interrupted")
    before = read_json(run_dir / "run.json")
    result = invoke("train", "--resume", run_dir, "--set", "train.max_iterations=50000")
    assert result.exit_code == 0, result.output
    info = read_json(run_dir / "run.json")
    assert info["status"] == "completed"
    assert info["stop"]["stopped_by"] == "max_iterations"
    assert info["stop"]["iterations"] == 50_000  # 250 samples, batch 1: 200 epochs
    assert info["resumed"] == [
        {
            "at": info["resumed"][0]["at"],
            "from_epoch": 177,
            "overrides": ["train.max_iterations=50000"],
        }
    ]
    assert info["started"] == before["started"]  # the same run, gone on
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history["epoch"]) == list(range(1, 201))
    assert not (run_dir / LOCK_NAME).exists()


def test_resume_a_legacy_diverged_run_with_a_lower_lr(legacy_copy: Any) -> None:
    """0.1.0 stopped at NaN only: its checkpoint (epoch 8, cost 1e274) is diverged by today's
    limit (1.3e154), so resuming starts again from the initial weights, with a note."""
    run_dir = legacy_copy("legacy_diverged")
    result = invoke("train", "--resume", run_dir, "--set", "train.lr=0.05")
    assert result.exit_code == 0, result.output
    assert "note:" in result.output and "starting from the initial weights" in result.output
    info = read_json(run_dir / "run.json")
    assert info["status"] == "completed"
    assert info["stop"]["stopped_by"] == "max_iterations"
    assert info["stop"]["iterations"] == 4000
    (resumed,) = info["resumed"]
    assert resumed["from_epoch"] == 0 and "diverged at epoch 8" in resumed["restarted"]
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history["epoch"]) == list(range(1, 21))  # 200 samples, batch 1: 20 epochs
    assert (history["lr"] == 0.05).all()
    assert history["cost"].iloc[-1] < 1 < history["cost"].iloc[0]  # from sigma 30's start


def test_runs_lists_legacy_folders(legacy_copy: Any) -> None:
    copies = [legacy_copy(name) for name in LEGACY_STATUS]
    rows = list_runs(copies[0].parent)
    assert {row.run: row.status for row in rows} == LEGACY_STATUS
    small = next(row for row in rows if row.run == "legacy_small")
    assert (
        small.test == read_json(LEGACY_RUNS / "legacy_small" / "metrics.json")["test"]["accuracy"]
    )


# --------------------------------------------------------------------------- the run lock


@pytest.fixture
def trained(tmp_path: Path) -> Path:
    """A small completed run (blobs400, 400 updates)."""
    config = tmp_path / "small.yaml"
    config.write_text(SMALL_CONFIG.format(name="small", max_iterations=400), encoding="utf-8")
    result = invoke("train", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    return Path(result.output.strip().splitlines()[-1])


def set_status(run_dir: Path, status: str, **more: Any) -> None:
    info = read_json(run_dir / "run.json")
    info.update(status=status, **more)
    write_json(run_dir / "run.json", info)


HOLDER = """\
import fcntl, sys, time
f = open(sys.argv[1], "a")
fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("locked", flush=True)
time.sleep(300)
"""


@pytest.fixture
def holder() -> Iterator[Any]:
    """hold(run_dir) -> a child process holding run_dir/.lock (plain fcntl, not RunLock)."""
    procs: list[subprocess.Popen[str]] = []

    def hold(run_dir: Path) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(run_dir / LOCK_NAME)],
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        return proc

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait(10)


@pytest.mark.slow
@pytest.mark.parametrize("status", ["running", "interrupted"])
def test_a_run_whose_lock_is_held_is_refused_until_its_process_is_killed(
    trained: Path, holder: Any, status: str
) -> None:
    set_status(trained, status, pid=os.getpid())
    proc = holder(trained)
    before = fingerprint(trained)
    line = assert_one_line_error(invoke("train", "--resume", trained))
    assert "this run is still training" in line, line
    assert f"process {os.getpid()}" in line, line  # run.json's pid, for information
    assert fingerprint(trained) == before  # nothing written, the holder's .lock kept
    assert is_locked(trained)
    assert list_runs(trained.parent)[0].status == status

    proc.send_signal(signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL
    assert not is_locked(trained)  # the kernel let go; the file stays
    if status == "running":
        assert list_runs(trained.parent)[0].status == KILLED
    result = invoke("train", "--resume", trained)
    assert result.exit_code == 0, result.output
    info = read_json(trained / "run.json")
    assert info["status"] == "completed" and len(info["resumed"]) == 1
    assert not (trained / LOCK_NAME).exists()  # taken over, then deleted


def test_a_left_over_lock_file_does_not_block(trained: Path) -> None:
    set_status(trained, "running")
    (trained / LOCK_NAME).write_bytes(b"")  # as a kill -9 leaves it
    assert list_runs(trained.parent)[0].status == KILLED
    result = invoke("train", "--resume", trained)
    assert result.exit_code == 0, result.output
    assert read_json(trained / "run.json")["status"] == "completed"
    assert not (trained / LOCK_NAME).exists()


def lock_taken_elsewhere(path: Path) -> bool:
    """Whether a new open file description of ``path`` cannot take the lock now (flock locks
    belong to open file descriptions, so this works inside the holding process too)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@pytest.fixture
def spy_train(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[list[tuple[Path, bool]]]:
    """Records, each time training starts, every .lock under tmp_path: (its folder, whether
    it is held)."""
    seen: list[list[tuple[Path, bool]]] = []
    real_train = experiment.train

    def train(*args: Any, **kwargs: Any) -> Any:
        locks = sorted(tmp_path.rglob(LOCK_NAME))
        seen.append([(path.parent, lock_taken_elsewhere(path)) for path in locks])
        return real_train(*args, **kwargs)

    monkeypatch.setattr(experiment, "train", train)
    return seen


@pytest.mark.slow
def test_the_lock_is_held_while_training_and_deleted_after(
    trained: Path, spy_train: list[list[tuple[Path, bool]]], tmp_path: Path
) -> None:
    config = tmp_path / "again.yaml"
    config.write_text(SMALL_CONFIG.format(name="again", max_iterations=200), encoding="utf-8")
    result = invoke("train", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    set_status(trained, "interrupted")
    assert invoke("train", "--resume", trained).exit_code == 0
    new_run = Path(result.output.strip().splitlines()[-1])
    assert spy_train == [[(new_run, True)], [(trained, True)]]
    for run_dir in (new_run, trained):
        assert not (run_dir / LOCK_NAME).exists()


class _Boom(Exception):
    pass


@pytest.mark.parametrize(
    ("error", "code", "status"),
    [(_Boom, 1, "failed"), (KeyboardInterrupt, 130, "interrupted")],
    ids=["exception", "ctrl-c"],
)
def test_the_lock_is_given_back_when_training_ends_badly(
    trained: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: type[BaseException],
    code: int,
    status: str,
) -> None:
    def train(*args: Any, **kwargs: Any) -> Any:
        raise error("boom")

    monkeypatch.setattr(experiment, "train", train)
    set_status(trained, "interrupted")
    result = invoke("train", "--resume", trained)
    assert result.exit_code == code, result.output
    assert read_json(trained / "run.json")["status"] == status
    assert not (trained / LOCK_NAME).exists()
    assert RunLock(trained).acquire()  # free: nothing in this process still holds it


def test_refused_resumes_leave_no_lock(trained: Path, tmp_path: Path) -> None:
    assert "completed" in assert_one_line_error(invoke("train", "--resume", trained))
    assert not (trained / LOCK_NAME).exists()
    plain = tmp_path / "plain"
    plain.mkdir()
    assert_one_line_error(invoke("train", "--resume", plain))
    assert list(plain.iterdir()) == []  # not a run folder: no .lock made in it


def test_a_ctrl_c_while_the_folder_is_set_up_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(writer, "write_files", interrupted)  # config.yaml + run.json
    config = tmp_path / "small.yaml"
    config.write_text(SMALL_CONFIG.format(name="small", max_iterations=100), encoding="utf-8")
    result = invoke("train", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 130, result.output
    assert list((tmp_path / "runs").iterdir()) == []


def test_run_lock_excludes_a_second_holder_and_deletes_its_file(tmp_path: Path) -> None:
    first, second = RunLock(tmp_path), RunLock(tmp_path)
    assert first.acquire() and first.held
    assert (tmp_path / LOCK_NAME).is_file() and is_locked(tmp_path)
    assert not second.acquire() and not second.held
    second.release()  # not held: does nothing, the holder's file stays
    assert (tmp_path / LOCK_NAME).is_file() and is_locked(tmp_path)
    first.release()
    assert not (tmp_path / LOCK_NAME).exists() and not is_locked(tmp_path)
    assert second.acquire()
    second.release()


def test_run_lock_retries_when_the_file_it_locked_was_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A holder deletes .lock, then lets go, just as another process opened it: that one gets
    the lock of a deleted file and must take the new .lock instead."""
    import scratchnn_cli.runs.lock as lock_module

    real_flock = lock_module.fcntl.flock
    calls: list[int] = []

    class Fcntl:
        LOCK_EX, LOCK_NB, LOCK_SH = fcntl.LOCK_EX, fcntl.LOCK_NB, fcntl.LOCK_SH

        @staticmethod
        def flock(fd: int, op: int) -> None:
            calls.append(fd)
            if len(calls) == 1:  # the old holder finishes between our open and our flock
                os.unlink(tmp_path / LOCK_NAME)
                (tmp_path / LOCK_NAME).write_bytes(b"")
            real_flock(fd, op)

    monkeypatch.setattr(lock_module, "fcntl", Fcntl)
    lock = RunLock(tmp_path)
    assert lock.acquire()
    assert len(calls) == 2  # locked the deleted file, noticed, locked the new one
    monkeypatch.undo()
    assert is_locked(tmp_path)
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()


def test_load_run_record_of_folders_that_are_not_runs(tmp_path: Path) -> None:
    with pytest.raises(RunFolderError, match="no such run folder"):
        load_run_record(tmp_path / "missing")
    with pytest.raises(RunFolderError, match="no run.json"):
        load_run_record(tmp_path)


def _batches(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The names of the files of each ``write_files`` call of a run folder, as they happen."""
    calls: list[list[str]] = []
    real = writer.write_files

    def spy(directory: Path, files: Any) -> None:
        calls.append([name for name, _ in files])
        real(directory, files)

    monkeypatch.setattr(writer, "write_files", spy)
    return calls


def test_a_run_writes_its_folder_in_three_kinds_of_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start (config.yaml, run.json), each checkpoint of the training (history.csv whole
    the first time, its new rows appended after, then checkpoint.npz), and the end: the final
    checkpoint with the results (history.csv whole again), run.json last."""
    from scratchnn_cli.config import validate_config

    calls = _batches(monkeypatch)
    raw = yaml.safe_load(SMALL_CONFIG.format(name="batches", max_iterations=1000))
    raw["train"]["checkpoint_every"] = 2  # epochs 2 and 4 of 5
    outcome = experiment.run_experiment(validate_config(raw, "batches"), tmp_path, plots=False)
    assert outcome.status == "completed"
    assert calls == [
        ["config.yaml", "run.json"],
        ["history.csv", "checkpoint.npz"],
        ["checkpoint.npz"],  # epoch 4: its 2 rows appended to history.csv
        ["history.csv", "checkpoint.npz", "model.npz", "metrics.json", "diagnostics.csv"]
        + ["run.json"],
    ]
    checkpoint = read_checkpoint(outcome.run_dir / "checkpoint.npz")
    assert checkpoint.epochs == 5  # the final one, not the one of epoch 4
    assert len(pd.read_csv(outcome.run_dir / "history.csv")) == 5


def test_an_interrupted_run_writes_its_last_checkpoint_before_run_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scratchnn_cli.config import validate_config

    real_train = experiment.train

    def train_then_ctrl_c(*args: Any, hooks: Any, **kwargs: Any) -> Any:
        def stop(record: Any) -> None:
            if record.epoch == 3:
                raise KeyboardInterrupt

        hooks.on_epoch = stop
        return real_train(*args, hooks=hooks, **kwargs)

    monkeypatch.setattr(experiment, "train", train_then_ctrl_c)
    calls = _batches(monkeypatch)
    raw = yaml.safe_load(SMALL_CONFIG.format(name="stopped", max_iterations=10**6))
    with pytest.raises(KeyboardInterrupt):
        experiment.run_experiment(validate_config(raw, "stopped"), tmp_path, plots=False)
    assert calls[0] == ["config.yaml", "run.json"]
    assert calls[1] == ["history.csv", "checkpoint.npz", "run.json"]
    [run_dir] = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    assert read_checkpoint(run_dir / "checkpoint.npz").epochs == 2  # the last finished epoch
    assert (run_dir / "model.npz").is_file()
