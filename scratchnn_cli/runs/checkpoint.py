"""checkpoint.npz: a training Snapshot in one .npz file, loadable without pickle.

Its history is not in it: history.csv beside it holds the rows (``runs.history``), and the
checkpoint says how many are its own, so its size is bound by the model, not the run's length
(checkpoints written by earlier versions carry their history; they are read as before)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from scratchnn_cli.errors import RunFolderError, one_line
from scratchnn_cli.records import EpochRecord, Snapshot
from scratchnn_cli.runs.folder import atomic_write, npz_bytes, read_npz
from scratchnn_cli.runs.history import history_csv, read_history
from scratchnn_cli.runs.record import first_problem


def write_checkpoint(path: Path, snapshot: Snapshot) -> None:
    """Atomically save a training Snapshot (``records.Snapshot``): its history as
    history.csv beside ``path``, then ``path`` itself (``checkpoint_bytes``)."""
    history = history_csv(snapshot.history).encode()
    atomic_write(Path(path).parent / "history.csv", lambda f: f.write(history))
    data = checkpoint_bytes(snapshot)
    atomic_write(path, lambda f: f.write(data))


def checkpoint_bytes(snapshot: Snapshot) -> bytes:
    """A training Snapshot as the bytes of one .npz file: arrays are stored as arrays;
    everything else (counters, random generator states, stopping rules, history) as one JSON
    string, so no pickle is ever needed to load it."""
    arrays: dict[str, np.ndarray] = {}
    for i, p in enumerate(snapshot.params):
        arrays[f"param{i}"] = p
    for i, p in enumerate(snapshot.best_params or []):
        arrays[f"best{i}"] = p
    for name, array in snapshot.buffers.items():
        arrays[f"buffer.{name}"] = array
    for name, array in snapshot.best_buffers.items():
        arrays[f"bestbuffer.{name}"] = array
    scalars = {}
    for key, value in snapshot.optimizer.items():
        if isinstance(value, np.ndarray):
            arrays[f"optimizer.{key}"] = value
        else:
            scalars[key] = value
    meta = {
        "epochs": snapshot.epochs,
        "iterations": snapshot.iterations,
        "seconds": snapshot.seconds,
        "J_prev": snapshot.J_prev,
        "optimizer": scalars,
        "sampling_rng": snapshot.sampling_rng,
        "dropout_rng": snapshot.dropout_rng,
        "augment_rng": snapshot.augment_rng,
        "stopper": snapshot.stopper,
        "n_params": len(snapshot.params),
        "n_best": len(snapshot.best_params or []),
        "history_rows": len(snapshot.history),
    }
    arrays["meta"] = np.array(json.dumps(meta))
    return npz_bytes(arrays)


def read_checkpoint(path: Path) -> Snapshot:
    """Load a Snapshot written by ``write_checkpoint``, its history from history.csv beside it;
    RunFolderError, one line, if it is unreadable or what it says cannot be so."""
    arrays = read_npz(path, "checkpoint")
    try:
        meta = _Meta.model_validate_json(str(arrays.pop("meta")))
        for name in ("sampling_rng", "dropout_rng", "augment_rng"):
            _check_generator_state(name, getattr(meta, name))
        snapshot = _snapshot(arrays, meta)
    except ValidationError as exc:
        raise RunFolderError(f"{path}: unreadable checkpoint ({first_problem(exc)})") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise RunFolderError(f"{path}: unreadable checkpoint ({one_line(exc)})") from None
    if meta.history is None:
        snapshot.history = read_history(Path(path).parent / "history.csv", meta.history_rows)
    return snapshot


def _check_generator_state(name: str, state: dict[str, Any] | None) -> None:
    """ValueError unless ``state`` is None or a state numpy's PCG64 generator can take."""
    if state is None:
        return
    try:
        np.random.PCG64().state = state
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"{name} is not a random generator state: {one_line(exc)}") from None


class _Meta(BaseModel):
    """What checkpoint.npz holds besides its arrays (one JSON string), each field's type
    checked: a crafted file is refused before training reads any of it."""

    model_config = ConfigDict(strict=True, extra="forbid")

    epochs: int = Field(ge=0)
    iterations: int = Field(ge=0)
    seconds: float
    J_prev: float | None
    optimizer: dict[str, int | float | bool | str | None]
    sampling_rng: dict[str, Any]
    dropout_rng: dict[str, Any] | None
    augment_rng: dict[str, Any] | None = None
    stopper: dict[str, Any] | None
    n_params: int = Field(ge=0)
    n_best: int = Field(ge=0)
    history_rows: int = Field(default=0, ge=0)
    history: list[dict[str, Any]] | None = None  # written by earlier versions


def _snapshot(arrays: dict[str, np.ndarray], meta: _Meta) -> Snapshot:
    """The Snapshot that ``arrays`` (less "meta") and ``meta`` describe (its history from
    ``meta`` when an earlier version put it there, else empty)."""
    optimizer: dict[str, Any] = dict(meta.optimizer)
    for key in list(arrays):
        if key.startswith("optimizer."):
            optimizer[key.removeprefix("optimizer.")] = arrays.pop(key)
    return Snapshot(
        epochs=meta.epochs,
        iterations=meta.iterations,
        seconds=meta.seconds,
        J_prev=meta.J_prev,
        params=[arrays[f"param{i}"] for i in range(meta.n_params)],
        optimizer=optimizer,
        sampling_rng=meta.sampling_rng,
        dropout_rng=meta.dropout_rng,
        augment_rng=meta.augment_rng,
        history=[EpochRecord(**r) for r in meta.history or []],
        stopper=meta.stopper,
        best_params=[arrays[f"best{i}"] for i in range(meta.n_best)] or None,
        buffers=_prefixed(arrays, "buffer."),
        best_buffers=_prefixed(arrays, "bestbuffer."),
    )


def _prefixed(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays whose key starts with ``prefix``, by the rest of the key."""
    return {k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)}
