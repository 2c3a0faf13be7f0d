"""One experiment from spec to run folder: data -> network -> training -> metrics -> files.

This is the glue between the maths (``nn``, ``train``) and the files (``runs``, ``report``); the
CLI only parses arguments and calls ``run_experiment`` or ``evaluate_run``.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import shutil
import signal
import socket
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from rich.console import Console

from scratchnn_cli import __version__
from scratchnn_cli.config import ExperimentConfig, apply_overrides, build_config
from scratchnn_cli.data import Dataset, load_dataset
from scratchnn_cli.data.augment import Augmenter, augmentation_examples
from scratchnn_cli.errors import ConfigError, RunFolderError, RunWriteError
from scratchnn_cli.metrics import confused_pairs, confusion_matrix, per_class_accuracy
from scratchnn_cli.nn.gradcheck import GradCheckRow, check_gradients
from scratchnn_cli.nn.layers import ACTIVATIONS
from scratchnn_cli.nn.network import Network, plan
from scratchnn_cli.nn.optim.optimizers import make_optimizer
from scratchnn_cli.report.plots import (
    LiveLearningCurve,
    confusion_matrix_png,
    plot_augmentation,
    summary_table,
)
from scratchnn_cli.report.progress import TrainingProgress
from scratchnn_cli.runs import (
    RunLock,
    checkpoint_bytes,
    create_run_dir,
    json_bytes,
    load_finished_run,
    load_model_arrays,
    load_run_info,
    load_run_record,
    npz_bytes,
    read_checkpoint,
    run_info_bytes,
    write_files,
    write_json,
    write_npz,
    write_run_info,
    write_text,
    write_yaml,
    yaml_bytes,
)
from scratchnn_cli.training.lockstep import train_lockstep
from scratchnn_cli.training.loop import Trainer, train, trainer_for
from scratchnn_cli.training.snapshot import EpochRecord, Hooks, Snapshot, TrainResult
from scratchnn_cli.training.stopping import divergence

SPLITS = ("train", "val", "test")


def rng_streams(seed: int) -> dict[str, np.random.Generator]:
    """One seed, independent streams: data split [seed, 1] (in data/dataset.py), initial weights
    [seed, 2], sampling [seed, 3], dropout masks [seed, 4], gradient check [seed, 5] (below),
    training-batch augmentation [seed, 6], the augmentation.png examples [seed, 7]."""
    return {
        "init": np.random.default_rng([seed, 2]),
        "sampling": np.random.default_rng([seed, 3]),
        "dropout": np.random.default_rng([seed, 4]),
        "augment": np.random.default_rng([seed, 6]),
    }


def augmenter(
    config: ExperimentConfig, dataset: Dataset, rng: np.random.Generator
) -> Augmenter | None:
    """The ``data.augment`` transforms of training batches (None when the spec has none)."""
    if config.data.augment is None:
        return None
    if dataset.image_shape is None:
        raise ConfigError(f"data.augment: {config.data.dataset} is not image data")
    shape = dataset.image_shape
    return Augmenter(config.data.augment, (*shape, 1) if len(shape) == 2 else shape, rng)


def write_augmentation_examples(run_dir: Path, config: ExperimentConfig, dataset: Dataset) -> None:
    """``augmentation.png``: training images beside augmented versions (its own stream, so the
    picture never changes what training sees)."""
    shown = augmenter(config, dataset, np.random.default_rng([config.seed, 7]))
    if shown is None:
        return
    originals, augmented = augmentation_examples(dataset.X_train[:8], shown)
    plot_augmentation(
        originals, augmented, run_dir / "augmentation.png", f"{config.name}: data.augment"
    )


def output_kind(config: ExperimentConfig, n_classes: int) -> str:
    """'sigmoid' (one output unit) for two classes, 'softmax' for more, unless the spec says."""
    chosen = config.model.output
    if chosen == "auto":
        return "sigmoid" if n_classes == 2 else "softmax"
    if chosen == "sigmoid" and n_classes != 2:
        raise ConfigError(
            f"model.output: a sigmoid output needs exactly 2 classes, the data has {n_classes}"
        )
    return chosen


def build_network(
    config: ExperimentConfig,
    dataset: Dataset,
    rng: np.random.Generator | None = None,
    dropout_rng: np.random.Generator | None = None,
) -> Network:
    """The network the spec describes, sized for the dataset: its hidden layers (``model.layers``
    or the short form), then the output layer; weights from ``rng`` (default: the spec's
    initial-weight stream), dropout masks from ``dropout_rng`` (default: its dropout stream)."""
    output = output_kind(config, dataset.n_classes)
    n_outputs = 1 if output == "sigmoid" else dataset.n_classes
    streams = rng_streams(config.seed)
    try:
        return Network.from_layers(
            [spec.make() for spec in config.model.layer_specs()],
            input_shape(config, dataset),
            n_outputs,
            output=output,
            rng=rng if rng is not None else streams["init"],
            mu=config.model.mu,
            sigma=config.model.sigma,
            dtype=np.dtype(config.model.dtype),
            init=config.model.init,
            dropout_rng=dropout_rng if dropout_rng is not None else streams["dropout"],
        )
    except ValueError as exc:  # a layer that does not fit its input (dense on images...)
        raise ConfigError(f"model.layers: {exc}") from None


IMAGE_LAYERS = ("conv2d", "maxpool2d", "avgpool2d", "global_avgpool")


def input_shape(config: ExperimentConfig, dataset: Dataset) -> tuple[int, ...]:
    """The shape of one sample as the network sees it: (H, W, C) images when the model has
    convolution or pooling layers, else (n_features,) rows. ConfigError for images the data
    does not have."""
    kinds = [spec.type for spec in config.model.layer_specs()]
    if not any(kind in IMAGE_LAYERS for kind in kinds):
        return (dataset.n_features,)
    if dataset.image_shape is None:
        first = next(kind for kind in kinds if kind in IMAGE_LAYERS)
        raise ConfigError(
            f"model.layers: {first} needs images, but {config.data.dataset} is tabular data "
            "(a CSV of pixels can say data.image_shape: [channels, height, width])"
        )
    shape = dataset.image_shape
    return (*shape, 1) if len(shape) == 2 else tuple(shape)


def check_memory(config: ExperimentConfig, dataset: Dataset) -> None:
    """Refuse (ConfigError) a network whose training would not fit in this machine's memory."""
    needed = training_bytes(config, dataset)
    total = physical_memory()
    if total is not None and needed > total:
        raise ConfigError(
            f"model: this network and its data need ~{needed / 2**30:.3g} GiB to train, this "
            f"machine has {total / 2**30:.3g} GiB; use fewer or smaller layers"
        )


