"""checkpoint.npz: a training Snapshot in one .npz file, loadable without pickle."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from scratchnn_cli.errors import RunFolderError
from scratchnn_cli.runs.folder import atomic_write, npz_bytes


def write_checkpoint(path: Path, snapshot: Any) -> None:
    """Atomically save a training Snapshot (``training.snapshot.Snapshot``) as one .npz file
    (``checkpoint_bytes``)."""
    data = checkpoint_bytes(snapshot)
    atomic_write(path, lambda f: f.write(data))


def checkpoint_bytes(snapshot: Any) -> bytes:
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
        "history": [vars(r) for r in snapshot.history],
    }
    arrays["meta"] = np.array(json.dumps(meta))
    return npz_bytes(arrays)


def read_checkpoint(path: Path) -> Any:
    """Load a Snapshot written by ``write_checkpoint``; RunFolderError if it is unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        return _snapshot(arrays, json.loads(str(arrays.pop("meta"))))
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise RunFolderError(f"{path}: unreadable checkpoint ({exc})") from None


def _snapshot(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Any:
    """The Snapshot that ``arrays`` (less "meta") and ``meta`` describe."""
    from scratchnn_cli.training.snapshot import EpochRecord, Snapshot

    optimizer: dict[str, Any] = dict(meta["optimizer"])
    for key in list(arrays):
        if key.startswith("optimizer."):
            optimizer[key.removeprefix("optimizer.")] = arrays.pop(key)
    return Snapshot(
        epochs=meta["epochs"],
        iterations=meta["iterations"],
        seconds=meta["seconds"],
        J_prev=meta["J_prev"],
        params=[arrays[f"param{i}"] for i in range(meta["n_params"])],
        optimizer=optimizer,
        sampling_rng=meta["sampling_rng"],
        dropout_rng=meta["dropout_rng"],
        augment_rng=meta.get("augment_rng"),
        history=[EpochRecord(**r) for r in meta["history"]],
        stopper=meta["stopper"],
        best_params=[arrays[f"best{i}"] for i in range(meta["n_best"])] or None,
        buffers=_prefixed(arrays, "buffer."),
        best_buffers=_prefixed(arrays, "bestbuffer."),
    )


def _prefixed(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays whose key starts with ``prefix``, by the rest of the key."""
    return {k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)}
