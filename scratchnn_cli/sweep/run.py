"""Running a sweep: the workers (this process, joblib or Dask), the progress display, one
results row per point as its sub-runs finish, the files, and the refit of the best point."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from scratchnn_cli.assembly import check_compatible, check_memory, data_key
from scratchnn_cli.config import ExperimentConfig, validate_config
from scratchnn_cli.config.overrides import shown
from scratchnn_cli.data import Dataset, load_dataset
from scratchnn_cli.errors import ConfigError, Interrupted, UserInputError, one_line
from scratchnn_cli.nn.threads import usable_cores
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
from scratchnn_cli.sweep.result import PointRow, SubRunResult, SweepResult
from scratchnn_cli.sweep.units import FINISHED, Task, earlier_sub_run, new_task, run_task

#: the most worker processes started per CPU core. Every sub-run is CPU-bound and trains with
#: one BLAS thread, so workers beyond the cores only take turns on them, each holding its own
#: copy of the data; a few per core still let a worker train while another loads data or writes
#: its files, and ``--jobs 100000`` no longer starts 100,000 processes.
WORKERS_PER_CORE = 4

#: the schemes of a ``--scheduler`` address: the network transports dask.distributed ships
#: with (``inproc://`` reaches only this process; ``ucx://`` needs a package of its own)
SCHEDULER_SCHEMES = ("tcp", "tls", "ws", "wss")


Execute = Callable[[list[Task], Path, Callable[[SubRunResult], None]], None]


def _asked(jobs: int, cores: int) -> int:
    """The workers ``--jobs jobs`` asks for: N, or (as joblib reads it) -1 every core, -2 all
    but one, and so on."""
    return jobs if jobs > 0 else cores + 1 + jobs


def worker_count(jobs: int, sub_runs: int | None = None) -> int:
    """The worker processes to start for ``--jobs jobs`` and ``sub_runs`` sub-runs to train (None:
    not known yet): no more than the sub-runs (an idle worker still costs a process start and
    the tool's imports), no more than :data:`WORKERS_PER_CORE` per core, at least one."""
    cores = usable_cores()
    most = WORKERS_PER_CORE * cores
    return max(1, min(_asked(jobs, cores), most, most if sub_runs is None else sub_runs))


def _workers_note(jobs: int, workers: int, sub_runs: int | None) -> str | None:
    """A line saying how many workers ``--jobs jobs`` got, where that is not what it asked for
    (None where it is)."""
    cores = usable_cores()
    if workers == _asked(jobs, cores):
        return None
    if workers == sub_runs:
        why = f"{sub_runs} sub-run{'' if sub_runs == 1 else 's'} to train"
    elif workers == WORKERS_PER_CORE * cores:
        why = f"at most {WORKERS_PER_CORE} per CPU core, {cores} here"
    else:
        why = f"{cores} CPU cores here"
    return f"--jobs {jobs}: {workers} worker{'' if workers == 1 else 's'} ({why})"


@contextlib.contextmanager
def executor(
    jobs: int,
    backend: str,
    scheduler: str | None,
    *,
    sub_runs: int | None = None,
    say: Callable[[str], None] | None = None,
) -> Iterator[Execute]:
    """``execute(tasks, sweep_dir, on_result)``, which runs ``tasks`` and calls ``on_result`` in
    this process as each one finishes: in this process (one worker), in joblib worker
    processes, or on a Dask cluster (connected on entry, so an unreachable scheduler is
    refused before anything is written). Local workers are capped (``worker_count``) at the
    tasks to run, or at ``sub_runs`` for a Dask local cluster, started before the tasks are
    known; ``say`` is told when the workers differ from ``jobs``."""
    say = say or (lambda line: None)
    if backend == "dask":
        with _dask_client(jobs, scheduler, sub_runs, say) as client:
            yield functools.partial(_execute_dask, client)
        return

    def execute(tasks: list[Task], sweep_dir: Path, on_result: Callable[..., None]) -> None:
        workers = worker_count(jobs, len(tasks))
        note = _workers_note(jobs, workers, len(tasks))
        if note is not None and tasks:
            say(note)
        if workers == 1:
            for task in tasks:
                on_result(run_task(task, str(sweep_dir)))
            return
        from joblib import Parallel, delayed

        parallel = Parallel(n_jobs=workers, return_as="generator_unordered")
        for result in parallel(delayed(run_task)(task, str(sweep_dir)) for task in tasks):
            on_result(result)

    yield execute


@contextlib.contextmanager
def _dask_client(
    jobs: int, scheduler: str | None, sub_runs: int | None, say: Callable[[str], None]
) -> Iterator[Any]:
    """A dask.distributed Client of the scheduler at ``scheduler`` (tcp://host:port), or of a
    local cluster of single-threaded worker processes (``worker_count``) when none is given.

    How long to try to reach a scheduler: Dask's own setting, distributed.comm.timeouts.connect
    (30 s; DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s in the environment changes it), for the
    whole of it: first a handshake of Dask's protocol, bounded by it (Dask bounds only the TCP
    connect, so a server that accepts the connection but speaks another protocol, an HTTP
    server say, would keep the Client waiting for ever), then the Client."""
    try:
        import dask
        from dask.distributed import Client, LocalCluster
        from dask.utils import parse_timedelta
    except ImportError:
        raise UserInputError(
            "--backend dask needs dask.distributed: pip install 'scratchnn[dask]'"
        ) from None
    seconds = parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"), "s")
    with contextlib.ExitStack() as stack:
        if scheduler is None:
            workers = worker_count(jobs, sub_runs)
            note = _workers_note(jobs, workers, sub_runs)
            if note is not None:
                say(note)
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None)
            scheduler = stack.enter_context(cluster).scheduler_address
        else:
            _check_scheduler_address(scheduler)
            _handshake(scheduler, seconds)
        try:
            client = stack.enter_context(Client(scheduler, timeout=seconds))
        except (OSError, ValueError, TypeError) as exc:
            raise UserInputError(
                f"--scheduler {scheduler}: cannot reach it ({one_line(exc)})"
            ) from None
        yield client