def training_bytes(config: ExperimentConfig, dataset: Dataset) -> int:
    """An estimate of the memory training needs, from the layer shapes (nothing allocated):

    parameters x (theta, dtheta, the optimizer's moments and scratch, the copies a snapshot,
    a checkpoint and the best weights keep), the activations of one batch forward and back,
    and the data."""
    specs = config.model.layer_specs()
    layers = [spec.make() for spec in specs]
    n_out = 1 if output_kind(config, dataset.n_classes) == "sigmoid" else dataset.n_classes
    try:
        shapes = plan(layers, input_shape(config, dataset))
    except ValueError as exc:
        raise ConfigError(f"model.layers: {exc}") from None
    if shapes and len(shapes[-1]) != 1:
        raise ConfigError(
            f"model.layers: the last layer gives {shapes[-1]} per sample; the output layer needs "
            "flat input: end with flatten or global_avgpool"
        )
    width = shapes[-1][0] if shapes else dataset.n_features
    n_params = sum(math.prod(s) for layer in layers for s in layer.param_shapes().values())
    n_params += (width + 1) * n_out
    rule = config.train.optimizer
    moments = make_optimizer(rule.name, [np.zeros(1)], 1.0, **rule.hyper()).arrays_per_param()
    itemsize = np.dtype(config.model.dtype).itemsize
    n_train = len(dataset.y_train) + len(dataset.y_val)
    batch = n_train if config.train.batch_size == "full" else min(config.train.batch_size, n_train)
    activations = 3 * batch * (sum(layer.cache_per_sample() for layer in layers) + n_out)
    data = sum(a.nbytes for a in (dataset.X_train, dataset.X_val, dataset.X_test))
    return itemsize * (n_params * (6 + moments) + activations) + data


