"""Run folders: create one per training run, write every file atomically, load them back.

A run folder ``runs/<YYYYmmdd-HHMMSS>-<name>`` holds config.yaml, run.json, history.csv,
metrics.json, learning_curve.png, confusion_matrix.png and model.npz. Each file is written to a
temporary name in the same folder and renamed into place, so a crash leaves either the old or
the new version of a file, never half of one.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import yaml

from scratchnn_cli.errors import RunFolderError

RUN_FILES = (
    "config.yaml",
    "run.json",
    "history.csv",
    "metrics.json",
    "learning_curve.png",
    "confusion_matrix.png",
    "model.npz",
)


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(f)`` on a temp file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """Atomically write UTF-8 text."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_json(path: Path, data: Any) -> None:
    """Atomically write pretty JSON."""
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_yaml(path: Path, data: Any) -> None:
    """Atomically write YAML, keys in the order given."""
    write_text(path, yaml.safe_dump(data, sort_keys=False))


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Atomically write arrays to an uncompressed .npz."""

    def _write(f: IO[bytes]) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        f.write(buffer.getvalue())

    atomic_write(path, _write)


def create_run_dir(runs_dir: Path, name: str, now: datetime | None = None) -> Path:
    """Make ``runs_dir/<YYYYmmdd-HHMMSS>-<name>``, adding -2, -3, ... if that folder exists."""
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{name}"
    for k in range(1, 10_000):
        candidate = runs_dir / (base if k == 1 else f"{base}-{k}")
        try:
            candidate.mkdir()  # atomic: fails if another process took the name first
        except FileExistsError:
            continue
        return candidate
    raise RunFolderError(f"could not create a unique run folder for {base} in {runs_dir}")


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON object written by this module."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_finished_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(raw config, run.json) of a completed run; RunFolderError for anything else."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunFolderError(f"{run_dir}: no such run folder")
    info_path = run_dir / "run.json"
    if not info_path.is_file():
        raise RunFolderError(f"{run_dir}: not a run folder (no run.json)")
    try:
        info = read_json(info_path)
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{info_path}: unreadable ({exc})") from None
    status = info.get("status")
    if status != "completed":
        raise RunFolderError(
            f"{run_dir}: the run is not finished (status: {status}); only completed runs load"
        )
    for needed in ("config.yaml", "model.npz"):
        if not (run_dir / needed).is_file():
            raise RunFolderError(f"{run_dir}: {needed} is missing")
    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RunFolderError(f"{run_dir / 'config.yaml'}: unreadable ({exc})") from None
    return config, info


def load_model_arrays(run_dir: Path) -> dict[str, np.ndarray]:
    """The arrays of ``model.npz`` (weights W0, b0, ...)."""
    path = Path(run_dir) / "model.npz"
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{path}: unreadable model file ({exc})") from None
