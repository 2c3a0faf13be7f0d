"""Running a sweep: the workers (this process, joblib or Dask), the progress display, one
results row per point as its sub-runs finish, the files, and the refit of the best point."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from scratchnn_cli.build import check_compatible, check_memory, data_key
from scratchnn_cli.config import build_config
from scratchnn_cli.data import Dataset, load_dataset
from scratchnn_cli.errors import ConfigError, Interrupted, UserInputError, one_line
from scratchnn_cli.report.progress import SweepProgress
from scratchnn_cli.runs import create_run_dir, write_yaml
from scratchnn_cli.sweep.files import write_sweep_files
from scratchnn_cli.sweep.plan import (
    SWEEP_FILE,
    SweepPlan,
    best_spec,
    param_cell,
    point_label,
    read_plan,
    sub_run_name,
    sub_run_spec,
)
from scratchnn_cli.sweep.units import FINISHED, Task, prepare_sub_run, run_task


@dataclass
class SweepResult:
    """What ``run_sweep`` produced."""

    sweep_dir: Path
    plan: SweepPlan
    rows: list[dict[str, Any]]
    best: dict[str, Any] | None
    refit: dict[str, Any] | None = None  # the refit run: status, test accuracy, run_dir
    failed: list[str] = field(default_factory=list)  # one line per point (or refit) not completed


Execute = Callable[[list[Task], Path, Callable[[dict[str, Any]], None]], None]


@contextlib.contextmanager
def executor(jobs: int, backend: str, scheduler: str | None) -> Iterator[Execute]:
    """``execute(tasks, sweep_dir, on_result)``, which runs ``tasks`` and calls ``on_result`` in
    this process as each one finishes: in this process (``jobs == 1``), in joblib worker
    processes, or on a Dask cluster (connected on entry, so an unreachable scheduler is
    refused before anything is written)."""
    if backend == "dask":
        with _dask_client(jobs, scheduler) as client:
            yield functools.partial(_execute_dask, client)
        return

    def execute(tasks: list[Task], sweep_dir: Path, on_result: Callable[..., None]) -> None:
        if jobs == 1 or len(tasks) <= 1:
            for task in tasks:
                on_result(run_task(task, str(sweep_dir)))
            return
        from joblib import Parallel, delayed

        parallel = Parallel(n_jobs=jobs, return_as="generator_unordered")
        for result in parallel(delayed(run_task)(task, str(sweep_dir)) for task in tasks):
            on_result(result)

    yield execute


@contextlib.contextmanager
def _dask_client(jobs: int, scheduler: str | None) -> Iterator[Any]:
    """A dask.distributed Client of the scheduler at ``scheduler`` (tcp://host:port), or of a
    local cluster of ``jobs`` single-threaded worker processes when none is given."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise UserInputError(
            "--backend dask needs dask.distributed: pip install 'scratchnn[dask]'"
        ) from None
    with contextlib.ExitStack() as stack:
        if scheduler is None:
            workers = None if jobs < 0 else jobs
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None)
            scheduler = stack.enter_context(cluster).scheduler_address
        try:
            # how long to try: Dask's own setting, distributed.comm.timeouts.connect (30 s;
            # DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s in the environment changes it)
            client = stack.enter_context(Client(scheduler))
        except OSError as exc:
            raise UserInputError(
                f"--scheduler {scheduler}: cannot reach it ({one_line(exc)})"
            ) from None
        yield client


def _execute_dask(
    client: Any, tasks: list[Task], sweep_dir: Path, on_result: Callable[..., None]
) -> None:
    """Each task a Dask future (its spec travels, not arrays: workers load their data)."""
    from dask.distributed import as_completed

    futures = [client.submit(run_task, task, str(sweep_dir), pure=False) for task in tasks]
    for future in as_completed(futures):
        on_result(future.result())