def physical_memory() -> int | None:
    """This machine's memory in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def score(
    net: Network,
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Accuracy, confusion matrix (rows true, columns predicted), per-class accuracy (recall,
    in class order; None for a class without samples) and the most confused pairs of classes
    (``metrics.confused_pairs``, by ``class_names``: default "0", "1", ...) of ``net`` on (X, y)."""
    with np.errstate(over="ignore", invalid="ignore"):  # huge weights still give a prediction
        predicted = net.predict(np.asarray(X, dtype=net.dtype))
    matrix = confusion_matrix(y, predicted, n_classes)
    return {
        "n": int(len(y)),
        "accuracy": float(np.mean(predicted == y)),
        "confusion_matrix": matrix.tolist(),
        "per_class_accuracy": per_class_accuracy(matrix),
        "confused_pairs": confused_pairs(matrix, class_names),
    }


def training_set(config: ExperimentConfig, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The samples training uses: train, or train + val when ``data.train_on: train+val``."""
    if config.data.train_on == "train+val":
        return (
            np.concatenate([dataset.X_train, dataset.X_val]),
            np.concatenate([dataset.y_train, dataset.y_val]),
        )
    return dataset.X_train, dataset.y_train


def validation_set(
    config: ExperimentConfig, dataset: Dataset
) -> tuple[np.ndarray, np.ndarray] | None:
    """What training scores every epoch: the val split, or None when it trains on it."""
    return None if config.data.train_on == "train+val" else dataset.split("val")


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
        "scikit-learn": sklearn.__version__,
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


@dataclass
class RunOutcome:
    """What ``run_experiment`` produced."""

    run_dir: Path
    status: str
    result: TrainResult
    metrics: dict[str, Any]


HISTORY_COLUMNS = [
    "epoch",
    "iteration",
    "cost",
    "train_accuracy",
    "val_cost",
    "val_accuracy",
    "lr",
    "seconds",
]


def _history_csv(history: list[EpochRecord]) -> str:
    """history.csv: one row per epoch; numbers as ``%.10g``, a missing (or NaN) value empty
    (what pandas' ``to_csv(float_format="%.10g")`` wrote, at a tenth of the cost)."""
    rows = [",".join(HISTORY_COLUMNS)]
    rows += [",".join(_csv_cell(getattr(r, c)) for c in HISTORY_COLUMNS) for r in history]
    return "\n".join(rows) + "\n"


def _csv_cell(value: float | int | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value) if isinstance(value, int) else f"{value:.10g}"


def check_compatible(config: ExperimentConfig, dataset: Dataset) -> None:
    """Refuse combinations that only the data can reveal (before any folder is created)."""
    kinds = [spec.type for spec in config.model.layer_specs()]
    if "batchnorm" in kinds and config.train.batch_size == 1:
        raise ConfigError(
            "model.layers: batchnorm needs mini-batches (train.batch_size >= 2): the variance "
            "of a batch of one sample is 0"
        )
    if config.train.early_stopping is not None:
        if len(dataset.y_val) == 0:
            raise ConfigError("train.early_stopping: needs a validation split (data.split[1] > 0)")
        if config.data.train_on == "train+val":
            raise ConfigError(
                "train.early_stopping: monitors the validation split, but data.train_on: "
                "train+val trains on it; use train_on: train"
            )


def _checked_network(
    config: ExperimentConfig, dataset: Dataset
) -> tuple[dict[str, np.random.Generator], Network]:
    """Refuse what only the data reveals (shapes, memory), then the run's random generators
    and its initial network."""
    check_compatible(config, dataset)
    check_memory(config, dataset)
    streams = rng_streams(config.seed)
    return streams, build_network(config, dataset, streams["init"], streams["dropout"])


def run_experiment(
    config: ExperimentConfig,
    runs_dir: Path,
    console: Console | None = None,
    config_path: Path | None = None,
    plots: bool = True,
) -> RunOutcome:
    """Train the spec and write its run folder; returns the folder, status and metrics.

    All validation (config, data) happens before the folder is created, so bad input leaves
    nothing behind. The process holds the run's lock (``runs.lock``) from just after the folder
    is created until it is done with it. Once run.json exists, it always ends in a final status:
    completed, diverged, interrupted (Ctrl-C or SIGTERM: the KeyboardInterrupt goes on after
    saving) or failed. ``plots=False`` skips the PNGs (learning curve, live curve, confusion
    matrix, augmentation examples): sweeps train many small sub-runs.
    """
    dataset = load_dataset(config.data, config.seed, config.model.dtype)
    streams, net = _checked_network(config, dataset)
    run_dir = create_run_dir(runs_dir, config.name or "experiment")
    lock = RunLock(run_dir)
    try:
        info = _new_run_info(config, config_path, net, dataset)
        _start_run_folder(run_dir, lock, config, info)
        return _train_in(run_dir, config, dataset, net, streams, info, None, console, plots=plots)
    finally:
        lock.release()


def lockstep_reason(config: ExperimentConfig) -> str | None:
    """Why runs of this spec cannot train in a lockstep stack, or None when they can."""
    for spec in config.model.layer_specs():
        if spec.type not in ("dense", *ACTIVATIONS):
            return f"its network has a {spec.type} layer"
    if config.data.augment is not None:
        return "it augments its images"
    return None


def run_in_lockstep(
    configs: Sequence[ExperimentConfig], runs_dir: Path, plots: bool = False
) -> list[RunOutcome | Exception]:
    """Train the specs as ``run_experiment`` would, one run folder each, in lockstep stacks
    (``training/lockstep.py``): the runs' weights, histories and files are those of their solo
    runs; run.json notes the engine. A spec that fails before training gives its exception in
    its place, and the others go on. Ctrl-C marks every unfinished run interrupted (with its
    last checkpoint) and goes on as KeyboardInterrupt."""
    members: list[RunWriter | Exception] = []
    writers: dict[int, RunWriter] = {}
    datasets: dict[str, Dataset] = {}  # the specs of one fold share their data
    trainers, locks = [], []
    try:
        for config in configs:
            try:
                writer, trainer, lock = _lockstep_member(config, runs_dir, plots, datasets)
            except Exception as exc:  # this spec's data or folder: the others go on
                members.append(exc)
                continue
            locks.append(lock)
            writers[id(trainer)] = writer
            trainers.append(trainer)
            members.append(writer)
        pending = dict(writers)

        def on_done(trainer: Trainer) -> None:
            pending[id(trainer)].trained()  # pending until its files are written
            del pending[id(trainer)]

        try:
            train_lockstep(trainers, on_done)
        except KeyboardInterrupt:
            for writer in pending.values():
                writer.interrupted()
            raise
        except Exception as exc:
            unwritten = []
            for writer in pending.values():  # every unfinished run says failed, if it can
                try:
                    writer.failed(exc)
                except RunWriteError as write_error:
                    unwritten.append(write_error)
            if unwritten:
                raise unwritten[0] from None
            raise
    finally:
        for lock in locks:
            lock.release()
    return [m if isinstance(m, Exception) else m.outcome() for m in members]


def _lockstep_member(
    config: ExperimentConfig, runs_dir: Path, plots: bool, datasets: dict[str, Dataset]
) -> tuple[RunWriter, Trainer, RunLock]:
    """A new run folder (locked, config.yaml and run.json written) and its Trainer, not run.
    ``datasets``: the data already loaded, by spec (loaded data is never modified)."""
    why = lockstep_reason(config)
    if why is not None:
        raise ConfigError(f"{config.name}: cannot train in lockstep: {why}")
    data_seed = config.seed if config.data.seed is None else config.data.seed
    key = f"{config.data.model_dump_json()} {data_seed} {config.model.dtype}"
    if key not in datasets:
        datasets[key] = load_dataset(config.data, config.seed, config.model.dtype)
    dataset = datasets[key]
    streams, net = _checked_network(config, dataset)
    run_dir = create_run_dir(runs_dir, config.name or "experiment")
    lock = RunLock(run_dir)
    info = _new_run_info(config, None, net, dataset)
    info["engine"] = "lockstep"
    _start_run_folder(run_dir, lock, config, info)
    writer = RunWriter(run_dir, config, dataset, net, info, plots)
    X_fit, y_fit = training_set(config, dataset)
    trainer = trainer_for(
        net,
        X_fit,
        y_fit,
        dataset.n_classes,
        config.train,
        streams["sampling"],
        validation=validation_set(config, dataset),
        hooks=Hooks(None, writer.save_checkpoint, config.train.checkpoint_every),
        result=writer.result,
    )
    return writer, trainer, lock


def _new_run_info(
    config: ExperimentConfig, config_path: Path | None, net: Network, dataset: Dataset
) -> dict[str, Any]:
    """The run.json of a run that starts now in this process (status running)."""
    return {
        "status": "running",
        "name": config.name,
        "config_file": str(config_path) if config_path else None,
        "started": datetime.now().astimezone().isoformat(timespec="seconds"),
        "pid": os.getpid(),  # for information: whether the run is alive is its lock's business
        "host": socket.gethostname(),
        "ended": None,
        "seconds": None,
        "stop": None,
        "network": network_record(config, net),
        "data": _data_record(dataset),
        "versions": _versions(),
    }


def _start_run_folder(
    run_dir: Path, lock: RunLock, config: ExperimentConfig, info: dict[str, Any]
) -> None:
    """Lock the new, empty ``run_dir`` and write its config.yaml and run.json. Nothing was
    trained yet, so when any of that fails (or Ctrl-C comes) the folder is removed again."""
    try:
        if not lock.acquire():  # nobody knows the new folder's name yet: cannot happen
            raise RunWriteError(f"{run_dir}: another process holds the lock of this new folder")
        config_yaml = yaml_bytes(config.to_dict())
        write_files(run_dir, [("config.yaml", config_yaml), ("run.json", run_info_bytes(info))])
    except BaseException as exc:
        lock.release()
        shutil.rmtree(run_dir, ignore_errors=True)
        if isinstance(exc, OSError):
            raise RunWriteError(f"{run_dir}: could not write the run folder: {exc}") from None
        raise


RESUMABLE = ("interrupted", "diverged", "failed")


def resume_experiment(
    run_dir: Path,
    overrides: list[str] | None = None,
    console: Console | None = None,
    plots: bool = True,
) -> RunOutcome:
    """Continue an interrupted, diverged or failed run from its last checkpoint, in place; or
    a "running" one that no process trains any more (killed hard: nobody holds its lock).

    The run's lock (``runs.lock``) is taken first and held until training ends, so a run that
    another process trains (or resumes) is refused: "this run is still training", exit 2.
    Without ``overrides`` the final weights equal those of a run that was never stopped (the
    checkpoint holds the weights, the optimizer state and both random generators' states).
    ``overrides`` (``train.lr=0.001``...) change the spec from there on, e.g. after divergence.
    """
    run_dir = Path(run_dir)
    record, _ = load_run_record(run_dir)  # a run folder? (no .lock is made in other folders)
    lock = RunLock(run_dir)
    try:
        if not lock.acquire():
            where = f" (process {record.pid} on {record.host})" if record.pid else ""
            raise RunFolderError(f"{run_dir}: this run is still training{where}")
    except OSError as exc:
        raise RunWriteError(f"{run_dir}: could not lock the run folder: {exc}") from None
    try:
        return _resume_locked(run_dir, list(overrides or []), console, plots)
    finally:
        lock.release()


def _resume_locked(
    run_dir: Path, overrides: list[str], console: Console | None, plots: bool = True
) -> RunOutcome:
    """``resume_experiment`` once the lock is held: run.json is read again (what it says can no
    longer change under us), checked, marked running, and training goes on."""
    raw, info = load_run_info(run_dir)
    _check_resumable(run_dir, info["status"], overrides)
    config = build_config(apply_overrides(raw, overrides), f"{run_dir}/config.yaml")
    dataset = load_dataset(config.data, config.seed, config.model.dtype)
    if dataset.fingerprint != info.get("data", {}).get("fingerprint"):
        raise RunFolderError(f"{run_dir}: the data differs from what the run was trained on")
    check_compatible(config, dataset)
    streams = rng_streams(config.seed)
    net = build_network(config, dataset, streams["init"], streams["dropout"])
    snapshot, restarted = _checkpoint_to_resume(run_dir, net)
    if restarted:
        console = console or Console(stderr=True)
        console.print(f"note: {run_dir}/checkpoint.npz: {restarted}")
    _mark_resumed(run_dir, info, config, overrides, snapshot, restarted)
    return _train_in(run_dir, config, dataset, net, streams, info, snapshot, console, plots)


def _check_resumable(run_dir: Path, status: str, overrides: list[str]) -> None:
    """RunFolderError unless a run of ``status`` can be resumed (this process holds its lock,
    so a "running" one was killed); ConfigError for a ``--set`` the checkpoint cannot honour."""
    if status not in (*RESUMABLE, "running"):
        raise RunFolderError(
            f"{run_dir}: only an interrupted, diverged or failed run can be resumed "
            f"(this one is {status})"
        )
    for item in overrides:
        key = item.partition("=")[0].strip()
        if not key.startswith("train.") or key.startswith("train.optimizer"):
            raise ConfigError(
                f"--set {item!r}: on --resume only train.* keys other than the optimizer can "
                "change (the checkpoint holds the network and the optimizer state)"
            )


def _checkpoint_to_resume(run_dir: Path, net: Network) -> tuple[Snapshot | None, str | None]:
    """(the checkpoint to go on from, None) or (None, why training starts again from the
    initial weights): there is no checkpoint (nothing was good: None, None), or its weights are
    diverged by this version's limits (``training.stopping``), which an older version, with
    laxer limits, could save. RunFolderError when it does not fit ``net``."""
    checkpoint = run_dir / "checkpoint.npz"
    if not checkpoint.is_file():
        return None, None
    snapshot = read_checkpoint(checkpoint)
    if [p.shape for p in snapshot.params] != [p.shape for p in net.params()]:
        raise RunFolderError(f"{checkpoint}: does not fit the network of {run_dir}/config.yaml")
    theta = np.concatenate([p.ravel() for p in snapshot.params]) if snapshot.params else net.theta
    why = divergence(snapshot.history[-1], theta) if snapshot.history else None
    if why is None:
        return snapshot, None
    return None, f"diverged at epoch {snapshot.epochs} ({why}): starting from the initial weights"


def _mark_resumed(
    run_dir: Path,
    info: dict[str, Any],
    config: ExperimentConfig,
    overrides: list[str],
    snapshot: Snapshot | None,
    restarted: str | None,
) -> None:
    """Add this resumption to run.json (status running again, this process) and write it, with
    config.yaml when ``overrides`` changed it."""
    entry: dict[str, Any] = {
        "at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "from_epoch": snapshot.epochs if snapshot else 0,
        "overrides": overrides,
    }
    if restarted:
        entry["restarted"] = restarted
    info.setdefault("resumed", []).append(entry)
    info.update(
        status="running",
        ended=None,
        stop=None,
        error=None,
        pid=os.getpid(),
        host=socket.gethostname(),
    )
    try:
        if overrides:
            write_yaml(run_dir / "config.yaml", config.to_dict())
        write_run_info(run_dir, info)
    except OSError as exc:
        raise RunWriteError(f"{run_dir}: could not write the run folder: {exc}") from None


class RunWriter:
    """The files of one run folder while it trains and when it ends: checkpoints, then its
    results (history, model, metrics, run.json completed or diverged), or the state it was
    interrupted in, or its failure. Every path through a run ends in exactly one of these."""

    def __init__(
        self,
        run_dir: Path,
        config: ExperimentConfig,
        dataset: Dataset,
        net: Network,
        info: dict[str, Any],
        plots: bool = True,
    ) -> None:
        self.run_dir, self.config, self.dataset, self.net = run_dir, config, dataset, net
        self.info, self.plots = info, plots
        self.started = datetime.now().astimezone()
        self.seconds_before = float(info.get("seconds") or 0.0)
        self.result = TrainResult()
        self.metrics: dict[str, Any] = {}
        self.history_written: str | None = None  # history.csv as last handed to ``write``
        self.last_checkpoint: list[tuple[str, bytes]] = []  # the final one, while it waits

    def finish(
        self, status: str, error: str | None = None, files: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        """run.json with its final ``status`` (and why training stopped), written last, after
        ``files`` (name, content) in one ``write_files``."""
        result, ended = self.result, datetime.now().astimezone()
        self.info.update(
            status=status,
            ended=ended.isoformat(timespec="seconds"),
            seconds=round(self.seconds_before + (ended - self.started).total_seconds(), 3),
            stop={
                "stopped_by": result.stopped_by or status,
                "reason": result.stop_reason or error or status,
                "epochs": result.epochs,
                "iterations": result.iterations,
                "train_seconds": round(result.seconds, 3),
            },
        )
        if error:
            self.info["error"] = error
        self.write([*files, ("run.json", run_info_bytes(self.info))])

    def write(self, files: Sequence[tuple[str, bytes]]) -> None:
        """One ``write_files``: the final checkpoint if it waits (``save_checkpoint``), then
        ``files``."""
        write_files(self.run_dir, [*self.last_checkpoint, *files])
        self.last_checkpoint = []

    def save_checkpoint(self, snap: Snapshot) -> None:
        """checkpoint.npz and the history.csv it goes with, together. The final one, handed
        over once training has stopped (``result.stopped_by`` is set), waits for what always
        follows (the results, the interrupted state or the failure) to go in its
        ``write_files``, before run.json: one fsync round less, the same order of renames."""
        history = _history_csv(snap.history)
        files = [("checkpoint.npz", checkpoint_bytes(snap)), ("history.csv", history.encode())]
        self.history_written = history
        if self.result.stopped_by:
            self.last_checkpoint = files
        else:
            self.write(files)

    def history_file(self) -> list[tuple[str, bytes]]:
        """[history.csv of the result], or [] when the last checkpoint wrote that already."""
        history = _history_csv(self.result.history)
        return [] if history == self.history_written else [("history.csv", history.encode())]

    def trained(self) -> None:
        """Training ended normally (completed or diverged): history, model, metrics (and the
        confusion matrix PNG), then run.json, in one ``write_files``."""
        metrics = score_splits(self.net, self.dataset)
        files = [
            *self.history_file(),
            ("model.npz", npz_bytes(self.net.state())),
            ("metrics.json", json_bytes(metrics)),
        ]
        if self.plots:
            png = _confusion_png(self.config, self.dataset, metrics)
            files.append(("confusion_matrix.png", png))
        self.metrics.update(metrics)
        status = "diverged" if self.result.stopped_by == "diverged" else "completed"
        self.finish(status, files=files)

    def interrupted(self) -> None:
        """Ctrl-C or SIGTERM (the caller re-raises): the last finished epoch, marked as such."""
        with interrupt_guard(self.run_dir) as marked:  # a 2nd Ctrl-C exits; files stay whole
            self.finish("interrupted", "interrupted (Ctrl-C or SIGTERM)")
            marked()
            write_files(self.run_dir, self.history_file())
            write_npz(self.run_dir / "model.npz", self.net.state())

    def failed(self, exc: Exception) -> None:
        """An error: error.log and run.json failed; RunWriteError when the error was writing."""
        with contextlib.suppress(OSError):
            self.write([])  # the final checkpoint if it waits; run.json below even if it failed
        self.last_checkpoint = []
        with contextlib.suppress(OSError):
            write_text(self.run_dir / "error.log", traceback.format_exc())
        with contextlib.suppress(OSError):
            self.finish("failed", f"{type(exc).__name__}: {exc}")
        if isinstance(exc, OSError):
            raise RunWriteError(f"{self.run_dir}: could not write the run folder: {exc}") from None

    def outcome(self) -> RunOutcome:
        return RunOutcome(self.run_dir, self.info["status"], self.result, self.metrics)


def _train_in(
    run_dir: Path,
    config: ExperimentConfig,
    dataset: Dataset,
    net: Network,
    streams: dict[str, np.random.Generator],
    info: dict[str, Any],
    snapshot: Snapshot | None,
    console: Console | None,
    plots: bool = True,
) -> RunOutcome:
    """Train (from ``snapshot`` if given) and finish the run folder, whatever happens."""
    console = console or Console(stderr=True)
    writer = RunWriter(run_dir, config, dataset, net, info, plots)
    try:
        _fit(
            run_dir,
            config,
            dataset,
            net,
            streams,
            snapshot,
            writer.result,
            writer.save_checkpoint,
            console,
            plots,
        )
        writer.trained()
    except KeyboardInterrupt:
        writer.interrupted()
        raise
    except Exception as exc:
        writer.failed(exc)
        raise
    return writer.outcome()


def _fit(
    run_dir: Path,
    config: ExperimentConfig,
    dataset: Dataset,
    net: Network,
    streams: dict[str, np.random.Generator],
    snapshot: Snapshot | None,
    result: TrainResult,
    save_checkpoint: Callable[[Snapshot], None],
    console: Console,
    plots: bool = True,
) -> None:
    """Train with the live display and the live learning curve (fills ``result``)."""
    if snapshot is None:
        if not console.quiet:  # a quiet console shows nothing: the table is not even rendered
            console.print(summary_table(net, config.name or ""), highlight=False)
        if plots:
            write_augmentation_examples(run_dir, config, dataset)
    X_fit, y_fit = training_set(config, dataset)
    curve = LiveLearningCurve(run_dir / "learning_curve.png", config.name or "")
    curve.history.extend(snapshot.history if snapshot else [])
    with TrainingProgress(console, config.train, len(y_fit), config.name or "") as progress:

        def on_epoch(record: EpochRecord) -> None:
            progress(record)
            if plots:
                curve.update(record)

        train(
            net,
            X_fit,
            y_fit,
            dataset.n_classes,
            config.train,
            streams["sampling"],
            validation=validation_set(config, dataset),
            hooks=Hooks(on_epoch, save_checkpoint, config.train.checkpoint_every),
            resume_from=snapshot,
            result=result,
            augment=augmenter(config, dataset, streams["augment"]),
        )
    if plots:
        curve.finish(result.history, f"{config.name}: stopped by {result.stopped_by}")


def score_splits(net: Network, dataset: Dataset) -> dict[str, Any]:
    """metrics.json: ``score`` of every non-empty split, by split name."""
    metrics = {}
    for split in SPLITS:
        X, y = dataset.split(split)
        if len(y):
            metrics[split] = score(net, X, y, dataset.n_classes, dataset.class_names)
    return metrics


def _confusion_png(config: ExperimentConfig, dataset: Dataset, metrics: dict[str, Any]) -> bytes:
    """confusion_matrix.png: of the test split, or of the first split scored without one."""
    shown = "test" if "test" in metrics else next(iter(metrics))
    return confusion_matrix_png(
        np.array(metrics[shown]["confusion_matrix"]),
        dataset.class_names,
        title=f"{config.name}: {shown} accuracy {metrics[shown]['accuracy']:.3f}",
    )


@contextlib.contextmanager
def interrupt_guard(run_dir: Path) -> Iterator[Callable[[], None]]:
    """While saving after a first Ctrl-C: SIGINT is ignored until run.json says 'interrupted'
    (the caller then calls the yielded ``marked()``); from there a second Ctrl-C ends the process
    at once with exit code 130, after removing any half-written temporary file. Atomic writes
    keep every file whole either way."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return

    def exit_now(signum: int, frame: object) -> None:
        for tmp in run_dir.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()
        os._exit(130)

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, signal.SIG_IGN)
    try:
        yield lambda: [signal.signal(sig, exit_now) for sig in previous]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def load_run_model(
    run_dir: Path, statuses: tuple[str, ...] = ("completed", "diverged")
) -> tuple[ExperimentConfig, Dataset, Network, dict[str, Any]]:
    """Rebuild a finished run: its config, the same data (same seed), its trained network."""
    raw, info = load_finished_run(run_dir, statuses)
    config = build_config(raw, f"{run_dir}/config.yaml")
    dataset = load_dataset(config.data, config.seed, config.model.dtype)
    net = build_network(config, dataset, np.random.default_rng(0))
    try:
        net.load_state(load_model_arrays(run_dir))
    except (KeyError, ValueError) as exc:
        raise RunFolderError(f"{run_dir}/model.npz does not fit the run's config: {exc}") from None
    return config, dataset, net, info


def evaluate_run(run_dir: Path, split: str = "test") -> dict[str, Any]:
    """Score a finished run on one split of its data; writes and returns ``evaluation.json``."""
    config, dataset, net, info = load_run_model(run_dir)
    X, y = dataset.split(split)
    if len(y) == 0:
        raise RunFolderError(f"{run_dir}: the {split} split of this run's data is empty")
    recorded = info.get("data", {}).get("fingerprint")
    evaluation = {
        "run": str(run_dir),
        "split": split,
        **score(net, X, y, dataset.n_classes, dataset.class_names),
        "class_names": list(dataset.class_names),
        "data_fingerprint": dataset.fingerprint,
        "data_matches_training": recorded == dataset.fingerprint,
        "evaluated": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    write_json(Path(run_dir) / "evaluation.json", evaluation)
    return evaluation


def gradcheck_experiment(
    config: ExperimentConfig, samples: int = 8, max_entries: int = 200
) -> tuple[list[GradCheckRow], int]:
    """Backprop vs finite differences for the network ``config`` describes, in float64, in
    training mode (dropout with a fixed mask, batchnorm on the batch's statistics; L1/L2
    included), on ``samples`` random training samples.

    The weights are the initial ones plus a little noise (std 0.01): with biases initialised
    to 0, inputs that are 0 (image borders) would put ReLU exactly on its kink and max-pool on
    ties, where the function has no derivative to check."""
    model = config.model.model_copy(update={"dtype": "float64"})
    config = config.model_copy(update={"model": model})
    dataset = load_dataset(config.data, config.seed, config.model.dtype)
    rng = np.random.default_rng([config.seed, 5])
    net = build_network(config, dataset)
    net.theta += rng.normal(0.0, 0.01, size=net.theta.size)
    n = len(dataset.y_train)
    pick = rng.choice(n, min(samples, n), replace=False)
    X = np.asarray(dataset.X_train[pick], dtype=np.float64)
    Y = net.loss.targets(dataset.y_train[pick], dataset.n_classes, np.float64)
    rows = check_gradients(
        net, X, Y, config.train.l1, config.train.l2, max_entries=max_entries, rng=rng, training=True
    )
    return rows, len(pick)
