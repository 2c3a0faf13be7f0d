"""What a sweep produced, as ``run.py`` hands it to ``files.py`` and the command."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scratchnn_cli.sweep.plan import SweepPlan


@dataclass
class SweepResult:
    """What ``run_sweep`` produced."""

    sweep_dir: Path
    plan: SweepPlan
    rows: list[dict[str, Any]]
    best: dict[str, Any] | None
    refit: dict[str, Any] | None = None  # the refit run: status, test accuracy, run_dir
    failed: list[str] = field(default_factory=list)  # one line per point (or refit) not completed