def point_row(
    plan: SweepPlan, point: int, results: list[dict[str, Any]], invalid: str | None = None
) -> dict[str, Any]:
    """One line of results.csv: the point's values, the mean and (population) standard
    deviation of its validation accuracy over the folds, mean epochs, total seconds, status."""
    row: dict[str, Any] = {"point": point}
    row.update({key: param_cell(value) for key, value in plan.points[point].items()})
    results = sorted(results, key=lambda r: r["run"])
    accuracies = [r.get("val_accuracy") for r in results]
    scored = [a for a in accuracies if a is not None]
    statuses = [r["status"] for r in results]
    if invalid is not None:
        status = "invalid"
    elif "failed" in statuses or len(scored) < len(results):
        status = next((s for s in statuses if s not in FINISHED), "failed")
    else:
        status = "diverged" if "diverged" in statuses else "completed"
    epochs = [r["epochs"] for r in results if r.get("epochs") is not None]
    row.update(
        mean_val_accuracy=float(np.mean(scored)) if scored else None,
        std_val_accuracy=float(np.std(scored)) if scored else None,
        fold_val_accuracy=" ".join(f"{a:.6g}" for a in scored),
        epochs=float(np.mean(epochs)) if epochs else None,
        seconds=round(sum(r.get("seconds") or 0.0 for r in results), 3),
        status=status,
        note=invalid or next((r["note"] for r in results if r.get("note")), ""),
    )
    return row


def best_row(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The completed point with the highest mean validation accuracy (the first on a tie)."""
    best = None
    for row in rows:
        if row["status"] == "completed" and row["mean_val_accuracy"] is not None:
            if best is None or row["mean_val_accuracy"] > best["mean_val_accuracy"]:
                best = row
    return best


def run_sweep(
    plan: SweepPlan | None,
    runs_dir: Path = Path("runs"),
    *,
    resume: Path | None = None,
    jobs: int = 1,
    refit: bool = True,
    backend: str = "local",
    scheduler: str | None = None,
    console: Console | None = None,
) -> SweepResult:
    """Run ``plan`` into a new sweep folder under ``runs_dir``, or finish the sweep folder
    ``resume`` (completed and diverged sub-runs are kept, interrupted ones resumed from their
    checkpoints, missing ones trained); write the results; refit the best point unless told not
    to. Ctrl-C stops it (KeyboardInterrupt goes on) and leaves it ready for ``--resume``.
    Every sub-run trains alone, with the engine its spec's ``train.engine`` gives it."""
    console = console or Console(stderr=True)
    if jobs == 0:
        raise UserInputError("--jobs: 0 jobs; use 1, N or -1 (all cores)")
    if backend not in ("local", "dask"):
        raise UserInputError(f"--backend {backend}: use local or dask")
    if scheduler is not None and backend != "dask":
        raise UserInputError("--scheduler: a Dask scheduler needs --backend dask")
    if resume is not None:
        plan, sweep_dir = read_plan(resume), Path(resume)
    else:
        assert plan is not None
        sweep_dir = None
    with executor(jobs, backend, scheduler) as execute:
        return _sweep(plan, runs_dir, sweep_dir, refit, console, execute)


def _sweep(
    plan: SweepPlan,
    runs_dir: Path,
    sweep_dir: Path | None,
    refit: bool,
    console: Console,
    execute: Execute,
) -> SweepResult:
    """``run_sweep`` once the workers are there."""
    invalid = _invalid_points(plan)
    if sweep_dir is None:
        sweep_dir = create_run_dir(runs_dir, f"sweep-{plan.name}", name_first=True)
        write_yaml(sweep_dir / SWEEP_FILE, asdict(plan))
    tasks, results = _sub_runs(plan, sweep_dir, invalid)
    rows: dict[int, dict[str, Any]] = {}

    total = len(plan.points)
    with SweepProgress(console, plan.name, total) as progress:

        def advance(point: int) -> None:
            rows[point] = point_row(plan, point, results[point], invalid.get(point))
            best = best_row(list(rows.values()))
            progress.point_done(
                ""
                if best is None
                else f"best {best['mean_val_accuracy']:.4f}: {point_label(plan, best['point'])}"
            )

        for point in range(total):
            if point in invalid:
                progress.say(f"point {point}: invalid: {invalid[point]}")
            if point in invalid or len(results[point]) == plan.runs_per_point:
                advance(point)

        def on_result(result: dict[str, Any]) -> None:
            point = result["point"]
            results[point].append(result)
            if result["status"] != "completed":
                seed, fold = plan.sub_run(result["run"])
                progress.say(
                    f"point {point} ({point_label(plan, point)}) "
                    f"{'' if seed is None else f'seed {seed} '}fold {fold}: "
                    f"{result['status']}: {result.get('note') or ''}"
                )
            if len(results[point]) == plan.runs_per_point:
                advance(point)

        try:
            execute(tasks, sweep_dir, on_result)
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted: finish it with: scratchnn sweep --resume {sweep_dir}"
            ) from None
    ordered = [rows[point] for point in range(total)]
    best = best_row(ordered)
    failed = [
        f"point {row['point']} ({point_label(plan, row['point'])}): {row['status']}"
        for row in ordered
        if row["status"] != "completed"
    ]
    outcome = SweepResult(sweep_dir, plan, ordered, best, failed=failed)
    write_sweep_files(plan, outcome)
    if best is not None and refit:
        outcome.refit = _refit(plan, sweep_dir, best, console)
        if outcome.refit["status"] != "completed":
            failed.append(f"refit: {outcome.refit['status']}: {outcome.refit.get('note') or ''}")
        write_sweep_files(plan, outcome)
    return outcome


