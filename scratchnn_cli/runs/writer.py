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
import os
import platform
import shutil
import signal
import socket
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import sklearn

from scratchnn_cli import __version__
from scratchnn_cli.config import ExperimentConfig
from scratchnn_cli.data import Dataset
from scratchnn_cli.errors import RunWriteError, one_line
from scratchnn_cli.metrics import score_splits
from scratchnn_cli.nn.network import Network
from scratchnn_cli.nn.threads import thread_count
from scratchnn_cli.report.plots import confusion_matrix_png
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
from scratchnn_cli.training.snapshot import EpochRecord, Snapshot, TrainResult


@dataclass
class RunOutcome:
    """What ``run_experiment`` produced."""

    run_dir: Path
    status: str
    result: TrainResult
    metrics: dict[str, Any]


def network_record(config: ExperimentConfig, net: Network) -> dict[str, Any]:
    """What run.json says of the network: sizes, activation, output, and a row per layer."""
    return {
        "sizes": net.sizes,
        "activation": config.model.activation if config.model.layers is None else "per layer",
        "output": net.loss.name,
        "parameters": int(net.theta.size),
        "layers": [
            {"layer": r.layer, "output_shape": list(r.output_shape), "params": r.params}
            for r in net.summary()
        ],
    }


def _versions() -> dict[str, str]:
    return {
        "scratchnn": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
    }


def _data_record(dataset: Dataset) -> dict[str, Any]:
    return {
        "name": dataset.name,
        "source": dataset.source,
        "fingerprint": dataset.fingerprint,
        "classes": list(dataset.class_names),
        "n_features": dataset.n_features,
        "n_train": int(len(dataset.y_train)),
        "n_val": int(len(dataset.y_val)),
        "n_test": int(len(dataset.y_test)),
        "scale": dataset.scaling.describe(),
    }


def new_run_info(
    config: ExperimentConfig, config_path: Path | None, net: Network, dataset: Dataset
) -> dict[str, Any]:
    """The run.json of a run that starts now in this process (status running)."""
    return {
        "status": "running",
        "name": config.name,
        "config_file": str(config_path) if config_path else None,
        "started": datetime.now().astimezone().isoformat(timespec="seconds"),
        "pid": os.getpid(),  # for information: whether the run is alive is its lock's business
        "host": socket.gethostname(),
        "ended": None,
        "seconds": None,
        "stop": None,
        "network": network_record(config, net),
        "data": _data_record(dataset),
        "versions": _versions(),
        "threads": thread_count(),  # the layers' threads (a speed setting: same numbers)
    }


def start_run_folder(
    run_dir: Path, lock: RunLock, config: ExperimentConfig, info: dict[str, Any]
) -> None:
    """Lock the new, empty ``run_dir`` and write its config.yaml and run.json. Nothing was
    trained yet, so when any of that fails (or Ctrl-C comes) the folder is removed again."""
    try:
        if not lock.acquire():  # nobody knows the new folder's name yet: cannot happen
            raise RunWriteError(f"{run_dir}: another process holds the lock of this new folder")
        config_yaml = yaml_bytes(config.to_dict())
        write_files(run_dir, [("config.yaml", config_yaml), ("run.json", run_info_bytes(info))])
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

    def __init__(
        self,
        run_dir: Path,
        config: ExperimentConfig,
        dataset: Dataset,
        net: Network,
        info: dict[str, Any],
        plots: bool = True,
        note: Callable[[str], None] = lambda text: None,
    ) -> None:
        self.run_dir, self.config, self.dataset, self.net = run_dir, config, dataset, net
        self.info, self.plots, self.note = info, plots, note
        self.started = datetime.now().astimezone()
        self.seconds_before = float(info.get("seconds") or 0.0)
        self.result = TrainResult()
        self.metrics: dict[str, Any] = {}
        self.history_rows: int | None = None  # rows of history.csv written by this process
        self.last_checkpoint: list[tuple[str, bytes]] = []  # the final one, while it waits

    def finish(
        self, status: str, error: str | None = None, files: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        """run.json with its final ``status`` (and why training stopped), written last, after
        ``files`` (name, content) in one ``write_files``."""
        result, ended = self.result, datetime.now().astimezone()
        self.info.update(
            status=status,
            ended=ended.isoformat(timespec="seconds"),
            seconds=round(self.seconds_before + (ended - self.started).total_seconds(), 3),
            stop={
                "stopped_by": result.stopped_by or status,
                "reason": result.stop_reason or error or status,
                "epochs": result.epochs,
                "iterations": result.iterations,
                "train_seconds": round(result.seconds, 3),
            },
        )
        if error:
            self.info["error"] = error
        self.write([*files, ("run.json", run_info_bytes(self.info))])

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

    def trained(self) -> None:
        """Training ended normally (completed or diverged): history, model, metrics (and the
        confusion matrix PNG), then run.json, in one ``write_files``."""
        metrics = score_splits(self.net, self.dataset)
        files = [
            *self.history_file(self.result.history),
            ("model.npz", npz_bytes(self.net.state())),
            ("metrics.json", json_bytes(metrics)),
        ]
        if self.plots:  # a picture that cannot be drawn never costs the run its results
            try:
                files.append(
                    ("confusion_matrix.png", _confusion_png(self.config, self.dataset, metrics))
                )
            except Exception as exc:
                self.note(f"confusion_matrix.png not drawn ({type(exc).__name__}: {one_line(exc)})")
        self.metrics.update(metrics)
        status = "diverged" if self.result.stopped_by == "diverged" else "completed"
        self.finish(status, files=files)

    def interrupted(self) -> None:
        """Ctrl-C or SIGTERM (the caller re-raises): the last finished epoch, marked as such."""
        with interrupt_guard(self.run_dir) as marked:  # a 2nd Ctrl-C exits; files stay whole
            self.finish("interrupted", "interrupted (Ctrl-C or SIGTERM)")
            marked()
            write_files(self.run_dir, self.history_file(self.result.history))
            write_npz(self.run_dir / "model.npz", self.net.state())

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
        return RunOutcome(self.run_dir, self.info["status"], self.result, self.metrics)


def _confusion_png(config: ExperimentConfig, dataset: Dataset, metrics: dict[str, Any]) -> bytes:
    """confusion_matrix.png: of the test split, or of the first split scored without one."""
    shown = "test" if "test" in metrics else next(iter(metrics))
    return confusion_matrix_png(
        np.array(metrics[shown]["confusion_matrix"]),
        dataset.class_names,
        title=f"{config.name}: {shown} accuracy {metrics[shown]['accuracy']:.3f}",
    )


@contextlib.contextmanager
def interrupt_guard(run_dir: Path) -> Iterator[Callable[[], None]]:
    """While saving after a first Ctrl-C: SIGINT is ignored until run.json says 'interrupted'
    (the caller then calls the yielded ``marked()``); from there a second Ctrl-C ends the process
    at once with exit code 130, after removing any half-written temporary file. Atomic writes
    keep every file whole either way."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return

    def exit_now(signum: int, frame: object) -> None:
        for tmp in run_dir.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()
        os._exit(130)

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, signal.SIG_IGN)
    try:
        yield lambda: [signal.signal(sig, exit_now) for sig in previous]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
