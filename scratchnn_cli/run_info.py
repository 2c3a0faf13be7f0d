"""What run.json says of a run when it starts (its network, its data, the versions and the
process that trains it: built from the spec, the network and the dataset; stored by ``runs/``),
and a finished run's pieces once rebuilt from its folder (``FinishedRun``)."""

from __future__ import annotations

import os
import platform
import socket
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from scratchnn_cli import __version__
from scratchnn_cli.config import ExperimentConfig
from scratchnn_cli.data import Dataset
from scratchnn_cli.nn.network import Network
from scratchnn_cli.nn.threads import thread_count
from scratchnn_cli.runs import RunRecord


def network_record(config: ExperimentConfig, net: Network) -> dict[str, Any]:
    """What run.json says of the network: sizes, activation, output, and a row per layer."""
    return {
        "sizes": net.sizes,
        "activation": config.model.activation if config.model.layers is None else "per layer",
        "output": net.loss.name,
        "parameters": int(net.theta.size),
        "layers": [
            {"layer": r.layer, "output_shape": list(r.output_shape), "params": r.params}
            for r in net.summary()
        ],
    }


def _versions() -> dict[str, str]:
    return {
        "scratchnn": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": metadata.version("scikit-learn"),  # without importing it (1 s)
    }


def _data_record(dataset: Dataset) -> dict[str, Any]:
    return {
        "name": dataset.name,
        "source": dataset.source,
        "fingerprint": dataset.fingerprint,
        "classes": list(dataset.class_names),
        "n_features": dataset.n_features,
        "n_train": int(len(dataset.y_train)),
        "n_val": int(len(dataset.y_val)),
        "n_test": int(len(dataset.y_test)),
        "scale": dataset.scaling.describe(),
    }


def new_run_info(
    config: ExperimentConfig,
    config_path: Path | None,
    net: Network,
    dataset: Dataset,
    engine: str,
) -> RunRecord:
    """The run.json of a run that starts now in this process (status running)."""
    return RunRecord(
        status="running",
        name=config.name,
        config_file=str(config_path) if config_path else None,
        started=now(),
        pid=os.getpid(),  # for information: whether the run is alive is its lock's business
        host=socket.gethostname(),
        network=network_record(config, net),
        data=_data_record(dataset),
        versions=_versions(),
        threads=thread_count(),  # the layers' threads (a speed setting: same numbers)
        engine=engine,
    )


def now() -> str:
    """The time now, as run.json writes it (local, to the second, with its UTC offset)."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


@dataclass
class FinishedRun:
    """A finished run rebuilt from its folder: run.json, the spec, the same data (same seed)
    and the trained network."""

    run_dir: Path
    record: RunRecord
    config: ExperimentConfig
    dataset: Dataset
    net: Network