def _check_scheduler_address(address: str) -> None:
    """UserInputError unless ``address`` is a Dask scheduler's address: [SCHEME://]HOST:PORT
    with a scheme of :data:`SCHEDULER_SCHEMES` (none: tcp), as Dask parses it."""
    from distributed.comm import parse_address, parse_host_port

    try:
        scheme, location = parse_address(address)
        host, port = parse_host_port(location)
    except (ValueError, TypeError):
        scheme, host, port = "", "", 0
    if scheme not in SCHEDULER_SCHEMES or not host or not 0 < port < 65536:
        raise UserInputError(
            f"--scheduler {shown(address)}: not a Dask scheduler address; expected "
            "tcp://HOST:PORT (or tls://, ws://, wss://)"
        )


def _handshake(address: str, seconds: float) -> None:
    """Open a connection to ``address`` and exchange Dask's handshake with it, all within
    ``seconds``; UserInputError, naming the address, when that fails. Run on an event loop in
    a thread of its own, so that it works where this thread already runs one (Jupyter)."""
    from distributed.comm import CommClosedError, connect
    from distributed.security import Security

    async def handshake() -> None:
        arguments = Security().get_connection_args("client")  # the Client's own, from config
        comm = await asyncio.wait_for(connect(address, timeout=seconds, **arguments), seconds)
        await comm.close()

    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        try:
            thread.submit(asyncio.run, handshake()).result()
        except CommClosedError:
            raise UserInputError(
                f"--scheduler {address}: it closed the connection during Dask's handshake: "
                "is it a Dask scheduler?"
            ) from None
        except TimeoutError:
            raise UserInputError(
                f"--scheduler {address}: cannot reach it (no Dask scheduler answered within "
                f"{seconds:g} s; is it a Dask scheduler's address? Dask's setting "
                "distributed.comm.timeouts.connect sets the limit)"
            ) from None
        except (OSError, ValueError, TypeError) as exc:
            raise UserInputError(
                f"--scheduler {address}: cannot reach it ({one_line(exc)})"
            ) from None


