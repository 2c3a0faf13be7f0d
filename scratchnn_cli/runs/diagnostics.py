"""diagnostics.csv: the training diagnostics of a run, a row per probe and layer
(``records.DiagnosticsRow``), written and read back here. A missing value is an empty cell."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from scratchnn_cli.errors import RunFolderError
from scratchnn_cli.records import DiagnosticsRow
from scratchnn_cli.runs.history import csv_cell

DIAGNOSTICS_COLUMNS = [f.name for f in fields(DiagnosticsRow)]
_TEXT, _COUNTS = ("kind",), ("epoch", "layer")


def diagnostics_csv(rows: Sequence[DiagnosticsRow]) -> str:
    """The whole of diagnostics.csv: the header, then a row per record."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(DIAGNOSTICS_COLUMNS)
    for row in rows:
        writer.writerow([csv_cell(getattr(row, c)) for c in DIAGNOSTICS_COLUMNS])
    return buffer.getvalue()


def read_diagnostics(path: Path) -> list[DiagnosticsRow]:
    """The rows of diagnostics.csv; RunFolderError, one line, when it is unreadable or not a
    file this module wrote."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames != DIAGNOSTICS_COLUMNS:
                raise RunFolderError(f"{path}: not a diagnostics.csv (its header differs)")
            return [_row(record) for record in reader]
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:
        raise RunFolderError(f"{path}: unreadable ({exc})") from None


def _row(record: dict[str, str]) -> DiagnosticsRow:
    values: dict[str, object] = {}
    for column in DIAGNOSTICS_COLUMNS:
        text = record[column]
        if column in _TEXT:
            values[column] = text
        elif column in _COUNTS:
            values[column] = int(text)
        else:
            missing = math.nan if column == "probe_cost" else None
            values[column] = missing if text == "" else float(text)
    return DiagnosticsRow(**values)  # type: ignore[arg-type]