def _invalid_points(plan: SweepPlan) -> dict[int, str]:
    """Point -> why its spec is invalid, or its data (an unknown class, more folds than rows of
    a class, a network too big for it); ConfigError when no point is valid, before the sweep
    folder exists. Points with the same data section share one load of it."""
    invalid = {}
    loaded: tuple[str, Dataset] | None = None  # the last data loaded, by what it depends on
    for point in range(len(plan.points)):
        label = f"point {point} ({point_label(plan, point)})"
        try:
            config = build_config(sub_run_spec(plan, point, 0), label)
        except ConfigError as exc:
            invalid[point] = str(exc)
            continue
        try:
            key = data_key(config)
            if loaded is None or loaded[0] != key:
                loaded = None  # the last one is freed before the next is loaded
                loaded = key, load_dataset(config.data, config.seed, config.model.dtype)
            check_compatible(config, loaded[1])
            check_memory(config, loaded[1])
        except UserInputError as exc:
            invalid[point] = f"{label}: {exc}"
    if len(invalid) == len(plan.points):
        raise ConfigError(next(iter(invalid.values())))
    return invalid


def _sub_runs(
    plan: SweepPlan, sweep_dir: Path, invalid: dict[int, str]
) -> tuple[list[Task], dict[int, list[dict[str, Any]]]]:
    """The sub-runs still to train (or resume), and the results of the finished ones, by point."""
    tasks: list[Task] = []
    results: dict[int, list[dict[str, Any]]] = {point: [] for point in range(len(plan.points))}
    for point in range(len(plan.points)):
        if point in invalid:
            continue
        for k in range(plan.runs_per_point):
            name = sub_run_name(plan, point, k)
            prepared = prepare_sub_run(sweep_dir, name, point, k, sub_run_spec(plan, point, k))
            if isinstance(prepared, Task):
                tasks.append(prepared)
            else:
                results[point].append(prepared)
    return tasks, results


def _refit(
    plan: SweepPlan,
    sweep_dir: Path,
    best: dict[str, Any],
    console: Console,
) -> dict[str, Any]:
    """Train best.yaml (train + val) in the sweep folder and score it on test, once."""
    spec = best_spec(plan, plan.points[best["point"]])
    prepared = prepare_sub_run(sweep_dir, spec["name"], best["point"], 0, spec)
    if not isinstance(prepared, Task):
        return prepared
    on = spec["data"].get("train_on", "train").replace("+", " + ")
    console.print(f"refit: training {sweep_dir / 'best.yaml'} on {on}", markup=False)
    return run_task(prepared, str(sweep_dir), plots=True)