def _execute_dask(
    client: Any, tasks: list[Task], sweep_dir: Path, on_result: Callable[..., None]
) -> None:
    """Each task a Dask future (its validated spec travels, not arrays: workers load their
    data)."""
    from dask.distributed import as_completed

    futures = [client.submit(run_task, task, str(sweep_dir), pure=False) for task in tasks]
    for future in as_completed(futures):
        on_result(future.result())


def point_row(
    plan: SweepPlan, point: int, results: list[SubRunResult], invalid: str | None = None
) -> PointRow:
    """One line of results.csv: the point's values, the mean and (population) standard
    deviation of its validation accuracy over the folds, mean epochs, total seconds, status."""
    results = sorted(results, key=lambda r: r.run)
    accuracies = [r.val_accuracy for r in results]
    scored = [a for a in accuracies if a is not None]
    statuses = [r.status for r in results]
    if invalid is not None:
        status = "invalid"
    elif "failed" in statuses or len(scored) < len(results):
        status = next((s for s in statuses if s not in FINISHED), "failed")
    else:
        status = "diverged" if "diverged" in statuses else "completed"
    epochs = [r.epochs for r in results if r.epochs is not None]
    return PointRow(
        point=point,
        params={key: param_cell(value) for key, value in plan.points[point].items()},
        mean_val_accuracy=float(np.mean(scored)) if scored else None,
        std_val_accuracy=float(np.std(scored)) if scored else None,
        fold_val_accuracy=" ".join(f"{a:.6g}" for a in scored),
        epochs=float(np.mean(epochs)) if epochs else None,
        seconds=round(sum(r.seconds or 0.0 for r in results), 3),
        status=status,
        note=invalid or next((r.note for r in results if r.note), ""),
    )


def best_row(rows: list[PointRow]) -> PointRow | None:
    """The completed point with the highest mean validation accuracy (the first on a tie)."""
    best = None
    for row in rows:
        if row.status == "completed" and row.mean_val_accuracy is not None:
            if best is None or row.mean_val_accuracy > best.mean_val_accuracy:
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

    def say(line: str) -> None:
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    sub_runs = len(plan.points) * plan.runs_per_point
    with executor(jobs, backend, scheduler, sub_runs=sub_runs, say=say) as execute:
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
    checked, invalid = _check_points(plan)
    if sweep_dir is None:
        sweep_dir = create_run_dir(runs_dir, f"sweep-{plan.name}", name_first=True)
        write_yaml(sweep_dir / SWEEP_FILE, asdict(plan))
    tasks, results, refused = _sub_runs(plan, sweep_dir, checked)
    rows: dict[int, PointRow] = {}
    best: PointRow | None = None  # of the points done so far (the earlier one on a tie)

    total = len(plan.points)
    with SweepProgress(console, plan.name, total) as progress:

        def advance(point: int) -> None:
            nonlocal best
            rows[point] = point_row(plan, point, results[point], invalid.get(point))
            best = best_row([row for row in (best, rows[point]) if row is not None])
            progress.point_done(
                ""
                if best is None
                else f"best {best.mean_val_accuracy:.4f}: {point_label(plan, best.point)}"
            )

        for point in range(total):
            if point in invalid:
                progress.say(f"point {point}: invalid: {invalid[point]}")
            if point in invalid or len(results[point]) == plan.runs_per_point:
                advance(point)

        def on_result(result: SubRunResult) -> None:
            point = result.point
            results[point].append(result)
            if result.status != "completed":
                seed, fold = plan.sub_run(result.run)
                progress.say(
                    f"point {point} ({point_label(plan, point)}) "
                    f"{'' if seed is None else f'seed {seed} '}fold {fold}: "
                    f"{result.status}: {result.note or ''}"
                )
            if len(results[point]) == plan.runs_per_point:
                advance(point)

        for result in refused:  # said as a worker's failure would be
            on_result(result)
        try:
            execute(tasks, sweep_dir, on_result)
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted: finish it with: scratchnn sweep --resume {sweep_dir}"
            ) from None
    return _finish(plan, sweep_dir, [rows[point] for point in range(total)], refit, console)


