"""Hyper-parameter sweeps: a grid (or a seeded random sample of it) of ``--set``-style keys,
each point trained on every fold of a stratified, seeded k-fold split of train + val (or on
the spec's own train / val split without ``cv``), never on test; then the best point refitted
on train + val and scored once on test.

A sweep folder ``runs/sweep-<name>-<YYYYmmdd-HHMMSS>/`` holds ``sweep.yaml`` (the plan: base
spec, grid, points), one ordinary run folder per point and fold (``<stamp>-<name>-p003-f2``:
its spec says ``data.cv: {folds: 5, fold: 2}``, so it stays a reproducible run), then
``results.csv``, ``summary.md``, ``sweep.png``, ``best.yaml`` and the refit run
(``<stamp>-<name>-best``).

Each sub-run loads its data from its own spec (workers need the data: built-ins need nothing,
a CSV must be at the same path, Fashion-MNIST under ``$SCRATCHNN_DATA``) and writes its run
folder into the sweep folder (a Dask cluster needs a filesystem shared with this machine).
Every worker trains with one BLAS thread, so any number of jobs, or Dask, gives the same
numbers as ``--jobs 1``; no more workers start than there are sub-runs to train (nor more than
``run.WORKERS_PER_CORE`` per core). A Dask scheduler and its workers must be trusted: Dask
moves pickles between them and this process, so a scheduler or worker run by someone else can
run code here.

Hostile input is refused in one line before anything is trained: a grid of more than
``plan.MAX_SUB_RUNS`` sub-runs, ``--grid`` values beyond the YAML limits of
yaml_limits.py, a ``--scheduler`` that is not a Dask scheduler (within Dask's connect
timeout), a sweep.yaml or a run folder's config.yaml that is too large, too deep or an alias bomb.

The unit of work is one sub-run (``Task``), for this process, joblib or Dask: its spec is
validated once, where the sweep runs, and travels as that ``ExperimentConfig`` (the worker
trains it as it is); its result comes back as a ``SubRunResult``, each point's as a row of
results.csv (``PointRow``), the whole sweep's as a ``SweepResult`` (``result.py``).

The package: ``plan.py`` (the grid, points, folds, seeds and every sub-run's spec),
``units.py`` (a sub-run: train or resume it, read its result), ``run.py`` (workers, progress,
results, refit), ``files.py`` (results.csv, summary.md, sweep.png, best.yaml), ``result.py``
(the records they pass).
"""

from scratchnn_cli.sweep.files import (
    RESULT_COLUMNS,
    results_frame,
    results_markdown,
    write_sweep_files,
)
from scratchnn_cli.sweep.plan import (
    SWEEP_FILE,
    SweepPlan,
    best_spec,
    expand_points,
    parse_grid_option,
    parse_seeds_option,
    plan_sweep,
    point_label,
    point_spec,
    read_plan,
    sub_run_name,
    sub_run_spec,
    sweep_section,
)
from scratchnn_cli.sweep.result import PointRow, SubRunResult, SweepResult
from scratchnn_cli.sweep.run import best_row, executor, point_row, run_sweep
from scratchnn_cli.sweep.units import FINISHED, Task, new_task, read_sub_run, run_task

__all__ = [
    "FINISHED",
    "RESULT_COLUMNS",
    "SWEEP_FILE",
    "PointRow",
    "SubRunResult",
    "SweepPlan",
    "SweepResult",
    "Task",
    "best_row",
    "best_spec",
    "executor",
    "expand_points",
    "new_task",
    "parse_grid_option",
    "parse_seeds_option",
    "plan_sweep",
    "point_label",
    "point_row",
    "point_spec",
    "read_plan",
    "read_sub_run",
    "results_frame",
    "run_sweep",
    "run_task",
    "sub_run_name",
    "sub_run_spec",
    "results_markdown",
    "sweep_section",
    "write_sweep_files",
]
