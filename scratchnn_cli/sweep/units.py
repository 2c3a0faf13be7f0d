"""The units of work of a sweep: a sub-run alone (``Task``), or a lockstep ``Group`` of new
sub-runs trained as one stack (``training/lockstep.py``), and which engine makes which
(``plan_units``); each unit returns one result per sub-run, read from its run folder."""

from __future__ import annotations

import copy
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from scratchnn_cli.config import build_config
from scratchnn_cli.data import load_dataset
from scratchnn_cli.errors import RunFolderError, one_line
from scratchnn_cli.runs import load_run_record, read_json

FINISHED = ("completed", "diverged")


@dataclass
class Task:
    """One sub-run to train (``resume``: the folder of an interrupted one to go on with)."""

    point: int
    run: int  # which of the point's sub-runs (``SweepPlan.sub_run``: its seed and fold)
    name: str
    spec: dict[str, Any]
    resume: str | None = None


def read_sub_run(run_dir: Path) -> dict[str, Any]:
    """Status, validation accuracy, epochs and seconds of a sub-run folder, from its files
    (RunFolderError, one line, when run.json or metrics.json is unreadable)."""
    _, info = load_run_record(run_dir)
    metrics_path = run_dir / "metrics.json"
    try:
        metrics = read_json(metrics_path) if metrics_path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{metrics_path}: unreadable ({one_line(exc)})") from None
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
    from scratchnn_cli.experiment import resume_experiment, run_experiment
    from scratchnn_cli.nn.threads import blas_threads

    console = Console(quiet=True)  # renders nothing (a sub-run's table, progress lines...)
    done = {"point": task.point, "run": task.run}
    try:
        with blas_threads(1):
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
    from scratchnn_cli.experiment import run_in_lockstep
    from scratchnn_cli.nn.threads import blas_threads

    configs = [build_config(copy.deepcopy(t.spec), t.name) for t in group.tasks]
    with blas_threads(1):
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
    batch = config.train.rows_per_update(len(dataset.y_train))
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


def prepare_sub_run(sweep_dir: Path, name: str, point: int, run: int, spec: dict[str, Any]) -> Any:
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
