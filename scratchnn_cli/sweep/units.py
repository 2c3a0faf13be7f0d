"""The unit of work of a sweep: one sub-run (``Task``), trained or resumed by ``run_task``,
whose result is read from its run folder."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from scratchnn_cli.config import ExperimentConfig, validate_config
from scratchnn_cli.errors import ConfigError, RunFolderError, one_line
from scratchnn_cli.runs import FINISHED, load_run_record, read_json
from scratchnn_cli.sweep.result import SubRunResult


@dataclass
class Task:
    """One sub-run to train: from its spec, validated once where the sweep runs (a worker
    trains it as it is), or from the folder of an interrupted one (``resume``)."""

    point: int  # the point it trains
    run: int  # which of the point's sub-runs (``SweepPlan.sub_run``: its seed and fold)
    config: ExperimentConfig | None = None  # the validated spec (None when resumed)
    resume: str | None = None  # the run folder to go on with


def read_sub_run(run_dir: Path, point: int, run: int) -> SubRunResult:
    """Status, validation accuracy, epochs and seconds of sub-run ``run`` of ``point``, from its
    folder's files (RunFolderError, one line, when run.json or metrics.json is unreadable)."""
    _, info = load_run_record(run_dir)
    metrics_path = run_dir / "metrics.json"
    try:
        metrics = read_json(metrics_path) if metrics_path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{metrics_path}: unreadable ({one_line(exc)})") from None
    stop = info.get("stop") or {}
    note = info.get("error") or (stop.get("reason") if info["status"] == "diverged" else None)
    return SubRunResult(
        point=point,
        run=run,
        status=info["status"],
        val_accuracy=metrics.get("val", {}).get("accuracy"),
        test_accuracy=metrics.get("test", {}).get("accuracy"),
        n_test=metrics.get("test", {}).get("n"),
        epochs=stop.get("epochs"),
        seconds=info.get("seconds"),
        note=note,
        run_dir=str(run_dir),
    )


def _failed(point: int, run: int, exc: Exception) -> SubRunResult:
    return SubRunResult(point, run, "failed", note=f"{type(exc).__name__}: {one_line(exc)}")


def run_task(task: Task, sweep_dir: str, plots: bool = False) -> SubRunResult:
    """Train (or resume) one sub-run with one BLAS thread and a silent console; never raises
    for a run that fails (KeyboardInterrupt goes on: the run is then marked interrupted)."""
    from scratchnn_cli.experiment import resume_experiment, run_experiment
    from scratchnn_cli.nn.threads import blas_threads

    console = Console(quiet=True)  # renders nothing (a sub-run's table, progress lines...)
    try:
        with blas_threads(1):
            if task.resume is not None:
                outcome = resume_experiment(Path(task.resume), [], console, plots=plots)
            else:
                assert task.config is not None, "a Task trains a spec or resumes a folder"
                outcome = run_experiment(task.config, Path(sweep_dir), console=console, plots=plots)
        return read_sub_run(outcome.run_dir, task.point, task.run)
    except Exception as exc:
        return _failed(task.point, task.run, exc)


def new_task(point: int, run: int, spec: dict[str, Any], source: str) -> Task | SubRunResult:
    """The Task training ``spec``, validated here, once (``source`` names it in a message); a
    failed result, saying why, when it is invalid."""
    try:
        return Task(point, run, validate_config(spec, source))
    except ConfigError as exc:
        return _failed(point, run, exc)


def find_sub_run(sweep_dir: Path, name: str) -> Path | None:
    found = sorted(p for p in sweep_dir.glob(f"*-{name}") if p.is_dir())
    return found[-1] if found else None


def earlier_sub_run(sweep_dir: Path, name: str, point: int, run: int) -> SubRunResult | Task | None:
    """What an earlier try left of the sub-run called ``name``: its result when it finished,
    the Task that resumes it when it did not, None when there is nothing (it is trained anew)."""
    folder = find_sub_run(sweep_dir, name)
    if folder is not None and not (folder / "run.json").is_file():
        shutil.rmtree(folder)  # never got as far as run.json (or it was lost): start again
        folder = None
    if folder is None:
        return None
    result = read_sub_run(folder, point, run)
    if result.status in FINISHED:
        return result
    return Task(point, run, resume=str(folder))
