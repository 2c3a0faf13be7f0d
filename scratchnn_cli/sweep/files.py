"""A sweep's own files: ``results.csv`` (one row per point), ``summary.md``, ``sweep.png`` and
``best.yaml``."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from scratchnn_cli.runs import write_text, write_yaml
from scratchnn_cli.sweep.plan import SweepPlan, best_spec, point_label
from scratchnn_cli.sweep.result import RESULT_COLUMNS, PointRow, SweepResult


def results_frame(plan: SweepPlan, rows: list[PointRow]) -> pd.DataFrame:
    """results.csv as a table: one row per point, ``point``, the grid's keys, ``RESULT_COLUMNS``."""
    return pd.DataFrame(
        [row.to_row() for row in rows], columns=["point", *plan.grid, *RESULT_COLUMNS]
    )


def write_sweep_files(plan: SweepPlan, outcome: SweepResult) -> None:
    """results.csv, sweep.png, best.yaml (when a point completed) and summary.md."""
    from scratchnn_cli.report.plots import plot_sweep

    sweep_dir = outcome.sweep_dir
    frame = results_frame(plan, outcome.rows)
    write_text(sweep_dir / "results.csv", frame.to_csv(index=False, float_format="%.10g"))
    metric = "validation accuracy" + (f" ({plan.cv}-fold CV mean)" if plan.cv else "")
    if plan.seeds:
        metric += f", {len(plan.seeds)} seeds"
    plot_sweep(
        frame, list(plan.grid), "mean_val_accuracy", sweep_dir / "sweep.png", plan.name, metric
    )
    if outcome.best is not None:
        write_yaml(sweep_dir / "best.yaml", best_spec(plan, plan.points[outcome.best.point]))
    write_text(sweep_dir / "summary.md", results_markdown(plan, outcome))


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _by_score(row: PointRow) -> float:
    score = row.mean_val_accuracy
    return 1.0 if score is None or math.isnan(score) else -score


def spread_over(plan: SweepPlan) -> str:
    """What a point's standard deviation is taken over (``5 folds``, ``3 seeds``, ``5 folds x
    3 seeds``); "" when a point is a single sub-run, which has no spread to show."""
    parts = []
    if plan.folds > 1:
        parts.append(f"{plan.folds} folds")
    if plan.seeds and len(plan.seeds) > 1:
        parts.append(f"{len(plan.seeds)} seeds")
    return " x ".join(parts)


def estimate_name(plan: SweepPlan) -> str:
    """What a point's score is: the "CV estimate" with ``--cv``, else the "validation
    accuracy" (of the val split: no cross-validation, so no estimate of its spread over folds)."""
    return "CV estimate" if plan.cv else "validation accuracy"


def score_text(plan: SweepPlan, row: PointRow) -> str:
    """A point's score: its mean validation accuracy, ``± std`` when it has several sub-runs."""
    mean = _fmt(row.mean_val_accuracy)
    return f"{mean} ± {_fmt(row.std_val_accuracy)}" if spread_over(plan) else mean


def seconds_column(plan: SweepPlan) -> str:
    """The name of summary.md's time column: a point's seconds are its sub-runs' training
    times added up (what the point cost), which exceeds the sweep's wall time when the sub-runs
    train side by side (``--jobs``)."""
    if plan.runs_per_point == 1:
        return "train seconds"
    return f"train seconds (sum over {plan.runs_per_point} sub-runs)"


def results_markdown(plan: SweepPlan, outcome: SweepResult) -> str:
    how = f"{plan.cv}-fold stratified CV of train + val" if plan.cv else "the val split"
    if plan.seeds:
        how += (
            f", each fold trained with seeds {', '.join(map(str, plan.seeds))} (initial weights, "
            "sample order; the same folds), the mean over all of them"
        )
    chosen = f"random {len(plan.points)} of the grid" if plan.random else "the whole grid"
    spread = spread_over(plan)
    lines = [
        f"# Sweep {plan.name} ({datetime.now().strftime('%Y-%m-%d %H:%M')})",
        "",
        f"{len(plan.points)} points ({chosen}), scored by the validation accuracy on {how}; "
        "the test split is not used until the refit."
        + (f" ± is the standard deviation over {spread}." if spread else ""),
        "",
    ]
    best, refit = outcome.best, outcome.refit
    if best is None:
        lines += ["No point completed.", ""]
    else:
        lines += [
            f"**Best**: point {best.point}, {point_label(plan, best.point)}: "
            f"{estimate_name(plan)} {score_text(plan, best)} (best.yaml)",
            "",
        ]
    if refit is not None and best is not None:
        lines += [
            f"**Refit** of best.yaml ({refit.status}): test accuracy "
            f"{_fmt(refit.test_accuracy)} (n = {refit.n_test or '-'}), beside the "
            f"{estimate_name(plan)} {_fmt(best.mean_val_accuracy)}; run folder "
            f"{Path(refit.run_dir or '-').name}",
            "",
        ]
    score = "val accuracy" + (" (mean)" if spread else "")
    columns = ["point", *plan.grid, score, *(["std"] if spread else [])]
    columns += ["epochs" + (" (mean)" if plan.runs_per_point > 1 else "")]
    columns += [seconds_column(plan), "status"]
    lines += ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    for row in sorted(outcome.rows, key=_by_score):
        cells = [str(row.point), *(str(row.params[key]) for key in plan.grid)]
        cells.append(_fmt(row.mean_val_accuracy))
        cells += [_fmt(row.std_val_accuracy)] if spread else []
        cells += [_fmt(row.epochs, 1), _fmt(row.seconds, 2), str(row.status)]
        lines.append("| " + " | ".join(cells) + " |")
    if outcome.failed:
        lines += ["", "Not completed:", "", *[f"- {line}" for line in outcome.failed]]
    return "\n".join(lines) + "\n"
