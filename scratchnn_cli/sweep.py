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
numbers as ``--jobs 1``.

Units of work (``plan_units``): a sub-run alone (``Task``), or, with the lockstep engine, a
``Group`` of new sub-runs whose networks train as one stack (``training/lockstep.py``), with the
same results; a group is split into ``--jobs`` parts, each a unit for joblib or Dask.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import math
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from rich.console import Console

from scratchnn_cli.config import apply_overrides, build_config, read_yaml
from scratchnn_cli.data import load_dataset
from scratchnn_cli.errors import ConfigError, RunFolderError, UserInputError, one_line
from scratchnn_cli.report.progress import SweepProgress
from scratchnn_cli.runs import create_run_dir, write_text, write_yaml

SWEEP_FILE = "sweep.yaml"
SWEEP_KEYS = ("grid", "random", "cv", "seeds")
FINISHED = ("completed", "diverged")


@dataclass
class SweepPlan:
    """What a sweep trains (written to ``sweep.yaml``; ``--resume`` reads it back)."""

    name: str
    seed: int
    base: dict[str, Any]  # the spec without its sweep key, --set applied, data path resolved
    grid: dict[str, list[Any]]
    random: int | None
    cv: int | None
    points: list[dict[str, Any]]
    seeds: list[int] | None = None  # --seeds: every point trained with each (older sweeps: none)

    @property
    def folds(self) -> int:
        return self.cv or 1

    @property
    def runs_per_point(self) -> int:
        """Sub-runs of a point: one per fold, for each of ``seeds``."""
        return self.folds * len(self.seeds or [None])

    def sub_run(self, k: int) -> tuple[int | None, int]:
        """(seed, fold) of a point's sub-run ``k``: the folds of the first seed, then the next
        (seed None without ``seeds``: the spec's own)."""
        repeat, fold = divmod(k, self.folds)
        return (None if self.seeds is None else self.seeds[repeat]), fold


@dataclass
class SweepResult:
    """What ``run_sweep`` produced."""

    sweep_dir: Path
    plan: SweepPlan
    rows: list[dict[str, Any]]
    best: dict[str, Any] | None
    refit: dict[str, Any] | None = None  # the refit run: status, test accuracy, run_dir
    failed: list[str] = field(default_factory=list)  # one line per point (or refit) not completed


# --------------------------------------------------------------------------- the plan


def parse_grid_option(items: Iterable[str]) -> dict[str, list[Any]]:
    """``--grid key.path=v1,v2,v3`` (each value read as YAML, so ``model.struct=[5],[10,5]``
    is two lists) -> ``{key.path: [v1, v2, v3]}``."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip() or not text.strip():
            raise UserInputError(
                f"--grid {item!r}: expected key.path=v1,v2,..., e.g. train.lr=0.1,0.01"
            )
        try:
            values = yaml.safe_load(f"[{text}]")
        except (yaml.YAMLError, ValueError):
            raise UserInputError(f"--grid {item!r}: the values are not a YAML list") from None
        grid[key.strip()] = values
    return grid


def sweep_section(raw: Any, source: str) -> dict[str, Any]:
    """The spec's top-level ``sweep:`` key, checked: ``{grid: {key.path: [values]},
    random: N | null, cv: K | null}``."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: sweep: must be a mapping (grid:, random:, cv:)")
    unknown = sorted(set(raw) - set(SWEEP_KEYS))
    if unknown:
        raise ConfigError(
            f"{source}: sweep.{unknown[0]}: unknown key (use {', '.join(SWEEP_KEYS)})"
        )
    grid = raw.get("grid") or {}
    if not isinstance(grid, dict):
        raise ConfigError(f"{source}: sweep.grid: must map key.path to a list of values")
    return {**raw, "grid": dict(grid)}


def _check_grid(grid: dict[str, Any]) -> dict[str, list[Any]]:
    if not grid:
        raise UserInputError(
            "nothing to sweep: give --grid key.path=v1,v2 or sweep.grid in the spec"
        )
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise UserInputError(f"sweep grid {key}: needs a non-empty list of values")
        if key.split(".")[0] == "seed":
            raise UserInputError(
                f"sweep grid {key}: every point shares the seed; to train each point with "
                "several seeds, give --seeds 0,1,2 (sweep.seeds)"
            )
        if key.split(".")[0] in ("name", "sweep") or key.startswith(("data.cv", "data.seed")):
            raise UserInputError(f"sweep grid {key}: this key cannot be swept")
    return grid


