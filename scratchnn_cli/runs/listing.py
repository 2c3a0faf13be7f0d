"""``scratchnn runs``: a row per run folder of a runs folder, per folder of runs (a sweep's,
reproduce's) and per learning-rate range test (``lr-find-*``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from scratchnn_cli.errors import RunFolderError
from scratchnn_cli.runs.folder import load_run_record, read_json
from scratchnn_cli.runs.lock import is_locked
from scratchnn_cli.runs.record import RunRecord

#: The status shown for a run whose run.json says "running" while no process holds its lock:
#: it was killed without a chance to save (kill -9, a crash, a power cut); ``train --resume``
#: continues it from its last checkpoint.
KILLED = "killed"
#: Shorter names of the stop rules (``stopped_by``), for tables in a narrow terminal.
SHORT_STOP = {
    "max_iterations": "max iter",
    "max_epochs": "max epochs",
    "early_stopping": "early stop",
}


@dataclass(frozen=True)
class RunRow:
    """One run folder as ``scratchnn runs`` lists it: its name, the status shown, its test and
    val accuracy (None where metrics.json has none), why training stopped ("" if unknown) and
    how long ago run.json last changed."""

    run: str
    status: str
    test: float | None = None
    val: float | None = None
    stopped_by: str = ""
    age: str = ""


@dataclass(frozen=True)
class RunGroup:
    """A folder that is not a run but holds run folders (a sweep's, ``reproduce``'s): its path,
    and how many of its runs have each status."""

    path: Path
    statuses: dict[str, int]

    @property
    def runs(self) -> int:
        return sum(self.statuses.values())


def list_runs(runs_dir: Path) -> list[RunRow]:
    """One row per run folder (a folder holding run.json) in ``runs_dir``, by name (so
    oldest first): run, status, test and val accuracy, stopped_by, age. A run.json that cannot
    be read, or does not fit ``RunRecord``, gives status "unreadable"."""
    now = datetime.now().timestamp()
    return [_listing_row(folder, now) for folder in _run_folders(_folder(runs_dir))]


def run_groups(runs_dir: Path) -> list[RunGroup]:
    """The folders of ``runs_dir`` that are not runs but hold run folders (``sweep-*``,
    ``reproduce-*``), by name, each with the statuses of its runs: ``list_runs`` shows only
    the runs directly in ``runs_dir``, and these say where the others are."""
    groups = []
    for folder in sorted(p for p in _folder(runs_dir).iterdir() if p.is_dir()):
        if (folder / "run.json").is_file():
            continue
        runs = _run_folders(folder)
        if runs:
            groups.append(RunGroup(folder, dict(Counter(_status(run)[1] for run in runs))))
    return groups


@dataclass(frozen=True)
class RangeTestRow:
    """A learning-rate range test's folder (``scratchnn lr-find``): its name, the rate it
    suggested and the spec's (None where lr_find.json has none, or cannot be read), its age."""

    folder: str
    suggested_lr: float | None
    configured_lr: float | None
    age: str


def range_tests(runs_dir: Path) -> list[RangeTestRow]:
    """The folders of ``runs_dir`` holding an lr_find.json, by name (so oldest first)."""
    now = datetime.now().timestamp()
    rows = []
    for folder in sorted(p for p in _folder(runs_dir).iterdir() if p.is_dir()):
        found = folder / "lr_find.json"
        if not found.is_file():
            continue
        try:
            result = read_json(found)
        except (OSError, ValueError):
            result = {}
        rates = [_number(result, key) for key in ("suggested_lr", "configured_lr")]
        rows.append(RangeTestRow(folder.name, *rates, _age(now - found.stat().st_mtime)))
    return rows


def _folder(runs_dir: Path) -> Path:
    """``runs_dir`` as a Path; RunFolderError (one line) when it is no folder."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        what = "a file, not a folder" if runs_dir.exists() else "no such folder"
        raise RunFolderError(f"{runs_dir}: {what}")
    return runs_dir


def _run_folders(folder: Path) -> list[Path]:
    """The run folders (holding run.json) directly in ``folder``, by name."""
    return sorted(p for p in folder.iterdir() if (p / "run.json").is_file())


def _status(folder: Path) -> tuple[RunRecord | None, str]:
    """A run folder's record (None when unreadable) and the status shown for it: run.json's,
    "killed" for a run left "running" by a process that is gone, "unreadable"."""
    try:
        record, _ = load_run_record(folder)
    except RunFolderError:
        return None, "unreadable"
    return record, shown_status(folder, record)


def shown_status(folder: Path, record: RunRecord) -> str:
    """run.json's status, or "killed" for a run it says is running whose process is gone (no
    lock held on the folder)."""
    if record.status == "running" and not is_locked(folder):
        return KILLED
    return record.status


def _listing_row(folder: Path, now: float) -> RunRow:
    """The row of one run folder (``now``: the time of the listing, for the age)."""
    age = _age(now - (folder / "run.json").stat().st_mtime)
    record, status = _status(folder)
    if record is None:
        return RunRow(folder.name, status, age=age)
    try:
        metrics = read_json(folder / "metrics.json")
    except (OSError, ValueError):  # no metrics.json yet (running), or an unreadable one
        metrics = {}
    stopped_by = record.stop.stopped_by if record.stop else ""
    test, val = _accuracy(metrics, "test"), _accuracy(metrics, "val")
    return RunRow(folder.name, status, test, val, stopped_by, age)


def _accuracy(metrics: Any, split: str) -> float | None:
    """metrics.json's ``split.accuracy``, or None when it has none (or is not a number)."""
    return _number(metrics.get(split) if isinstance(metrics, dict) else None, "accuracy")


def _number(mapping: Any, key: str) -> float | None:
    """``mapping[key]`` as a float, or None when it is missing or not a number."""
    value = mapping.get(key) if isinstance(mapping, dict) else None
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if is_number else None


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"
