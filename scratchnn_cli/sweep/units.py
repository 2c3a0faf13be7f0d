"""The unit of work of a sweep: one sub-run (``Task``), trained or resumed by ``run_task``,
whose result is read from its run folder."""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from scratchnn_cli.config import build_config
from scratchnn_cli.errors import RunFolderError, one_line
from scratchnn_cli.runs import FINISHED, load_run_record, read_json


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