def _finish(
    plan: SweepPlan, sweep_dir: Path, rows: list[PointRow], refit: bool, console: Console
) -> SweepResult:
    """The sweep's files from its rows (one per point, in order), then the refit of the best
    point on train + val (when asked) and the files again with it."""
    best = best_row(rows)
    failed = [
        f"point {row.point} ({point_label(plan, row.point)}): {row.status}"
        for row in rows
        if row.status != "completed"
    ]
    outcome = SweepResult(sweep_dir, plan, rows, best, failed=failed)
    write_sweep_files(plan, outcome)
    if best is not None and refit:
        outcome.refit = _refit(plan, sweep_dir, best, console)
        if outcome.refit.status != "completed":
            failed.append(f"refit: {outcome.refit.status}: {outcome.refit.note or ''}")
        write_sweep_files(plan, outcome)
    return outcome


def _check_points(plan: SweepPlan) -> tuple[dict[int, ExperimentConfig], dict[int, str]]:
    """Each point's first sub-run validated (point -> its ExperimentConfig, which trains it),
    and point -> why a point is invalid: its spec, or its data (an unknown class, more folds
    than rows of a class, a network too big for it); ConfigError when no point is valid, before
    the sweep folder exists. Points with the same data section share one load of it."""
    checked: dict[int, ExperimentConfig] = {}
    invalid: dict[int, str] = {}
    loaded: tuple[str, Dataset] | None = None  # the last data loaded, by what it depends on
    for point in range(len(plan.points)):
        label = f"point {point} ({point_label(plan, point)})"
        try:
            config = validate_config(sub_run_spec(plan, point, 0), label)
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
            continue
        checked[point] = config
    if len(invalid) == len(plan.points):
        raise ConfigError(next(iter(invalid.values())))
    return checked, invalid


def _sub_runs(
    plan: SweepPlan, sweep_dir: Path, checked: dict[int, ExperimentConfig]
) -> tuple[list[Task], dict[int, list[SubRunResult]], list[SubRunResult]]:
    """The sub-runs of the valid points (``checked``) still to train (or resume); the results
    of the finished ones, by point; and those whose spec is invalid (failed before training).
    Each spec to train is validated here, once: the first sub-run's by ``_check_points``."""
    tasks: list[Task] = []
    results: dict[int, list[SubRunResult]] = {point: [] for point in range(len(plan.points))}
    refused: list[SubRunResult] = []
    for point, first in checked.items():
        for k in range(plan.runs_per_point):
            name = sub_run_name(plan, point, k)
            earlier = earlier_sub_run(sweep_dir, name, point, k)
            if isinstance(earlier, SubRunResult):
                results[point].append(earlier)
                continue
            task = earlier
            if task is None:
                task = (
                    Task(point, k, first)
                    if k == 0
                    else new_task(point, k, sub_run_spec(plan, point, k), name)
                )
            if isinstance(task, Task):
                tasks.append(task)
            else:
                refused.append(task)
    return tasks, results, refused


def _refit(
    plan: SweepPlan,
    sweep_dir: Path,
    best: PointRow,
    console: Console,
) -> SubRunResult:
    """Train best.yaml (train + val) in the sweep folder and score it on test, once."""
    spec = best_spec(plan, plan.points[best.point])
    earlier = earlier_sub_run(sweep_dir, spec["name"], best.point, 0)
    if isinstance(earlier, SubRunResult):
        return earlier
    on = spec["data"].get("train_on", "train").replace("+", " + ")
    console.print(f"refit: training {sweep_dir / 'best.yaml'} on {on}", markup=False)
    task = earlier if earlier is not None else new_task(best.point, 0, spec, spec["name"])
    return run_task(task, str(sweep_dir), plots=True) if isinstance(task, Task) else task