def _check_seeds(seeds: Any) -> list[int] | None:
    if seeds is None:
        return None
    if (
        not isinstance(seeds, list)
        or not seeds
        or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds)
        or len(set(seeds)) < len(seeds)
    ):
        raise UserInputError(f"seeds: must be distinct whole numbers >= 0, not {seeds!r}")
    return seeds


def parse_seeds_option(text: str | None) -> list[int] | None:
    """``--seeds 0,1,2`` -> [0, 1, 2] (None when not given)."""
    if text is None:
        return None
    try:
        return _check_seeds([int(part) for part in text.split(",")])
    except ValueError:
        raise UserInputError(f"--seeds {text!r}: expected whole numbers, e.g. 0,1,2") from None


def _count(value: Any, what: str, least: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise UserInputError(f"{what}: must be a whole number >= {least}, not {value!r}")
    return value


def expand_points(
    grid: dict[str, list[Any]], random: int | None, seed: int
) -> list[dict[str, Any]]:
    """The points of ``grid``: all of them (scikit-learn's ``ParameterGrid``), or ``random`` of
    them drawn without replacement (``ParameterSampler``, random_state from the stream
    ``[seed, 9]``). Keys keep the grid's order."""
    from sklearn.model_selection import ParameterGrid, ParameterSampler

    every = ParameterGrid(grid)
    if random is None:
        points = list(every)
    else:
        state = int(np.random.default_rng([seed, 9]).integers(2**31))
        points = list(ParameterSampler(grid, n_iter=min(random, len(every)), random_state=state))
    return [{key: point[key] for key in grid} for point in points]


def plan_sweep(
    config_path: Path,
    overrides: list[str] | None = None,
    grid_options: list[str] | None = None,
    random: int | None = None,
    cv: int | None = None,
    seeds: list[int] | None = None,
) -> SweepPlan:
    """Read the spec, its ``sweep:`` key and the command-line options (which win) into a plan."""
    raw = read_yaml(config_path)
    section = sweep_section(raw.pop("sweep", None), str(config_path))
    raw = apply_overrides(raw, overrides or [])
    config = build_config(copy.deepcopy(raw), str(config_path), default_name=config_path.stem)
    grid = _check_grid({**section.get("grid", {}), **parse_grid_option(grid_options or [])})
    random = _count(random if random is not None else section.get("random"), "random", 1)
    cv = _count(cv if cv is not None else section.get("cv"), "cv", 2)
    seeds = _check_seeds(seeds if seeds is not None else section.get("seeds"))
    if cv is None and config.data.split[1] == 0:
        raise ConfigError(
            f"{config_path}: data.split has no val part: a sweep without cv scores val"
        )
    raw["name"] = config.name
    raw.setdefault("data", {})["dataset"] = config.data.dataset  # a CSV: absolute path
    points = expand_points(grid, random, config.seed)
    return SweepPlan(config.name or "sweep", config.seed, raw, grid, random, cv, points, seeds)


def point_spec(plan: SweepPlan, params: dict[str, Any]) -> dict[str, Any]:
    """The base spec with one point's values set (as ``--set key.path=value`` would)."""
    items = [f"{key}={json.dumps(value)}" for key, value in params.items()]
    return apply_overrides(copy.deepcopy(plan.base), items)


def sub_run_name(plan: SweepPlan, point: int, k: int) -> str:
    """``<name>-p003-f2`` (``-p003-s1-f2`` with seeds) for sub-run ``k`` of point 3."""
    seed, fold = plan.sub_run(k)
    return f"{plan.name}-p{point:03d}{'' if seed is None else f'-s{seed}'}-f{fold}"


def sub_run_spec(plan: SweepPlan, point: int, k: int) -> dict[str, Any]:
    """Point ``point``'s spec for its sub-run ``k``: trained on a fold's train part, validated on
    its held-out part, the test split empty (``data.cv``); with seeds, the run's seed is one of
    them while ``data.seed`` keeps the sweep's, so every seed sees the same folds."""
    seed, fold = plan.sub_run(k)
    raw = point_spec(plan, plan.points[point])
    raw["name"] = sub_run_name(plan, point, k)
    raw["data"].update(train_on="train", cv={"folds": plan.folds, "fold": fold})
    if seed is not None:
        raw["data"].setdefault("seed", plan.seed)
        raw["seed"] = seed
    return raw


def best_spec(plan: SweepPlan, params: dict[str, Any]) -> dict[str, Any]:
    """best.yaml: the winning point's spec, trained on train + val (train only when the spec
    has early stopping, which monitors val), scored on test."""
    raw = point_spec(plan, params)
    raw["name"] = f"{plan.name}-best"
    train = raw.get("train") or {}
    if not train.get("early_stopping"):
        raw["data"]["train_on"] = "train+val"
    return raw


# --------------------------------------------------------------------------- one sub-run


@dataclass
class Task:
    """One sub-run to train (``resume``: the folder of an interrupted one to go on with)."""

    point: int
    run: int  # which of the point's sub-runs (``SweepPlan.sub_run``: its seed and fold)
    name: str
    spec: dict[str, Any]
    resume: str | None = None


def read_sub_run(run_dir: Path) -> dict[str, Any]:
    """Status, validation accuracy, epochs and seconds of a sub-run folder, from its files."""
    info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
    stop = info.get("stop") or {}
    note = info.get("error") or (stop.get("reason") if info["status"] == "diverged" else None)
    return {
        "status": info["status"],
        "val_accuracy": metrics.get("val", {}).get("accuracy"),
        "test_accuracy": metrics.get("test", {}).get("accuracy"),
        "n_test": metrics.get("test", {}).get("n"),
        "epochs": stop.get("epochs"),
        "seconds": info.get("seconds"),
        "note": note,
        "run_dir": str(run_dir),
    }


def run_task(task: Task, sweep_dir: str, plots: bool = False) -> dict[str, Any]:
    """Train (or resume) one sub-run with one BLAS thread and a silent console; never raises
    for a run that fails (KeyboardInterrupt goes on: the run is then marked interrupted)."""
    from threadpoolctl import threadpool_limits

    from scratchnn_cli.experiment import resume_experiment, run_experiment

    console = Console(quiet=True)  # renders nothing (a sub-run's table, progress lines...)
    done = {"point": task.point, "run": task.run}
    try:
        with threadpool_limits(1):
            if task.resume is not None:
                outcome = resume_experiment(Path(task.resume), [], console, plots=plots)
            else:
                config = build_config(copy.deepcopy(task.spec), task.name)
                outcome = run_experiment(config, Path(sweep_dir), console=console, plots=plots)
        return {**done, **read_sub_run(outcome.run_dir)}
    except Exception as exc:
        return {**done, "status": "failed", "note": f"{type(exc).__name__}: {one_line(exc)}"}


@dataclass
class Group:
    """Sub-runs trained together by the lockstep engine (``training/lockstep.py``)."""

    tasks: list[Task]


def run_group(group: Group, sweep_dir: str) -> list[dict[str, Any]]:
    """Train the group's sub-runs in lockstep with one BLAS thread; one result per task, as
    ``run_task`` gives (a sub-run that fails is a failed result; KeyboardInterrupt goes on)."""
    from threadpoolctl import threadpool_limits

    from scratchnn_cli.experiment import run_in_lockstep

    configs = [build_config(copy.deepcopy(t.spec), t.name) for t in group.tasks]
    with threadpool_limits(1):
        outcomes = run_in_lockstep(configs, Path(sweep_dir))
    results = []
    for task, outcome in zip(group.tasks, outcomes, strict=True):
        done = {"point": task.point, "run": task.run}
        if isinstance(outcome, Exception):
            note = f"{type(outcome).__name__}: {one_line(outcome)}"
            results.append({**done, "status": "failed", "note": note})
        else:
            results.append({**done, **read_sub_run(outcome.run_dir)})
    return results


Unit = Task | Group


def run_unit(unit: Unit, sweep_dir: str) -> list[dict[str, Any]]:
    """The results of one unit of work: a sub-run alone, or a lockstep group."""
    if isinstance(unit, Group):
        return run_group(unit, sweep_dir)
    return [run_task(unit, sweep_dir)]


ENGINES = ("auto", "processes", "lockstep")
#: ``auto`` stacks a group of runs when its parameters x batch size is at most this: the bench
#: (``make bench``, section lockstep) measured stacks paying up to 38,560 (64-32-10, batch 16:
#: 1.5-1.9x) and losing from 814,240 (784-64-10, batch 16: 0.5-0.8x)
AUTO_LOCKSTEP_LIMIT = 50_000


def _lockstep_key(spec: dict[str, Any]) -> tuple[Any, ...] | None:
    """Which sub-runs may share a stack (None: this one trains alone); the lockstep engine
    itself splits a group further by training-set size."""
    from scratchnn_cli.build import lockstep_reason

    config = build_config(copy.deepcopy(spec), "sub-run")
    if lockstep_reason(config) is not None:
        return None
    train, model = config.train, config.model
    layers = json.dumps([spec.model_dump() for spec in model.layer_specs()], sort_keys=True)
    optimizer = json.dumps(train.optimizer.hyper(), sort_keys=True, default=str)
    return (
        layers,
        model.dtype,
        train.optimizer.name,
        optimizer,
        str(train.batch_size),
        train.sampling,
        train.max_iterations,
    )


def _pays(spec: dict[str, Any], size: int) -> bool:
    """``auto``: stack a group of ``size`` runs of ``spec`` when there are several and the
    network's parameters x batch size is at most ``AUTO_LOCKSTEP_LIMIT``."""
    from scratchnn_cli.build import build_network

    config = build_config(copy.deepcopy(spec), "sub-run")
    dataset = load_dataset(config.data, config.seed, config.model.dtype)
    parameters = build_network(config, dataset, np.random.default_rng(0)).theta.size
    batch = len(dataset.y_train) if config.train.batch_size == "full" else config.train.batch_size
    return size >= 2 and parameters * batch <= AUTO_LOCKSTEP_LIMIT


def plan_units(tasks: list[Task], engine: str, jobs: int) -> list[Unit]:
    """``tasks`` as units of work: with the lockstep (or auto) engine, new sub-runs that can
    share a stack become groups, split into ``jobs`` parts so every worker has one; resumed
    ones and the rest train alone."""
    if engine == "processes":
        return list(tasks)
    groups: dict[tuple[Any, ...], list[Task]] = {}
    units: list[Unit] = []
    for task in tasks:
        key = None if task.resume is not None else _lockstep_key(task.spec)
        if key is None:
            units.append(task)
        else:
            groups.setdefault(key, []).append(task)
    workers = (os.cpu_count() or 1) if jobs < 0 else jobs
    for members in groups.values():
        if engine == "auto" and not _pays(members[0].spec, len(members)):
            units.extend(members)
            continue
        parts = min(workers, len(members))
        units.extend(Group(members[i::parts]) for i in range(parts))
    return units


def find_sub_run(sweep_dir: Path, name: str) -> Path | None:
    found = sorted(p for p in sweep_dir.glob(f"*-{name}") if p.is_dir())
    return found[-1] if found else None


def _prepare(sweep_dir: Path, name: str, point: int, run: int, spec: dict[str, Any]) -> Any:
    """A finished sub-run's result (dict), or the Task that trains or resumes it."""
    folder = find_sub_run(sweep_dir, name)
    if folder is not None and not (folder / "run.json").is_file():
        shutil.rmtree(folder)  # never got as far as run.json (or it was lost): start again
        folder = None
    if folder is None:
        return Task(point, run, name, spec)
    result = read_sub_run(folder)
    if result["status"] in FINISHED:
        return {"point": point, "run": run, **result}
    return Task(point, run, name, spec, resume=str(folder))


# --------------------------------------------------------------------------- running


Execute = Callable[[list["Unit"], Path, Callable[[dict[str, Any]], None]], None]


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

    def execute(units: list[Unit], sweep_dir: Path, on_result: Callable[..., None]) -> None:
        if jobs == 1 or len(units) <= 1:
            for unit in units:
                for result in run_unit(unit, str(sweep_dir)):
                    on_result(result)
            return
        from joblib import Parallel, delayed

        parallel = Parallel(n_jobs=jobs, return_as="generator_unordered")
        for results in parallel(delayed(run_unit)(unit, str(sweep_dir)) for unit in units):
            for result in results:
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
    client: Any, units: list[Unit], sweep_dir: Path, on_result: Callable[..., None]
) -> None:
    """Each task a Dask future (its spec travels, not arrays: workers load their data)."""
    from dask.distributed import as_completed

    futures = [client.submit(run_unit, unit, str(sweep_dir), pure=False) for unit in units]
    for future in as_completed(futures):
        for result in future.result():
            on_result(result)


