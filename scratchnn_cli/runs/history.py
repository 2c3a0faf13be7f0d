"""history.csv: one row per epoch (an ``EpochRecord``), written and read back here.

Numbers are written as Python's shortest repr that reads back to the same float (a resumed run
goes on from the very records it stopped at), and a missing value (a validation column not
evaluated) or a NaN as an empty cell, as pandas' ``to_csv`` does. While a run trains,
the rows of each checkpoint are appended to the file (a checkpoint holds no history, so its size
is bound by the model, not by the run's length); the file is written whole at the end.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from scratchnn_cli.errors import RunFolderError
from scratchnn_cli.records import EpochRecord

HISTORY_COLUMNS = [
    "epoch",
    "iteration",
    "cost",
    "train_accuracy",
    "val_cost",
    "val_accuracy",
    "lr",
    "seconds",
]
_HEADER = ",".join(HISTORY_COLUMNS) + "\n"
_COUNTS = ("epoch", "iteration")  # integers; the other columns are floats
_OPTIONAL = ("val_cost", "val_accuracy")  # empty: not evaluated (None); elsewhere empty is NaN


def history_rows(records: Sequence[EpochRecord]) -> str:
    """The CSV rows of ``records``, each ending in a newline (no header)."""
    return "".join(",".join(csv_cell(getattr(r, c)) for c in HISTORY_COLUMNS) + "\n" for r in records)


def history_csv(records: Sequence[EpochRecord]) -> str:
    """The whole of history.csv: the header, then a row per record."""
    return _HEADER + history_rows(records)


def append_history(path: Path, records: Sequence[EpochRecord]) -> None:
    """Append the rows of ``records`` to history.csv and fsync them (a crash in the middle can
    leave a partial last row: ``read_history`` reads only the rows its checkpoint counts)."""
    with open(path, "ab") as f:
        f.write(history_rows(records).encode())
        f.flush()
        os.fsync(f.fileno())


def read_history(path: Path, rows: int | None = None) -> list[EpochRecord]:
    """The records of history.csv: its first ``rows`` (the rows after them were appended after
    the last checkpoint), or every whole row (a last row without its newline is one an append
    left half-written). RunFolderError, one line, when it is unreadable, has fewer than
    ``rows`` rows, or holds a row this module did not write."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RunFolderError(f"{path}: unreadable ({exc})") from None
    lines = text.splitlines()
    if not lines or lines[0] + "\n" != _HEADER:
        raise RunFolderError(f"{path}: not a history.csv (its header is not {_HEADER.strip()})")
    whole = lines[1:] if text.endswith("\n") else lines[1:-1]
    if rows is None:
        rows = len(whole)
    elif len(whole) < rows:
        raise RunFolderError(
            f"{path}: {len(whole)} rows, but the checkpoint was saved after {rows} epochs"
        )
    return [_record(path, i, line) for i, line in enumerate(whole[:rows], start=2)]


def csv_cell(value: float | int | str | None) -> str:
    """A cell of the run folder's CSV files: "" for None or NaN, text and whole numbers as
    they are, any other number to its last bit (the shortest repr that reads back the same)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, str | int):
        return str(value)
    return repr(float(value))


def _record(path: Path, line_number: int, line: str) -> EpochRecord:
    cells = line.split(",")
    if len(cells) != len(HISTORY_COLUMNS):
        raise RunFolderError(f"{path}: line {line_number} has {len(cells)} cells, not 8")
    values: dict[str, int | float | None] = {}
    try:
        for column, text in zip(HISTORY_COLUMNS, cells, strict=True):
            if column in _COUNTS:
                values[column] = int(text)
            elif text == "":
                values[column] = None if column in _OPTIONAL else math.nan
            else:
                values[column] = float(text)
    except ValueError:
        raise RunFolderError(f"{path}: line {line_number} is not a row of numbers") from None
    return EpochRecord(**values)  # type: ignore[arg-type]
