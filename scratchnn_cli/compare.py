"""Runs side by side: what ``scratchnn compare`` shows (this module has the logic, no CLI).

``find_run_dirs`` turns the paths a user gives into run folders: a folder holding run.json is a
run; any other folder is a sweep whose run folders sit one or two levels below it (every one
is taken, sorted by path). ``load_runs`` reads each run folder the way it is on disk, old
(0.1.0) folders included: run.json (status, epochs, seconds), config.yaml, metrics.json (the
accuracy per split; absent for a run that never finished) and history.csv (the learning
curve). Nothing is recomputed and no model is loaded.

The config is flattened to dotted keys (``train.lr``, ``model.struct``, ``train.optimizer.name``;
lists stay whole values). When it still validates it is first resolved through the current
schema, so a 0.1.0 folder and a new one do not differ merely because the new one spells out
keys added since (``data.scale``...). ``Comparison.keys`` are the keys whose values differ
between the runs (a key one run lacks differs), or every key with ``all_keys``; ``name`` is
never one of them, it is the first column.

Two views of the same rows: ``records`` (raw values: full-precision accuracies, for CSV) and
``display_rows`` (text: accuracies to 4 decimals, for the terminal, Markdown and HTML).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from scratchnn_cli.config import ExperimentConfig
from scratchnn_cli.errors import RunFolderError, UserInputError
from scratchnn_cli.metrics import SPLITS
from scratchnn_cli.runs import load_run_record, read_json
from scratchnn_cli.runs.folder import read_config_yaml
from scratchnn_cli.runs.history import read_history
from scratchnn_cli.runs.listing import shown_status

#: Shown for a key a run's config does not have, and for a missing number.
MISSING = "-"
#: The columns after the parameters.
RESULT_COLUMNS = ("train acc", "val acc", "test acc", "epochs", "seconds", "status")
#: The page template of ``to_html``, in ``report/templates``.
HTML_TEMPLATE = "compare.html.j2"


@dataclass(frozen=True)
class CurvePoint:
    """One epoch of history.csv: the training cost and (when evaluated) the validation cost."""

    epoch: int
    cost: float | None
    val_cost: float | None


@dataclass
class ComparedRun:
    """What compare shows of one run folder."""

    path: Path
    name: str
    status: str
    params: dict[str, Any]
    accuracy: dict[str, float | None]
    epochs: int | None
    seconds: float | None
    history: list[CurvePoint] = field(default_factory=list)


@dataclass
class Comparison:
    """The runs and the parameter keys shown for them."""

    runs: list[ComparedRun]
    keys: list[str]
    all_keys: bool = False

    @property
    def labels(self) -> list[str]:
        """Each run's label: its name, or its folder name where names repeat."""
        names = [r.name for r in self.runs]
        if len(set(names)) == len(names):
            return names
        return [r.path.name for r in self.runs]

    @property
    def columns(self) -> list[str]:
        return ["name", *self.keys, *RESULT_COLUMNS]

    def records(self) -> list[dict[str, Any]]:
        """One dict per run, column -> raw value (None where a run has none)."""
        rows = []
        for label, run in zip(self.labels, self.runs, strict=True):
            row: dict[str, Any] = {"name": label}
            row.update({k: run.params.get(k, _ABSENT) for k in self.keys})
            row.update({f"{s} acc": run.accuracy.get(s) for s in SPLITS})
            row.update(epochs=run.epochs, seconds=run.seconds, status=run.status)
            rows.append(row)
        return rows

    def display_rows(self) -> list[list[str]]:
        """The table as text, one list of cells per run (``-`` for anything missing)."""
        rows = []
        for record in self.records():
            cells = [record["name"]]
            cells += [value_text(record[k]) for k in self.keys]
            cells += [_number(record[f"{s} acc"], ".4f") for s in SPLITS]
            cells += [_number(record["epochs"], ","), _number(record["seconds"], ".1f")]
            cells.append(record["status"])
            rows.append(cells)
        return rows


class _Absent:
    """A key the run's config does not have (distinct from a key set to null)."""

    def __repr__(self) -> str:
        return MISSING


_ABSENT = _Absent()


# --------------------------------------------------------------------------- finding runs


def find_run_dirs(paths: Sequence[Path]) -> list[Path]:
    """The run folders of ``paths`` in order, each once: a path holding run.json is a run
    folder; any other folder contributes the run folders one or two levels below it.
    UserInputError (one line) for no paths, a missing path, or a folder with no run below."""
    if not paths:
        raise UserInputError("compare needs at least one run folder or folder of run folders")
    found: list[Path] = []
    for path in map(Path, paths):
        if (path / "run.json").is_file():
            found.append(path)
            continue
        if not path.is_dir():
            raise RunFolderError(f"{path}: no such run folder")
        below = sorted(
            {p.parent for pattern in ("*/run.json", "*/*/run.json") for p in path.glob(pattern)}
        )
        if not below:
            raise RunFolderError(
                f"{path}: not a run folder (no run.json) and no run folders one or two levels below"
            )
        found.extend(below)
    seen: set[Path] = set()
    unique = []
    for path in found:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            unique.append(path)
    return unique


# --------------------------------------------------------------------------- loading one run


def load_run(run_dir: Path) -> ComparedRun:
    """One run folder as a ComparedRun; RunFolderError (one line) when run.json is missing or
    unreadable. config.yaml, metrics.json and history.csv may be missing (shown as ``-``)."""
    run_dir = Path(run_dir)
    record, _ = load_run_record(run_dir)  # validated: the types below are run.json's
    return ComparedRun(
        path=run_dir,
        name=record.name or run_dir.name,
        status=shown_status(run_dir, record),
        params=flatten(_resolved_config(run_dir / "config.yaml")),
        accuracy=_accuracies(run_dir / "metrics.json"),
        epochs=record.stop.epochs if record.stop else None,
        seconds=record.seconds,
        history=read_curve(run_dir / "history.csv"),
    )