def _cell(value: Any) -> Any:
    """A parameter value as a results.csv cell: lists and mappings as JSON text."""
    return json.dumps(value) if isinstance(value, list | dict) else value


def point_row(
    plan: SweepPlan, point: int, results: list[dict[str, Any]], invalid: str | None = None
) -> dict[str, Any]:
    """One line of results.csv: the point's values, the mean and (population) standard
    deviation of its validation accuracy over the folds, mean epochs, total seconds, status."""
    row: dict[str, Any] = {"point": point}
    row.update({key: _cell(value) for key, value in plan.points[point].items()})
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


def _label(plan: SweepPlan, point: int) -> str:
    return " ".join(f"{k}={_cell(v)}" for k, v in plan.points[point].items())


def run_sweep(
    plan: SweepPlan | None,
    runs_dir: Path = Path("runs"),
    *,
    resume: Path | None = None,
    jobs: int = 1,
    refit: bool = True,
    engine: str = "auto",
    backend: str = "local",
    scheduler: str | None = None,
    console: Console | None = None,
) -> SweepResult:
    """Run ``plan`` into a new sweep folder under ``runs_dir``, or finish the sweep folder
    ``resume`` (completed and diverged sub-runs are kept, interrupted ones resumed from their
    checkpoints, missing ones trained); write the results; refit the best point unless told not
    to. Ctrl-C stops it (KeyboardInterrupt goes on) and leaves it ready for ``--resume``.

    ``engine``: ``processes`` trains every sub-run alone; ``lockstep`` trains the new sub-runs
    that can share a stack together (``training/lockstep.py``; same results, one BLAS thread);
    ``auto`` does so where it pays (small networks, see ``AUTO_LOCKSTEP_LIMIT``)."""
    console = console or Console(stderr=True)
    if jobs == 0:
        raise UserInputError("--jobs: 0 jobs; use 1, N or -1 (all cores)")
    if backend not in ("local", "dask"):
        raise UserInputError(f"--backend {backend}: use local or dask")
    if engine not in ENGINES:
        raise UserInputError(f"--engine {engine}: use {', '.join(ENGINES)}")
    if resume is not None:
        plan, sweep_dir = read_plan(resume), Path(resume)
    else:
        assert plan is not None
        sweep_dir = None
    with executor(jobs, backend, scheduler) as execute:
        units = functools.partial(plan_units, engine=engine, jobs=jobs)
        return _sweep(plan, runs_dir, sweep_dir, refit, console, execute, units)


