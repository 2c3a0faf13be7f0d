"""A sweep's own files: ``results.csv`` (one row per point), ``summary.md``, ``sweep.png`` and
``best.yaml``."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from scratchnn_cli.runs import write_text, write_yaml
from scratchnn_cli.sweep.plan import SweepPlan, best_spec, point_label

if TYPE_CHECKING:
    from scratchnn_cli.sweep.run import SweepResult


RESULT_COLUMNS = (
    "mean_val_accuracy",
    "std_val_accuracy",
    "fold_val_accuracy",
    "epochs",
    "seconds",
    "status",
    "note",
)


def results_frame(plan: SweepPlan, rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["point", *plan.grid, *RESULT_COLUMNS])


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
        write_yaml(sweep_dir / "best.yaml", best_spec(plan, plan.points[outcome.best["point"]]))
    write_text(sweep_dir / "summary.md", summary_markdown(plan, outcome))


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _by_score(row: dict[str, Any]) -> float:
    score = row["mean_val_accuracy"]
    return 1.0 if score is None or math.isnan(score) else -score


def summary_markdown(plan: SweepPlan, outcome: SweepResult) -> str:
    how = f"{plan.cv}-fold stratified CV of train + val" if plan.cv else "the val split"
    if plan.seeds:
        how += (
            f", each fold trained with seeds {', '.join(map(str, plan.seeds))} (initial weights, "
            "sample order; the same folds), the mean over all of them"
        )
    chosen = f"random {len(plan.points)} of the grid" if plan.random else "the whole grid"
    lines = [
        f"# Sweep {plan.name} ({datetime.now().strftime('%Y-%m-%d %H:%M')})",
        "",
        f"{len(plan.points)} points ({chosen}), scored by the validation accuracy on {how}; "
        "the test split is not used until the refit.",
        "",
    ]
    best, refit = outcome.best, outcome.refit
    if best is None:
        lines += ["No point completed.", ""]
    else:
        lines += [
            f"**Best**: point {best['point']}, {point_label(plan, best['point'])}: validation "
            f"accuracy {_fmt(best['mean_val_accuracy'])} ± {_fmt(best['std_val_accuracy'])} "
            "(best.yaml)",
            "",
        ]
    if refit is not None:
        lines += [
            f"**Refit** of best.yaml ({refit['status']}): test accuracy "
            f"{_fmt(refit.get('test_accuracy'))} (n = {refit.get('n_test') or '-'}), beside the "
            f"estimate {_fmt(best['mean_val_accuracy'])}; run folder "
            f"{Path(refit.get('run_dir') or '-').name}",
            "",
        ]
    lines += [
        "| point | "
        + " | ".join(plan.grid)
        + " | val accuracy | std | epochs | seconds | status |",
        "|---" * (len(plan.grid) + 6) + "|",
    ]
    for row in sorted(outcome.rows, key=_by_score):
        values = " | ".join(str(row[key]) for key in plan.grid)
        lines.append(
            f"| {row['point']} | {values} | {_fmt(row['mean_val_accuracy'])} "
            f"| {_fmt(row['std_val_accuracy'])} | {_fmt(row['epochs'], 1)} | {row['seconds']} "
            f"| {row['status']} |"
        )
    if outcome.failed:
        lines += ["", "Not completed:", "", *[f"- {line}" for line in outcome.failed]]
    return "\n".join(lines) + "\n"
