"""``scratchnn runs``: one summary row per run folder of a runs folder."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from scratchnn_cli.errors import RunFolderError
from scratchnn_cli.runs.folder import load_run_record, read_json
from scratchnn_cli.runs.lock import is_locked

#: The status shown for a run whose run.json says "running" while no process holds its lock:
#: it was killed without a chance to save (kill -9, a crash, a power cut); ``train --resume``
#: continues it from its last checkpoint.
KILLED = "killed"


def list_runs(runs_dir: Path) -> list[dict[str, Any]]:
    """One summary per run folder (a folder holding run.json) in ``runs_dir``, by name (so
    oldest first): run, status, test and val accuracy, stopped_by, age. A run.json that cannot
    be read, or does not fit ``RunRecord``, gives status "unreadable"."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        what = "a file, not a folder" if runs_dir.exists() else "no such folder"
        raise RunFolderError(f"{runs_dir}: {what}")
    now = datetime.now().timestamp()
    folders = sorted(p for p in runs_dir.iterdir() if (p / "run.json").is_file())
    return [_summary(folder, now) for folder in folders]


def _summary(folder: Path, now: float) -> dict[str, Any]:
    """The row of one run folder (``now``: the time of the listing, for the age)."""
    row: dict[str, Any] = {"run": folder.name, "status": "unreadable", "test": None, "val": None}
    row.update(stopped_by="", age=_age(now - (folder / "run.json").stat().st_mtime))
    try:
        record, _ = load_run_record(folder)
    except RunFolderError:
        return row
    row["status"] = record.status
    if record.status == "running" and not is_locked(folder):
        row["status"] = KILLED
    row["stopped_by"] = record.stop.stopped_by if record.stop else ""
    try:
        metrics = read_json(folder / "metrics.json")
        row["test"] = _accuracy(metrics, "test")
        row["val"] = _accuracy(metrics, "val")
    except (OSError, ValueError):  # no metrics.json yet (running), or an unreadable one
        pass
    return row


def _accuracy(metrics: Any, split: str) -> float | None:
    """metrics.json's ``split.accuracy``, or None when it has none (or is not a number)."""
    entry = metrics.get(split) if isinstance(metrics, dict) else None
    value = entry.get("accuracy") if isinstance(entry, dict) else None
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if is_number else None


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"