def _sweep(
    plan: SweepPlan,
    runs_dir: Path,
    sweep_dir: Path | None,
    refit: bool,
    console: Console,
    execute: Execute,
    units: Callable[[list[Task]], list[Unit]] = list,
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
                else f"best {best['mean_val_accuracy']:.4f}: {_label(plan, best['point'])}"
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
                    f"point {point} ({_label(plan, point)}) "
                    f"{'' if seed is None else f'seed {seed} '}fold {fold}: "
                    f"{result['status']}: {result.get('note') or ''}"
                )
            if len(results[point]) == plan.runs_per_point:
                advance(point)

        try:
            execute(units(tasks), sweep_dir, on_result)
        except KeyboardInterrupt:
            progress.say(f"interrupted: finish it with scratchnn sweep --resume {sweep_dir}")
            raise
    ordered = [rows[point] for point in range(total)]
    best = best_row(ordered)
    failed = [
        f"point {row['point']} ({_label(plan, row['point'])}): {row['status']}"
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
    """Point -> why its spec is invalid; ConfigError when no point is valid."""
    invalid = {}
    for point in range(len(plan.points)):
        try:
            build_config(sub_run_spec(plan, point, 0), f"point {point} ({_label(plan, point)})")
        except ConfigError as exc:
            invalid[point] = str(exc)
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
            prepared = _prepare(sweep_dir, name, point, k, sub_run_spec(plan, point, k))
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
    prepared = _prepare(sweep_dir, spec["name"], best["point"], 0, spec)
    if not isinstance(prepared, Task):
        return prepared
    on = spec["data"].get("train_on", "train").replace("+", " + ")
    console.print(f"refit: training {sweep_dir / 'best.yaml'} on {on}", markup=False)
    return run_task(prepared, str(sweep_dir), plots=True)


def read_plan(sweep_dir: Path) -> SweepPlan:
    """The plan in a sweep folder's sweep.yaml (RunFolderError when it is not a sweep folder)."""
    path = Path(sweep_dir) / SWEEP_FILE
    if not path.is_file():
        raise RunFolderError(f"{sweep_dir}: not a sweep folder (no {SWEEP_FILE})")
    try:
        return SweepPlan(**yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, TypeError) as exc:
        raise RunFolderError(f"{path}: unreadable ({one_line(exc)})") from None


# --------------------------------------------------------------------------- the files

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
            f"**Best**: point {best['point']}, {_label(plan, best['point'])}: validation "
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