def load_runs(paths: Sequence[Path]) -> list[ComparedRun]:
    """``load_run`` of every run folder ``find_run_dirs(paths)`` finds."""
    return [load_run(p) for p in find_run_dirs(paths)]


def _resolved_config(path: Path) -> dict[str, Any]:
    """config.yaml resolved through the current schema (defaults filled in) when it validates;
    as written when it does not; {} when it is missing. RunFolderError when unreadable."""
    if not path.is_file():
        return {}
    raw = read_config_yaml(path)
    try:
        return ExperimentConfig.model_validate(raw).to_dict()
    except (ValidationError, ValueError, TypeError):
        return raw


def _accuracies(path: Path) -> dict[str, float | None]:
    """metrics.json's accuracy per split (None where missing, or without a readable file)."""
    try:
        metrics = read_json(path)
    except (OSError, ValueError):
        metrics = {}
    result: dict[str, float | None] = {}
    for split in SPLITS:
        entry = metrics.get(split) if isinstance(metrics, dict) else None
        value = entry.get("accuracy") if isinstance(entry, dict) else None
        result[split] = float(value) if _is_number(value) else None
    return result


def read_curve(path: Path) -> list[CurvePoint]:
    """history.csv's epoch, cost and val_cost, a value that is not finite (a diverged epoch)
    as None; [] when the file is absent or unreadable."""
    try:
        history = read_history(path)
    except RunFolderError:
        return []
    return [CurvePoint(r.epoch, _finite(r.cost), _finite(r.val_cost)) for r in history]


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --------------------------------------------------------------------------- comparing


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one mapping of dotted keys (``train.optimizer.name``); anything else,
    lists included, is a value. An empty mapping is kept as the value {}."""
    if not isinstance(config, dict) or (prefix and not config):
        return {prefix: config}
    flat: dict[str, Any] = {}
    for key, value in config.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def differing_keys(runs: Sequence[ComparedRun], all_keys: bool = False) -> list[str]:
    """The config keys whose values are not the same in every run (a key some run lacks
    differs), in the order they first appear; every key with ``all_keys``. Never ``name``."""
    order: dict[str, None] = {}
    for run in runs:
        order.update(dict.fromkeys(run.params))
    keys = [k for k in order if k != "name"]
    if all_keys:
        return keys
    return [k for k in keys if len({_canonical(r.params.get(k, _ABSENT)) for r in runs}) > 1]


def _canonical(value: Any) -> str:
    if value is _ABSENT:
        return "\0absent"
    return json.dumps(value, sort_keys=True, default=str)


def compare(paths: Sequence[Path], all_keys: bool = False) -> Comparison:
    """The Comparison of the runs found in ``paths``."""
    runs = load_runs(paths)
    return Comparison(runs, differing_keys(runs, all_keys), all_keys)


# --------------------------------------------------------------------------- text


def value_text(value: Any) -> str:
    """A config value as text: strings as they are, lists and null as in JSON, numbers as
    Python writes them (0.001, 1e-08), ``-`` for a key the run lacks."""
    if value is _ABSENT:
        return MISSING
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None or isinstance(value, list | dict):
        return json.dumps(value, default=str)
    return str(value)


def _number(value: Any, spec: str) -> str:
    return format(value, spec) if _is_number(value) else MISSING


def to_csv(comparison: Comparison) -> str:
    """The comparison as CSV: a header of the columns, one row per run; raw values
    (accuracies at full precision, seconds as recorded), an empty cell where there is none."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(comparison.columns)
    for record in comparison.records():
        params = [
            value_text(record[k]) if record[k] is not _ABSENT else "" for k in comparison.keys
        ]
        results = ["" if record[c] is None else str(record[c]) for c in RESULT_COLUMNS]
        writer.writerow([record["name"], *params, *results])
    return buffer.getvalue()


def to_markdown(comparison: Comparison) -> str:
    """The comparison as a GitHub Markdown table of the display rows (``|`` escaped)."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("\\", "\\\\").replace("|", "\\|") for c in cells) + " |"

    numeric = set(RESULT_COLUMNS) - {"status"}
    align = ["---:" if c in numeric else "---" for c in comparison.columns]
    lines = [line(comparison.columns), "|" + "|".join(align) + "|"]
    lines += [line(row) for row in comparison.display_rows()]
    return "\n".join(lines) + "\n"


def curves(comparison: Comparison) -> list[tuple[str, list[CurvePoint]]]:
    """(label, history) of every run that has a learning curve, for the overlay plot."""
    return [
        (label, run.history)
        for label, run in zip(comparison.labels, comparison.runs, strict=True)
        if run.history
    ]


def to_html(comparison: Comparison, curves_png: bytes | None, title: str = "") -> str:
    """The comparison as one self-contained HTML page (the report's Jinja2 environment and
    CSS, autoescaped): the table, each run's folder and the overlaid learning curves."""
    from datetime import datetime

    from scratchnn_cli import __version__
    from scratchnn_cli.report.html import template_environment

    runs = [
        {"label": label, "path": str(run.path)}
        for label, run in zip(comparison.labels, comparison.runs, strict=True)
    ]
    return (
        template_environment()
        .get_template(HTML_TEMPLATE)
        .render(
            title=title or "run comparison",
            runs=runs,
            keys=comparison.keys,
            shows_all=comparison.all_keys,
            columns=comparison.columns,
            rows=comparison.display_rows(),
            curves_png=curves_png,
            version=__version__,
            generated=datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %z"),
        )
    )
