"""A run folder's files, from its start to its final status.

``start_run_folder`` writes config.yaml and run.json (status running) into a new folder;
``RunWriter`` then writes the checkpoints while the run trains and, at the end, exactly one of:
its results (history.csv, model.npz, metrics.json, the confusion matrix, run.json completed or
diverged), the state it was interrupted in, or its failure (error.log, run.json failed). Every
step's files go through one ``write_files`` (temporary files, fsynced, renamed in order, run.json
last), so a folder never holds a half-written file.
"""

from __future__ import annotations

import contextlib
import shutil
import traceback
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from scratchnn_cli.errors import RunWriteError
from scratchnn_cli.interrupts import interrupt_guard
from scratchnn_cli.records import EpochRecord, RunOutcome, Scores, Snapshot, TrainResult
from scratchnn_cli.runs.checkpoint import checkpoint_bytes
from scratchnn_cli.runs.folder import (
    json_bytes,
    npz_bytes,
    run_info_bytes,
    write_files,
    write_npz,
    write_text,
    yaml_bytes,
)
from scratchnn_cli.runs.history import append_history, history_csv
from scratchnn_cli.runs.lock import RunLock
from scratchnn_cli.runs.record import RunRecord, StopRecord


def start_run_folder(
    run_dir: Path, lock: RunLock, config: dict[str, Any], record: RunRecord
) -> None:
    """Lock the new, empty ``run_dir`` and write its config.yaml (``config``, the resolved
    spec) and run.json. Nothing was trained yet, so when any of that fails (or Ctrl-C comes)
    the folder is removed again."""
    try:
        if not lock.acquire():  # nobody knows the new folder's name yet: cannot happen
            raise RunWriteError(f"{run_dir}: another process holds the lock of this new folder")
        config_yaml = yaml_bytes(config)
        write_files(run_dir, [("config.yaml", config_yaml), ("run.json", run_info_bytes(record))])
    except BaseException as exc:
        lock.release()
        shutil.rmtree(run_dir, ignore_errors=True)
        if isinstance(exc, OSError):
            raise RunWriteError(f"{run_dir}: could not write the run folder: {exc}") from None
        raise


class RunWriter:
    """The files of one run folder while it trains and when it ends: checkpoints, then its
    results (history, model, metrics, run.json completed or diverged), or the state it was
    interrupted in, or its failure. Every path through a run ends in exactly one of these."""

    def __init__(self, run_dir: Path, record: RunRecord) -> None:
        self.run_dir, self.record = run_dir, record
        self.started = datetime.now().astimezone()
        self.seconds_before = record.seconds or 0.0
        self.result = TrainResult()
        self.metrics: dict[str, Scores] = {}
        self.history_rows: int | None = None  # rows of history.csv written by this process
        self.last_checkpoint: list[tuple[str, bytes]] = []  # the final one, while it waits

    def finish(
        self, status: str, error: str | None = None, files: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        """run.json with its final ``status`` (and why training stopped), written last, after
        ``files`` (name, content) in one ``write_files``."""
        result, ended, record = self.result, datetime.now().astimezone(), self.record
        record.status = status
        record.ended = ended.isoformat(timespec="seconds")
        record.seconds = round(self.seconds_before + (ended - self.started).total_seconds(), 3)
        record.stop = StopRecord(
            stopped_by=result.stopped_by or status,
            reason=result.stop_reason or error or status,
            epochs=result.epochs,
            iterations=result.iterations,
            train_seconds=round(result.seconds, 3),
        )
        record.error = error or record.error
        self.write([*files, ("run.json", run_info_bytes(record))])

    def write(self, files: Sequence[tuple[str, bytes]]) -> None:
        """One ``write_files``: the final checkpoint if it waits (``save_checkpoint``), then
        ``files``."""
        write_files(self.run_dir, [*self.last_checkpoint, *files])
        self.last_checkpoint = []

    def save_checkpoint(self, snap: Snapshot) -> None:
        """checkpoint.npz and the history.csv rows it goes with: the rows first (appended, or
        the whole file on this process's first checkpoint), so history.csv always holds the
        rows of the checkpoint in place. The final one, handed over once training has stopped
        (``result.stopped_by`` is set), waits for what always follows (the results, the
        interrupted state or the failure) to go in its ``write_files``, before run.json: one
        fsync round less, the same order of renames."""
        checkpoint = ("checkpoint.npz", checkpoint_bytes(snap))
        if self.result.stopped_by:
            self.last_checkpoint = [*self.history_file(snap.history), checkpoint]
        elif self.history_rows is None:
            self.write([*self.history_file(snap.history), checkpoint])
        else:
            append_history(self.run_dir / "history.csv", snap.history[self.history_rows :])
            self.write([checkpoint])
        self.history_rows = len(snap.history)

    def history_file(self, history: list[EpochRecord]) -> list[tuple[str, bytes]]:
        """[history.csv of ``history``], or [] when the file holds those rows already."""
        if self.history_rows == len(history):
            return []
        return [("history.csv", history_csv(history).encode())]

    def trained(
        self,
        model: dict[str, np.ndarray],
        metrics: dict[str, Scores],
        extra: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """Training ended normally (completed or diverged): history, ``model`` (its arrays),
        ``metrics`` (its scores) and the ``extra`` files (name, bytes: pictures, diagnostics),
        then run.json, in one ``write_files``."""
        files = [
            *self.history_file(self.result.history),
            ("model.npz", npz_bytes(model)),
            ("metrics.json", json_bytes({split: s.to_json() for split, s in metrics.items()})),
            *extra,
        ]
        self.metrics.update(metrics)
        status = "diverged" if self.result.stopped_by == "diverged" else "completed"
        self.finish(status, files=files)

    def interrupted(
        self, model: dict[str, np.ndarray], extra: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        """Ctrl-C or SIGTERM (the caller re-raises): the last finished epoch, marked as such,
        then its history, ``model`` (the arrays it had) and the ``extra`` files."""
        guard = interrupt_guard(lambda: _remove_temp_files(self.run_dir))
        with guard as marked:  # a 2nd Ctrl-C exits; files stay whole
            self.finish("interrupted", "interrupted (Ctrl-C or SIGTERM)")
            marked()
            write_files(self.run_dir, [*self.history_file(self.result.history), *extra])
            write_npz(self.run_dir / "model.npz", model)

    def failed(self, exc: Exception) -> None:
        """An error: error.log and run.json failed; RunWriteError when the error was writing."""
        with contextlib.suppress(OSError):
            self.write([])  # the final checkpoint if it waits; run.json below even if it failed
        self.last_checkpoint = []
        with contextlib.suppress(OSError):
            write_text(self.run_dir / "error.log", traceback.format_exc())
        with contextlib.suppress(OSError):
            self.finish("failed", f"{type(exc).__name__}: {exc}")
        if isinstance(exc, OSError):
            raise RunWriteError(f"{self.run_dir}: could not write the run folder: {exc}") from None

    def outcome(self) -> RunOutcome:
        return RunOutcome(self.run_dir, self.record.status, self.result, self.metrics)


def _remove_temp_files(run_dir: Path) -> None:
    """Remove the temporary files a write left half-written in ``run_dir`` (a second Ctrl-C
    ends the process in the middle of one)."""
    for tmp in run_dir.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()
