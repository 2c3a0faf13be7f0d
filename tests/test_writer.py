"""runs/writer.py: a run folder written through a failing disk (a write that fails once, a disk
that stays full, a read-only runs folder, a Ctrl-C then a full disk) is one error line and exit 1,
and every file in it stays whole (old or new version, never half) with a final status in
run.json."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from helpers import (
    SMALL_CONFIG,
    FailingOs,
    assert_folder_whole,
    assert_no_traceback,
    error_lines,
    invoke,
    only_run,
    read_json,
    run_folders,
    write_config,
)
from typer.testing import Result

from scratchnn_cli import runs

# --------------------------------------------------------------------------- failed writes


def write_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: Path) -> list[str]:
    """The files a successful run writes atomically, in order (one rename each)."""
    counting = FailingOs(None)
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


@pytest.mark.slow
def test_a_failed_write_at_any_point_leaves_whole_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, SMALL_CONFIG.format(name="full", max_iterations=400))
    calls = write_calls(tmp_path, monkeypatch, config)
    for name in ("config.yaml", "run.json", "checkpoint.npz", "history.csv", "model.npz"):
        assert name in calls, calls
    for k in range(1, len(calls) + 1):
        failing = FailingOs(k)
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
    results = ["model.npz", "metrics.json", "confusion_matrix.png", "gradient_flow.png"]
    assert calls[-6:] == [*results, "diagnostics.csv", "run.json"], calls
    run_dir = only_run(tmp_path / "count")
    epochs = read_json(run_dir / "run.json")["stop"]["epochs"]
    assert len(pd.read_csv(run_dir / "history.csv")) == epochs == 5  # 1000 updates of 200


@pytest.mark.slow
def test_a_failed_final_run_json_write_marks_the_run_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The very last write (run.json 'completed') fails once: a failed write (exit 1, 'could
    not write the run folder'), and the retry marks the run failed, not 'running'."""
    config = write_config(tmp_path, SMALL_CONFIG.format(name="full", max_iterations=400))
    calls = write_calls(tmp_path, monkeypatch, config)
    assert calls[-1] == "run.json"
    monkeypatch.setattr(runs.folder, "os", FailingOs(len(calls)))
    result = invoke("train", config, "--runs-dir", tmp_path / "runs")
    info = check_failed_write(result, tmp_path / "runs", "the final run.json write failed")
    assert "could not write the run folder" in error_lines(result.output)[0]
    assert info["status"] == "failed"


@pytest.mark.slow
def test_a_disk_that_stays_full_still_leaves_whole_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, SMALL_CONFIG.format(name="full", max_iterations=400))
    calls = write_calls(tmp_path, monkeypatch, config)
    for k in sorted({1, 2, 3, len(calls) // 2, len(calls)}):
        monkeypatch.setattr(runs.folder, "os", FailingOs(k, once=False))
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
                monkeypatch.setattr(runs.folder, "os", FailingOs(1, once=False))
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
