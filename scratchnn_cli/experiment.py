"""One experiment from spec to run folder: data -> network -> training -> metrics -> files.

The flow only: ``assembly.py`` makes a run's pieces from its spec and data (and refuses what only
the data reveals), ``training/`` trains, ``runs/writer.py`` writes the folder, ``metrics.py``
scores. Here they are put together: a run (``run_experiment``), resumed
(``resume_experiment``), scored again (``evaluate_run``), or gradient-checked
(``gradcheck_experiment``). The CLI only parses arguments and calls these.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from scratchnn_cli.assembly import (
    augmenter,
    check_compatible,
    check_memory,
    checked_network,
    choose_run_engine,
    network_for_dataset,
    training_set,
    validation_set,
)
from scratchnn_cli.config import ExperimentConfig, apply_overrides, validate_config
from scratchnn_cli.data import Dataset, load_dataset
from scratchnn_cli.data.augment import augmentation_examples
from scratchnn_cli.errors import (
    ConfigError,
    Interrupted,
    RunFolderError,
    RunWriteError,
    one_line,
)
from scratchnn_cli.metrics import score, score_splits
from scratchnn_cli.nn.engines import numba_missing
from scratchnn_cli.nn.gradcheck import GradCheckRow, check_gradients
from scratchnn_cli.nn.network import Network
from scratchnn_cli.records import EpochRecord, RunOutcome, Scores, Snapshot, TrainResult
from scratchnn_cli.report.plots import (
    LiveLearningCurve,
    confusion_matrix_png,
    gradient_flow_png,
    plot_augmentation,
)
from scratchnn_cli.report.progress import TrainingProgress
from scratchnn_cli.report.tables import summary_table
from scratchnn_cli.report.text import printable
from scratchnn_cli.run_info import FinishedRun, new_run_info, now
from scratchnn_cli.runs import (
    FINISHED,
    RESUMABLE,
    ResumeRecord,
    RunLock,
    RunRecord,
    create_run_dir,
    load_finished_run,
    load_model_arrays,
    load_run_info,
    load_run_record,
    read_checkpoint,
    write_json,
    write_run_info,
    write_yaml,
)
from scratchnn_cli.runs.diagnostics import diagnostics_csv, read_diagnostics
from scratchnn_cli.runs.history import read_history
from scratchnn_cli.runs.writer import RunWriter, start_run_folder
from scratchnn_cli.streams import Stream, TrainingStreams, stream, training_streams
from scratchnn_cli.training.diagnostics import Diagnostics
from scratchnn_cli.training.hooks import Hooks
from scratchnn_cli.training.loop import train
from scratchnn_cli.training.stopping import divergence


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
    streams, net = checked_network(config, dataset)
    choice = choose_run_engine(config, dataset, net)
    if choice.note:  # numba missing: auto trains with numpy, and says so
        _noter(console or Console(stderr=True))(choice.note)
    run_dir = create_run_dir(runs_dir, config.name or "experiment")
    lock = RunLock(run_dir)
    try:
        record = new_run_info(config, config_path, net, dataset, choice.engine)
        start_run_folder(run_dir, lock, config.to_dict(), record)
        run = Training(run_dir, record, config, dataset, net, streams, choice.engine, plots)
        return _train_in(run, None, console)
    finally:
        lock.release()


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
    raw, record = load_run_info(run_dir)
    _check_resumable(run_dir, record.status, overrides)
    config = validate_config(apply_overrides(raw, overrides), f"{run_dir}/config.yaml")
    dataset = load_dataset(config.data, config.seed, config.model.dtype)
    _check_same_data(run_dir, record, dataset)
    check_compatible(config, dataset)
    streams = training_streams(config.seed)
    net = network_for_dataset(config, dataset, streams.init, streams.dropout)
    engine = resumed_engine(run_dir, record)
    snapshot, restarted = _checkpoint_to_resume(run_dir, net)
    if restarted:
        console = console or Console(stderr=True)
        _noter(console)(f"{run_dir}/checkpoint.npz: {restarted}")
    _mark_resumed(run_dir, record, config, overrides, snapshot, restarted)
    run = Training(run_dir, record, config, dataset, net, streams, engine, plots)
    return _train_in(run, snapshot, console)


def _check_same_data(run_dir: Path, record: RunRecord, dataset: Dataset) -> None:
    """RunFolderError unless ``dataset``, rebuilt from the run's spec, is the data the run was
    trained on (the fingerprint run.json holds)."""
    if dataset.fingerprint != record.data.get("fingerprint"):
        raise RunFolderError(
            f"{run_dir}: the data differs from what the run was trained on (its fingerprint "
            "changed), so its splits are not the ones it was trained and tested on"
        )


def resumed_engine(run_dir: Path, record: RunRecord) -> str:
    """The engine a run started with goes on training it: run.json's ``engine``; numpy for a
    folder written before there was a choice (or by the retired lockstep engine of 0.2.0's
    development, whose stack stepped with the NumPy layers). ConfigError when that is the
    compiled engine and numba is missing."""
    engine = record.engine
    if engine != "compiled":
        return "numpy"
    missing = numba_missing()
    if missing is not None:
        raise ConfigError(f"{run_dir}: trained by the compiled engine, but {missing}")
    return engine


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
        trained = _trained_epochs(run_dir)
        if trained:  # it was deleted: going on from scratch would lose them
            raise RunFolderError(
                f"{checkpoint} is missing, though the run trained {trained} "
                f"epoch(s): it cannot go on from where it stopped (train it again with: "
                f"scratchnn train {run_dir / 'config.yaml'})"
            )
        return None, None
    snapshot = read_checkpoint(checkpoint)
    if [p.shape for p in snapshot.params] != [p.shape for p in net.params()]:
        raise RunFolderError(f"{checkpoint}: does not fit the network of {run_dir}/config.yaml")
    theta = np.concatenate([p.ravel() for p in snapshot.params]) if snapshot.params else net.theta
    why = divergence(snapshot.history[-1], theta) if snapshot.history else None
    if why is None:
        return snapshot, None
    return None, f"diverged at epoch {snapshot.epochs} ({why}): starting from the initial weights"


def _trained_epochs(run_dir: Path) -> int:
    """How many epochs history.csv records (0 when it is missing or unreadable): each came
    with a checkpoint."""
    path = run_dir / "history.csv"
    try:
        return len(read_history(path)) if path.is_file() else 0
    except RunFolderError:
        return 0


def _mark_resumed(
    run_dir: Path,
    record: RunRecord,
    config: ExperimentConfig,
    overrides: list[str],
    snapshot: Snapshot | None,
    restarted: str | None,
) -> None:
    """Add this resumption to run.json (status running again, this process) and write it, with
    config.yaml when ``overrides`` changed it."""
    from_epoch = snapshot.epochs if snapshot else 0
    why = {"restarted": restarted} if restarted else {}
    record.resumed.append(ResumeRecord(at=now(), from_epoch=from_epoch, overrides=overrides, **why))
    record.status, record.ended, record.stop, record.error = "running", None, None, None
    record.pid, record.host = os.getpid(), socket.gethostname()
    try:
        if overrides:
            write_yaml(run_dir / "config.yaml", config.to_dict())
        write_run_info(run_dir, record)
    except OSError as exc:
        raise RunWriteError(f"{run_dir}: could not write the run folder: {exc}") from None


@dataclass
class Training:
    """A run being trained and written: its folder and run.json, its spec, data, network and
    random streams, the engine that runs its epochs, and whether it draws its PNGs."""

    run_dir: Path
    record: RunRecord
    config: ExperimentConfig
    dataset: Dataset
    net: Network
    streams: TrainingStreams
    engine: str = "numpy"
    plots: bool = True
    diagnostics: Diagnostics | None = None  # train.diagnostics: the probe and its rows

    def diagnostics_file(self) -> list[tuple[str, bytes]]:
        """[("diagnostics.csv", its bytes)] when diagnostics were taken, else []."""
        if self.diagnostics is None:
            return []
        return [("diagnostics.csv", diagnostics_csv(self.diagnostics.rows).encode())]


def _train_in(run: Training, snapshot: Snapshot | None, console: Console | None) -> RunOutcome:
    """Train (from ``snapshot`` if given) and finish the run folder, whatever happens."""
    console = console or Console(stderr=True)
    writer = RunWriter(run.run_dir, run.record)
    net, dataset = run.net, run.dataset
    try:
        _fit(run, snapshot, writer.result, writer.save_checkpoint, console)
        metrics = score_splits(net, dataset)
        drawn = [_confusion_picture(run.config, dataset, metrics, console)] if run.plots else []
        drawn += [_gradient_flow_picture(run, console)] if run.plots else []
        extra = [p for p in drawn if p is not None] + run.diagnostics_file()
        writer.trained(net.state(), metrics, extra)
    except KeyboardInterrupt:
        writer.interrupted(net.state(), run.diagnostics_file())
        where = run.run_dir
        raise Interrupted(
            f"interrupted: {where} is saved; go on with: scratchnn train --resume {where}"
        ) from None
    except Exception as exc:
        writer.failed(exc)
        raise
    return writer.outcome()


def _noter(console: Console) -> Callable[[str], None]:
    """A function printing ``note: <text>`` on ``console`` (literally)."""
    return lambda text: console.print(f"note: {printable(text)}", markup=False, highlight=False)


def _optional_png(console: Console, name: str, draw: Callable[[], None]) -> bool:
    """Run ``draw`` (it writes one PNG): a picture that cannot be drawn (a broken matplotlib, a
    font, a glitch) is a note, never the end of the run or of its results. False if it failed."""
    try:
        draw()
    except Exception as exc:
        _note_not_drawn(console, name, exc)
        return False
    return True


def png_or_note(console: Console, name: str, draw: Callable[[], bytes]) -> bytes | None:
    """The PNG bytes ``draw`` makes; None, and ``note: NAME not drawn (why)`` on ``console``,
    when it cannot draw them: a picture lost, the rest kept."""
    try:
        return draw()
    except Exception as exc:
        _note_not_drawn(console, name, exc)
        return None


def _note_not_drawn(console: Console, name: str, exc: Exception) -> None:
    """``note: NAME not drawn (why)`` on ``console``: a picture lost, the rest kept."""
    _noter(console)(f"{name} not drawn ({type(exc).__name__}: {one_line(exc)})")


def _confusion_picture(
    config: ExperimentConfig, dataset: Dataset, metrics: dict[str, Scores], console: Console
) -> tuple[str, bytes] | None:
    """("confusion_matrix.png", its bytes): of the test split, or of the first split scored
    without one; None (and a note) when it cannot be drawn."""
    shown = "test" if "test" in metrics else next(iter(metrics))
    title = f"{config.name}: {shown} accuracy {metrics[shown].accuracy:.3f}"
    matrix = np.array(metrics[shown].confusion_matrix)
    name = "confusion_matrix.png"
    png = png_or_note(
        console, name, lambda: confusion_matrix_png(matrix, dataset.class_names, title)
    )
    return None if png is None else (name, png)


def _start_diagnostics(
    run: Training, X: np.ndarray, y: np.ndarray, snapshot: Snapshot | None
) -> Diagnostics:
    """The probe of the run's training samples, its rows so far (a resumed run's, up to its
    checkpoint), and the first probe: the initial weights of a new run."""
    net = run.net
    diagnostics = Diagnostics(net, X, y, run.dataset.n_classes)
    earlier = run.run_dir / "diagnostics.csv"
    if snapshot is None:
        diagnostics.take(net, 0, run.config.train.lr)
    elif earlier.is_file():
        with contextlib.suppress(RunFolderError):  # unreadable: the new rows alone
            rows = read_diagnostics(earlier)
            diagnostics.rows = [r for r in rows if r.epoch <= snapshot.epochs]
    return diagnostics


def _gradient_flow_picture(run: Training, console: Console) -> tuple[str, bytes] | None:
    """("gradient_flow.png", its bytes): each weight layer's gradient norm and update ratio per
    probe (diagnostics.csv's rows); None without diagnostics, or (and a note) when it cannot be
    drawn."""
    if run.diagnostics is None or not run.diagnostics.rows:
        return None
    title, rows = f"{run.config.name}: gradient flow", run.diagnostics.rows
    png = png_or_note(console, "gradient_flow.png", lambda: gradient_flow_png(rows, title))
    return None if png is None else ("gradient_flow.png", png)


def write_augmentation_examples(run_dir: Path, config: ExperimentConfig, dataset: Dataset) -> None:
    """``augmentation.png``: training images beside augmented versions (its own stream, so the
    picture never changes what training sees)."""
    shown = augmenter(config, dataset, stream(config.seed, Stream.AUGMENT_EXAMPLES))
    if shown is None:
        return
    originals, augmented = augmentation_examples(dataset.X_train[:8], shown)
    plot_augmentation(
        originals, augmented, run_dir / "augmentation.png", f"{config.name}: data.augment"
    )


def _fit(
    run: Training,
    snapshot: Snapshot | None,
    result: TrainResult,
    save_checkpoint: Callable[[Snapshot], None],
    console: Console,
) -> None:
    """Train with the live display and the live learning curve (fills ``result``); the run's
    engine (numpy or compiled) runs the epochs."""
    run_dir, config, dataset, net, plots = run.run_dir, run.config, run.dataset, run.net, run.plots
    if snapshot is None:
        if not console.quiet:  # a quiet console shows nothing: the table is not even rendered
            console.print(summary_table(net, config.name or ""), highlight=False)
        if plots:
            _optional_png(
                console,
                "augmentation.png",
                lambda: write_augmentation_examples(run_dir, config, dataset),
            )
    X_fit, y_fit = training_set(config, dataset)
    if config.train.diagnostics:
        run.diagnostics = _start_diagnostics(run, X_fit, y_fit, snapshot)
    curve = LiveLearningCurve(run_dir / "learning_curve.png", config.name or "")
    curve.history.extend(snapshot.history if snapshot else [])
    with TrainingProgress(console, config.train, len(y_fit), config.name or "") as progress:
        live = [plots]  # the live curve stops at its first failure (one note)

        def on_epoch(record: EpochRecord) -> None:
            progress(record)
            if run.diagnostics is not None:
                run.diagnostics.after_epoch(net, record)
            if live[0]:
                draw = functools.partial(curve.update, record)
                live[0] = _optional_png(console, "learning_curve.png", draw)

        train(
            net,
            X_fit,
            y_fit,
            dataset.n_classes,
            config.train,
            run.streams.sampling,
            validation=validation_set(config, dataset),
            hooks=Hooks(on_epoch, save_checkpoint, config.train.checkpoint_every),
            resume_from=snapshot,
            result=result,
            augment=augmenter(config, dataset, run.streams.augment),
            engine=run.engine,
        )
    if run.diagnostics is not None:
        run.diagnostics.finish(net, result.history[-1] if result.history else None)
    if live[0]:
        title = f"{config.name}: stopped by {result.stopped_by}"
        _optional_png(console, "learning_curve.png", lambda: curve.finish(result.history, title))


def load_run_model(run_dir: Path, statuses: tuple[str, ...] = FINISHED) -> FinishedRun:
    """Rebuild a finished run (RunFolderError, one line, when its files do not allow it)."""
    raw, record = load_finished_run(run_dir, statuses)
    config = validate_config(raw, f"{run_dir}/config.yaml")
    dataset = load_dataset(config.data, config.seed, config.model.dtype)
    net = network_for_dataset(config, dataset, np.random.default_rng(0))
    arrays = load_model_arrays(run_dir)
    for name, array in arrays.items():  # NaN weights would score as one class, silently
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise RunFolderError(
                f"{run_dir}/model.npz: {name} holds NaN or infinite values (the weights "
                "diverged): there is no model to score"
            )
    try:
        net.load_state(arrays)
    except (KeyError, ValueError) as exc:
        raise RunFolderError(f"{run_dir}/model.npz does not fit the run's config: {exc}") from None
    return FinishedRun(Path(run_dir), record, config, dataset, net)


@dataclass
class Evaluation:
    """A finished run scored again on one of its splits (``evaluation-SPLIT.json``):
    ``scores`` as ``metrics.score`` gives them; ``held_out`` False for a split the model
    trained on."""

    run: str
    split: str
    held_out: bool
    scores: Scores
    class_names: list[str]
    data_fingerprint: str
    evaluated: str

    def to_json(self) -> dict[str, Any]:
        """The file's mapping: the scores at the top level, beside the rest."""
        head = {"run": self.run, "split": self.split, "held_out": self.held_out}
        tail = {
            "class_names": self.class_names,
            "data_fingerprint": self.data_fingerprint,
            "evaluated": self.evaluated,
        }
        return {**head, **self.scores.to_json(), **tail}


def evaluate_run(run_dir: Path, split: str = "test") -> Evaluation:
    """Score a finished run on one split of its data (nothing written: ``save_evaluation``).

    Refused, as ``--resume`` refuses it, when the data rebuilt from the run's spec is not what
    it trained on (its fingerprint differs): the split would be another split. ``held_out``
    says whether the model never trained on the split (train+val runs trained on val)."""
    run = load_run_model(run_dir)
    config, dataset, net = run.config, run.dataset, run.net
    _check_same_data(run_dir, run.record, dataset)
    X, y = dataset.split(split)
    if len(y) == 0:
        raise RunFolderError(f"{run_dir}: the {split} split of this run's data is empty")
    trained_on = ["train", "val"] if config.data.train_on == "train+val" else ["train"]
    return Evaluation(
        run=str(run_dir),
        split=split,
        held_out=split not in trained_on,
        scores=score(net, X, y, dataset.n_classes, dataset.class_names),
        class_names=list(dataset.class_names),
        data_fingerprint=dataset.fingerprint,
        evaluated=now(),
    )


def evaluation_path(run_dir: Path, split: str) -> Path:
    """Where ``scratchnn evaluate`` keeps a split's scores: one file per split."""
    return Path(run_dir) / f"evaluation-{split}.json"


def save_evaluation(run_dir: Path, evaluation: Evaluation) -> Path:
    """Write ``evaluation`` to its split's file (RunWriteError, one line, when it cannot)."""
    path = evaluation_path(run_dir, evaluation.split)
    try:
        write_json(path, evaluation.to_json())
    except OSError as exc:
        raise RunWriteError(f"{path}: could not write ({one_line(exc)})") from None
    return path


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
    check_memory(config, dataset)  # a network too big for memory: one line, as train says
    rng = stream(config.seed, Stream.GRADCHECK)
    net = network_for_dataset(config, dataset)
    net.theta += rng.normal(0.0, 0.01, size=net.theta.size)
    n = len(dataset.y_train)
    pick = rng.choice(n, min(samples, n), replace=False)
    X = np.asarray(dataset.X_train[pick], dtype=np.float64)
    Y = net.loss.targets(dataset.y_train[pick], dataset.n_classes, np.float64)
    rows = check_gradients(
        net, X, Y, config.train.l1, config.train.l2, max_entries=max_entries, rng=rng, training=True
    )
    return rows, len(pick)
