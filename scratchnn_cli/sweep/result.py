"""The records a sweep passes between its modules: a sub-run's result (``units.py``), a point's
row of results.csv (``run.py``) and what the sweep produced (``SweepResult``), as ``run.py``
hands it to ``files.py`` and the command."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scratchnn_cli.sweep.plan import SweepPlan

#: the columns of results.csv after ``point`` and the grid's keys, in order
RESULT_COLUMNS = (
    "mean_val_accuracy",
    "std_val_accuracy",
    "fold_val_accuracy",
    "epochs",
    "seconds",
    "status",
    "note",
)


@dataclass
class SubRunResult:
    """One sub-run (or the refit) as it ended: read from its run folder's run.json and
    metrics.json, or, for a run that failed before it had a folder, why."""

    point: int  # the point it trained
    run: int  # which of the point's sub-runs (``SweepPlan.sub_run``: its seed and fold)
    status: str  # run.json's status: completed, diverged, interrupted, failed...
    val_accuracy: float | None = None  # on the val split (a sub-run's held-out fold)
    test_accuracy: float | None = None  # on the test split (the refit only: sub-runs have none)
    n_test: int | None = None  # rows of the test split
    epochs: int | None = None  # epochs trained when it stopped
    seconds: float | None = None  # its training time
    note: str | None = None  # why it failed or diverged
    run_dir: str | None = None  # its run folder (None: it never got one)


@dataclass
class PointRow:
    """One point's row of results.csv: its values and its sub-runs' results taken together."""

    point: int  # its number in the plan
    params: dict[str, Any]  # grid key -> its value as a results.csv cell (lists as JSON text)
    mean_val_accuracy: float | None  # over its scored sub-runs (None: none was scored)
    std_val_accuracy: float | None  # the population standard deviation of the same
    fold_val_accuracy: str  # each scored sub-run's accuracy, in sub-run order, space-separated
    epochs: float | None  # the mean epochs of its sub-runs
    seconds: float  # its sub-runs' training times added up
    status: str  # completed, diverged, invalid, or the first unfinished sub-run's status
    note: str  # why it is invalid, or the first sub-run's note ("" when none)

    def to_row(self) -> dict[str, Any]:
        """The row as results.csv holds it: ``point``, the grid's keys, ``RESULT_COLUMNS``."""
        return {
            "point": self.point,
            **self.params,
            **{column: getattr(self, column) for column in RESULT_COLUMNS},
        }


@dataclass
class SweepResult:
    """What ``run_sweep`` produced."""

    sweep_dir: Path  # the sweep folder
    plan: SweepPlan
    rows: list[PointRow]  # one per point, in the plan's order
    best: PointRow | None  # the completed point scored highest (None: no point completed)
    refit: SubRunResult | None = None  # the refit of best.yaml, once trained
    failed: list[str] = field(default_factory=list)  # one line per point (or refit) not completed
