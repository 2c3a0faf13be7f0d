"""One self-contained HTML report of a finished run: ``run_dir/report.html``.

The report gathers what a run folder holds (run.json, config.yaml, history.csv, metrics.json,
model.npz, diagnostics.csv) into a single page a person can open in any browser or attach to an
e-mail: every image is embedded as a base64 ``data:image/png`` URI, the CSS is inline, there is
no JavaScript and nothing is fetched from anywhere. Figures are drawn with matplotlib (Agg)
straight into PNG bytes: the learning curve, confusion matrix and gradient flow by plots.py, the
decision boundary and the image tiles here. The only file written into the run folder is
``report.html`` itself (atomically).

The page is rendered by the Jinja2 templates in ``templates/`` (``report.html.j2``, its macros
and ``report.css``) with autoescaping on: this module only turns the run into plain values
(strings, numbers, PNG bytes) and every value from the run is escaped by the template engine.

The "Diagnostics" section shows the gradient flow drawn from diagnostics.csv (plots.py) and the
findings of ``scratchnn_cli.diagnose`` (the rules of ``scratchnn diagnose``), read from what the
report loaded; a run without diagnostics.csv gets the findings its history allows, and says
what is missing.

The network is only ever asked for ``predict`` / ``predict_proba``; no maths happens here:
per-class accuracy and the most confused pairs come from ``scratchnn_cli.metrics``, computed
from metrics.json's confusion matrices (so a 0.1.0 run folder, whose metrics.json lacks those
keys, gets the same sections), and the misclassified images are shown with ``data.scale``
undone (``Scaling.inverse``).
"""

from __future__ import annotations

import base64
import functools
import io
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import jinja2
import numpy as np

from scratchnn_cli import __version__
from scratchnn_cli.assembly import training_set
from scratchnn_cli.config import ExperimentConfig
from scratchnn_cli.data import Dataset
from scratchnn_cli.diagnose import Evidence, Finding, diagnose, missing_evidence
from scratchnn_cli.errors import ConfigError, RunFolderError, RunWriteError, one_line
from scratchnn_cli.metrics import (
    SPLITS,
    TOP_PAIRS,
    as_confusion_matrix,
    confused_pairs,
    pair_confusion,
    per_class_accuracy,
)
from scratchnn_cli.nn.layers import ACTIVATIONS
from scratchnn_cli.nn.network import Network
from scratchnn_cli.records import DiagnosticsRow, EpochRecord
from scratchnn_cli.report.plots import (
    confusion_matrix_png,
    figure_png,
    gradient_flow_png,
    learning_curve_png,
    literal,
    pyplot,
)
from scratchnn_cli.runs import RunRecord, read_json, write_text
from scratchnn_cli.runs.diagnostics import read_diagnostics
from scratchnn_cli.runs.history import read_history
from scratchnn_cli.yaml_limits import read_spec_text

if TYPE_CHECKING:
    import matplotlib.pyplot as plt

    from scratchnn_cli.run_info import FinishedRun

REPORT_NAME = "report.html"
#: The page template, in the package's ``report/templates`` folder.
TEMPLATE = "report.html.j2"
#: Statuses a report can be made of: the run ended and left a model and metrics behind.
#: At most this many misclassified test images are shown.
MAX_MISCLASSIFIED = 24
#: Points per axis of the decision-boundary grid.
GRID_STEPS = 300
#: A class whose recall is below this is highlighted in the per-class table.
LOW_RECALL = 0.8

# Class colours: blue / red for two classes (matching the RdBu probability map), else tab10/20.
_TWO_CLASS_COLOURS = ("#2166ac", "#b2182b")


# --------------------------------------------------------------------------- public entry point


def write_html_report(finished: FinishedRun) -> Path:
    """Write ``report.html`` into the folder of a finished run (``experiment.load_run_model``
    rebuilt it); return its path. RunFolderError (one line) when its files are unreadable,
    RunWriteError when the page cannot be written."""
    run_dir = finished.run_dir
    run = _load_run(finished)
    page = template_environment().get_template(TEMPLATE).render(_page(run))
    path = run_dir / REPORT_NAME
    try:
        write_text(path, page)
    except OSError as exc:  # a read-only run folder: one line, not an internal error
        raise RunWriteError(f"{path}: could not write ({one_line(exc)})") from None
    return path


# --------------------------------------------------------------------------- loading


@dataclass
class _Run:
    """Everything the report shows, loaded from one run folder."""

    run_dir: Path
    info: RunRecord
    config_text: str
    config: ExperimentConfig
    dataset: Dataset
    net: Network
    metrics: dict[str, Any]
    history: list[EpochRecord] | None
    diagnostics: list[DiagnosticsRow] | None  # None: no diagnostics.csv, or an unreadable one
    diagnostics_error: str = ""  # why diagnostics.csv could not be read ("" if it was)


def _load_run(finished: FinishedRun) -> _Run:
    run_dir, config, dataset, net = (
        finished.run_dir,
        finished.config,
        finished.dataset,
        finished.net,
    )
    try:
        config_text = read_spec_text(run_dir / "config.yaml")  # bounded, as the spec was read
    except ConfigError as exc:
        raise RunFolderError(str(exc)) from None
    try:
        metrics = read_json(run_dir / "metrics.json")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RunFolderError(f"{run_dir}: unreadable run files ({one_line(exc)})") from None

    diagnostics, diagnostics_error = _read_diagnostics(run_dir / "diagnostics.csv")
    return _Run(
        run_dir=run_dir,
        info=finished.record,
        config_text=config_text,
        config=config,
        dataset=dataset,
        net=net,
        metrics=metrics,
        history=_read_history(run_dir / "history.csv"),
        diagnostics=diagnostics,
        diagnostics_error=diagnostics_error,
    )


def _read_history(path: Path) -> list[EpochRecord] | None:
    """history.csv's records, or None when the file is absent or unreadable."""
    try:
        return read_history(path)
    except RunFolderError:
        return None


def _read_diagnostics(path: Path) -> tuple[list[DiagnosticsRow] | None, str]:
    """diagnostics.csv's rows (None when the file is absent or unreadable), and why it could
    not be read ("" when it was, or is absent)."""
    if not path.is_file():
        return None, ""
    try:
        return read_diagnostics(path), ""
    except RunFolderError as exc:
        return None, str(exc)


def _run_name(run: _Run) -> str:
    return str(run.info.name or run.config.name or run.run_dir.name)


def _fit_label(run: _Run) -> str:
    """What the network was fitted on: ``train`` or ``train+val``."""
    return "train+val" if run.config.data.train_on == "train+val" else "train"


def _splits_present(run: _Run) -> list[str]:
    return [s for s in SPLITS if isinstance(run.metrics.get(s), dict)]


def _shown_split(run: _Run) -> str | None:
    """The split the headline accuracy and the confusion matrix figure are of: test if present."""
    present = _splits_present(run)
    return "test" if "test" in present else (present[0] if present else None)


def _number(value: Any) -> float | None:
    """``value`` if it is an int or float, else None."""
    return value if isinstance(value, int | float) else None


# --------------------------------------------------------------------------- figures


def _class_colours(k: int) -> list[Any]:
    if k == 2:
        return list(_TWO_CLASS_COLOURS)
    cmap = pyplot().get_cmap("tab10" if k <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(k)]


def _predict(net: Network, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(predicted labels, (m, k) class probabilities) of ``net`` on X, without float warnings
    (a diverged run's weights may overflow)."""
    X = np.asarray(X, dtype=net.dtype)
    with np.errstate(all="ignore"):
        labels = net.predict(X)
        proba = np.asarray(net.predict_proba(X), dtype=np.float64)
    if proba.ndim == 2 and proba.shape[1] == 1:  # sigmoid: P(y = 1) only
        proba = np.hstack([1.0 - proba, proba])
    return np.asarray(labels), proba


@dataclass(frozen=True)
class _Grid:
    """The decision-boundary grid: axis ticks ``xs``, ``ys`` and their meshgrid ``gx``, ``gy``."""

    xs: np.ndarray
    ys: np.ndarray
    gx: np.ndarray
    gy: np.ndarray

    @property
    def points(self) -> np.ndarray:
        """Every grid point as one (GRID_STEPS², 2) array."""
        return np.column_stack([self.gx.ravel(), self.gy.ravel()])


def _grid(dataset: Dataset) -> _Grid:
    """A GRID_STEPS × GRID_STEPS grid over every split's points, padded by 8% on each side."""
    every = np.concatenate([dataset.X_train, dataset.X_val, dataset.X_test])
    lo, hi = every.min(axis=0), every.max(axis=0)
    pad = np.where(hi > lo, 0.08 * (hi - lo), 1.0)
    xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], GRID_STEPS)
    ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], GRID_STEPS)
    gx, gy = np.meshgrid(xs, ys)
    return _Grid(xs, ys, gx, gy)


def _draw_probability_map(
    fig: plt.Figure, ax: plt.Axes, grid: _Grid, proba: np.ndarray, positive: str
) -> None:
    """Two classes: P(class 1) as a red-blue background with a colour bar, and the P = 0.5 line."""
    p1 = proba[:, 1].reshape(grid.gx.shape)
    filled = ax.contourf(
        grid.gx, grid.gy, p1, levels=np.linspace(0, 1, 21), cmap="RdBu_r", alpha=0.45
    )
    bar = fig.colorbar(filled, ax=ax, ticks=np.linspace(0, 1, 6))
    bar.set_label(literal(f"predicted P(class = {positive})"))
    ax.contour(grid.gx, grid.gy, p1, levels=[0.5], colors="k", linewidths=1.5)


def _draw_class_map(
    ax: plt.Axes, grid: _Grid, labels: np.ndarray, proba: np.ndarray, colours: list[Any]
) -> None:
    """More classes: the predicted class as background colour, shaded darker where the network
    is less sure, with black lines between predicted classes."""
    from matplotlib.colors import ListedColormap

    k = len(colours)
    grid_labels = labels.reshape(grid.gx.shape)
    ax.pcolormesh(
        grid.gx,
        grid.gy,
        grid_labels,
        cmap=ListedColormap(colours),
        vmin=-0.5,
        vmax=k - 0.5,
        alpha=0.3,
        shading="auto",
    )
    confidence = proba.max(axis=1).reshape(grid.gx.shape)
    shade = ax.contourf(grid.gx, grid.gy, confidence, levels=np.linspace(0, 1, 11), cmap="Greys_r")
    shade.set_alpha(0.25)
    levels = np.arange(k) + 0.5
    ax.contour(grid.gx, grid.gy, grid_labels, levels=levels, colors="k", linewidths=0.8, alpha=0.6)


def _scatter_classes(
    ax: plt.Axes,
    X: np.ndarray,
    y: np.ndarray,
    run: _Run,
    colours: list[Any],
    prefix: str,
    **style: Any,
) -> None:
    """One scatter per class of the points X (true labels y), labelled ``prefix: class``."""
    for c, name in enumerate(run.dataset.class_names):
        mine = y == c
        ax.scatter(
            X[mine, 0], X[mine, 1], color=colours[c], label=literal(f"{prefix}: {name}"), **style
        )


def _circle_misclassified(ax: plt.Axes, net: Network, X: np.ndarray, y: np.ndarray) -> None:
    """A black ring around each point of X the network gets wrong (none if X is empty)."""
    if not len(y):
        return
    wrong = _predict(net, X)[0] != y
    if wrong.any():
        ax.scatter(
            X[wrong, 0],
            X[wrong, 1],
            s=160,
            marker="o",
            facecolors="none",
            edgecolors="black",
            linewidths=1.4,
            label=f"test: misclassified ({int(wrong.sum())})",
        )


def _scatter_points(ax: plt.Axes, run: _Run, colours: list[Any]) -> None:
    """The points the network was fitted on (dots), the test points (triangles) and rings
    around the misclassified test points; colour: true class."""
    X_fit, y_fit = training_set(run.config, run.dataset)
    X_test, y_test = run.dataset.split("test")
    fit_style = dict(s=16, marker="o", edgecolors="white", linewidths=0.4, alpha=0.85)
    _scatter_classes(ax, X_fit, y_fit, run, colours, _fit_label(run), **fit_style)
    test_style = dict(s=46, marker="^", edgecolors="black", linewidths=0.8)
    _scatter_classes(ax, X_test, y_test, run, colours, "test", **test_style)
    _circle_misclassified(ax, run.net, X_test, y_test)


def _label_axes(ax: plt.Axes, run: _Run, grid: _Grid) -> None:
    """Feature names on the axes, the grid's limits, the legend right of the plot, a title."""
    names = list(run.dataset.feature_names) + ["", ""]
    ax.set_xlabel(literal(names[0] or "feature 0"))
    ax.set_ylabel(literal(names[1] or "feature 1"))
    ax.set_xlim(grid.xs[0], grid.xs[-1])
    ax.set_ylim(grid.ys[0], grid.ys[-1])
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.22 if run.dataset.n_classes == 2 else 1.02, 1.0),  # past a colour bar
        fontsize="small",
        title="points (class)",
        frameon=False,
    )
    ax.set_title(literal(f"{_run_name(run)}: decision boundary"))


def _decision_boundary_png(run: _Run) -> tuple[bytes | None, str]:
    """The decision-boundary figure of 2-D data, and a note (why it is missing, if it is)."""
    grid = _grid(run.dataset)
    labels, proba = _predict(run.net, grid.points)
    if not np.isfinite(proba).all():
        return None, "the network's outputs over the grid are not finite numbers"
    colours = _class_colours(run.dataset.n_classes)
    fig, ax = pyplot().subplots(figsize=(7.5, 6.2))
    if run.dataset.n_classes == 2:
        _draw_probability_map(fig, ax, grid, proba, run.dataset.class_names[1])
    else:
        _draw_class_map(ax, grid, labels, proba, colours)
    _scatter_points(ax, run, colours)
    _label_axes(ax, run, grid)
    return figure_png(fig), ""


def _image_png(image: np.ndarray, vmin: float, vmax: float) -> bytes:
    """One greyscale image (dark = high value) as PNG bytes, one pixel per value."""
    buffer = io.BytesIO()
    pyplot().imsave(buffer, image, cmap="gray_r", vmin=vmin, vmax=vmax, format="png")
    return buffer.getvalue()


# --------------------------------------------------------------------------- template values


@dataclass(frozen=True)
class _Row:
    """One line of a key/value table: ``value`` shown as text, as code or as a list of tags."""

    label: str
    value: str | list[str]
    kind: Literal["text", "code", "tags"] = "text"


@dataclass(frozen=True)
class _SplitAccuracy:
    """One line of the accuracy table."""

    split: str
    n: Any
    accuracy: float | None
    errors: int | None
    bar_percent: float


@dataclass(frozen=True)
class _RecallCell:
    """The recall (text) and ``correct / n`` of one class in one split."""

    recall: str
    counts: str
    low: bool = False


@dataclass(frozen=True)
class _Sample:
    """One misclassified test image."""

    index: int
    true: str
    predicted: str
    probability: float | None
    png: bytes = field(repr=False)


def _header(run: _Run) -> dict[str, Any]:
    stop = run.info.stop
    shown = _shown_split(run)
    accuracy = _number(run.metrics[shown].get("accuracy")) if shown else None
    return {
        "status": run.info.status,
        "reason": stop.reason if stop else "",
        "split": shown,
        "accuracy": accuracy,
        "epochs": stop.epochs if stop else None,
        "updates": stop.iterations if stop else None,
        "seconds": run.info.seconds,
    }


def _run_rows(run: _Run) -> list[_Row]:
    info = run.info
    stop = info.stop
    versions = info.versions
    rows = [
        _Row("status", info.status),
        _Row("started", _when(info.started)),
        _Row("ended", _when(info.ended)),
        _Row("duration", _duration(info.seconds)),
        _Row("training time", _duration(stop.train_seconds if stop else None)),
        _Row("stopped by", stop.stopped_by if stop else "-"),
        _Row("stop reason", (stop.reason if stop else "") or "-"),
        _Row(
            "epochs / updates",
            f"{_count(stop and stop.epochs)} / {_count(stop and stop.iterations)}",
        ),
        _Row("seed", str(run.config.seed)),
        _Row("folder", str(run.run_dir), "code"),
        _Row("config file", str(info.config_file or "-"), "code"),
    ]
    if info.error:
        rows.append(_Row("error", info.error))
    if versions:
        rows.append(_Row("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    return rows


def _data_warning(run: _Run) -> str | None:
    """The rebuilt data's fingerprint when it differs from the one the run recorded, else None."""
    recorded = run.info.data.get("fingerprint")
    return run.dataset.fingerprint if recorded and recorded != run.dataset.fingerprint else None


def _data_rows(run: _Run) -> list[_Row]:
    dataset = run.dataset
    recorded = run.info.data
    sizes = (
        f"train {len(dataset.y_train):,} · val {len(dataset.y_val):,} · "
        f"test {len(dataset.y_test):,}"
    )
    shape = dataset.image_shape
    features = f"{dataset.n_features:,}" + (f" ({shape[0]}×{shape[1]} images)" if shape else "")
    return [
        _Row("name", str(recorded.get("name") or dataset.name)),
        _Row("source", str(recorded.get("source") or dataset.source)),
        _Row("fingerprint", str(recorded.get("fingerprint") or dataset.fingerprint), "code"),
        _Row("split sizes", sizes),
        _Row("trained on", str(run.config.data.train_on)),
        _Row("features", features),
        _Row(f"classes ({dataset.n_classes})", [str(c) for c in dataset.class_names], "tags"),
    ]


def _activations(net: Network) -> str:
    """The hidden activations of ``net``, in order of first use (for runs.json without one)."""
    kinds = [layer.kind for layer in net.layers if layer.kind in ACTIVATIONS]
    return ", ".join(dict.fromkeys(kinds)) or "none"


def _network_rows(run: _Run) -> list[_Row]:
    network = run.info.network
    train = run.config.train
    n_params = sum(int(np.asarray(a).size) for a in run.net.state().values())
    return [
        _Row("sizes", " → ".join(str(s) for s in network.get("sizes") or run.net.sizes)),
        _Row("activation", str(network.get("activation") or _activations(run.net))),
        _Row("output", str(network.get("output") or run.net.loss.name)),
        _Row("parameters", f"{n_params:,}"),
        _Row("optimizer", str(train.optimizer.name)),
        _Row("learning rate", f"{train.lr:g} ({train.lr_schedule.name})"),
        _Row("batch size", str(train.batch_size)),
    ]


def _errors(matrix: Any) -> int | None:
    """Off-diagonal count of a confusion matrix (None without one)."""
    if matrix is None:
        return None
    mat = np.asarray(matrix)
    return int(mat.sum() - np.trace(mat))


def _accuracy_rows(run: _Run) -> list[_SplitAccuracy]:
    rows = []
    for split in _splits_present(run):
        m = run.metrics[split]
        accuracy = _number(m.get("accuracy"))
        percent = max(0.0, min(1.0, float(accuracy))) * 100 if accuracy is not None else 0.0
        errors = _errors(m.get("confusion_matrix"))
        rows.append(_SplitAccuracy(split, m.get("n"), accuracy, errors, percent))
    return rows


def _matrix(run: _Run, split: str) -> np.ndarray | None:
    """``split``'s confusion matrix from metrics.json as a (k, k) array of counts, or None when
    it has none (or not one of this run's k classes)."""
    recorded = run.metrics[split].get("confusion_matrix")
    if recorded is None:
        return None
    try:
        matrix = as_confusion_matrix(recorded)
    except (ValueError, TypeError):
        return None
    return matrix if len(matrix) == run.dataset.n_classes else None


def _recall_cells(matrix: np.ndarray) -> list[_RecallCell]:
    """Each class's accuracy (recall) and ``correct / n`` in one split (``-`` without samples)."""
    cells = []
    for c, recall in enumerate(per_class_accuracy(matrix)):
        correct, n = int(matrix[c, c]), int(matrix[c].sum())
        if recall is None:
            cells.append(_RecallCell("-", "0 / 0"))
        else:
            cells.append(_RecallCell(f"{recall:.3f}", f"{correct:,} / {n:,}", recall < LOW_RECALL))
    return cells


def _per_class(run: _Run) -> dict[str, Any]:
    """The splits with a confusion matrix, and one row (class name, cells) per class.

    Computed from each split's confusion matrix, so a 0.1.0 metrics.json (which has no
    ``per_class_accuracy``) gives the same table; the numbers equal that key where present."""
    matrices = {s: _matrix(run, s) for s in _splits_present(run)}
    splits = [s for s, matrix in matrices.items() if matrix is not None]
    columns = [_recall_cells(matrices[s]) for s in splits]
    rows = [
        {"name": str(name), "cells": [cells[c] for cells in columns]}
        for c, name in enumerate(run.dataset.class_names)
    ]
    return {"splits": splits, "rows": rows}


@dataclass(frozen=True)
class _Pair:
    """One line of the most-confused-pairs table: ``count`` samples of ``true`` predicted as
    ``predicted`` (``share`` of the true class), ``reverse`` the other way round."""

    true: str
    predicted: str
    count: int
    share: float
    reverse: int
    both: int


def _pairs(run: _Run) -> dict[str, Any] | None:
    """The most confused pairs of classes in the shown split (``metrics.confused_pairs`` of its
    confusion matrix, so 0.1.0 runs get them too), each with its errors the other way; None
    without a confusion matrix."""
    shown = _shown_split(run)
    matrix = _matrix(run, shown) if shown else None
    if matrix is None:
        return None
    names = [str(c) for c in run.dataset.class_names]
    index = {name: c for c, name in enumerate(names)}
    rows = []
    for pair in confused_pairs(matrix, names, TOP_PAIRS):
        both = pair_confusion(matrix, index[pair.true], index[pair.predicted])
        rows.append(
            _Pair(
                pair.true,
                pair.predicted,
                pair.count,
                pair.share_of_true,
                both["b_as_a"],
                both["total"],
            )
        )
    return {"split": shown, "rows": rows, "top": TOP_PAIRS, "errors": _errors(matrix)}


def _learning_curve(run: _Run) -> bytes | None:
    if not run.history:
        return None
    stop = run.info.stop
    title = f"{_run_name(run)}: stopped by {stop.stopped_by if stop else run.info.status}"
    return learning_curve_png(run.history, title)


def _confusion(run: _Run) -> dict[str, Any] | None:
    """The shown split's confusion matrix figure, or None without one."""
    shown = _shown_split(run)
    if shown is None or run.metrics[shown].get("confusion_matrix") is None:
        return None
    m = run.metrics[shown]
    accuracy = _number(m.get("accuracy"))
    title = f"{_run_name(run)}: {shown} confusion matrix" + (
        f" (accuracy {accuracy:.3f})" if accuracy is not None else ""
    )
    png = confusion_matrix_png(np.asarray(m["confusion_matrix"]), run.dataset.class_names, title)
    return {"split": shown, "png": png}


def _diagnostics(run: _Run) -> dict[str, Any]:
    """The gradient-flow figure of diagnostics.csv (None without its rows), the findings of
    ``scratchnn diagnose`` (``diagnose.diagnose``) and notes on what they could not judge.

    The evidence is what this report has loaded (run.json's record, the spec, history.csv),
    with diagnostics.csv read here: an unreadable diagnostics.csv loses the figure and the
    rules that need it, not the findings from the history."""
    rows = run.diagnostics
    evidence = Evidence(run.info, run.config, run.history or [], rows, run.diagnostics_error)
    missing = [m for m in [missing_evidence(evidence)] if m]
    if not run.history:
        missing.append("history.csv is missing, empty or unreadable: the costs were not judged")
    png = gradient_flow_png(rows, f"{_run_name(run)}: gradient flow") if rows else None
    findings: list[Finding] = diagnose(evidence)
    return {
        "png": png,
        "probes": _probe_epochs(sorted({r.epoch for r in rows})) if rows else "",
        "missing": missing,
        "findings": findings,
    }


def _probe_epochs(epochs: list[int]) -> str:
    """When the probes were taken: ``epochs 0, 1 and 5``, or ``40 epochs between 0 and 800``."""
    if len(epochs) > 8:
        return f"{len(epochs)} epochs between {epochs[0]:,} and {epochs[-1]:,}"
    shown = [f"{e:,}" for e in epochs]
    if len(shown) == 1:
        return f"epoch {shown[0]}"
    return f"epochs {', '.join(shown[:-1])} and {shown[-1]}"


def _boundary(run: _Run) -> dict[str, Any] | None:
    """The decision boundary of 2-D data (png None and why when it cannot be drawn)."""
    if run.dataset.n_features != 2:
        return None
    png, why = _decision_boundary_png(run)
    two = run.dataset.n_classes == 2
    return {
        "png": png,
        "why": why,
        "fit": _fit_label(run),
        "positive_class": str(run.dataset.class_names[1]) if two else None,
    }


def _display_images(dataset: Dataset, X: np.ndarray) -> np.ndarray | None:
    """The samples X (one per row, flat or image-shaped: (m, h, w), (m, 1, h, w)...) as
    (m, h, w) images in the units of the unscaled data (``data.scale`` undone), or None when a
    sample does not hold h x w values."""
    shape = dataset.image_shape
    if shape is None:
        return None
    flat = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    if flat.shape[1] != shape[0] * shape[1]:
        return None
    return dataset.scaling.inverse(flat).reshape(len(X), *shape)


def _misclassified(run: _Run) -> dict[str, Any] | None:
    """The test split's size, its misclassified count and the first MAX_MISCLASSIFIED of them
    as images (in the unscaled data's grey levels) with their true / predicted class; None for
    data that are not images."""
    shape = run.dataset.image_shape
    if shape is None:
        return None
    X, y = run.dataset.split("test")
    if len(y) == 0:
        return {"n_test": 0, "n_wrong": 0, "samples": [], "why": ""}
    predicted, proba = _predict(run.net, X)
    wrong = np.flatnonzero(predicted != y)
    images = _display_images(run.dataset, X)
    if images is None:
        size = math.prod(np.shape(X)[1:])
        why = f"each test sample holds {size:,} values, not {shape[0]}×{shape[1]}"
        return {"n_test": len(y), "n_wrong": len(wrong), "samples": [], "why": why}
    names = run.dataset.class_names
    finite = images[np.isfinite(images)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1.0
    samples = []
    for i in wrong[:MAX_MISCLASSIFIED]:
        true, pred = int(y[i]), int(predicted[i])
        p = proba[i, pred] if proba.shape[1] > pred else float("nan")
        png = _image_png(images[i], lo, hi)
        probability = float(p) if math.isfinite(p) else None
        samples.append(_Sample(int(i), str(names[true]), str(names[pred]), probability, png))
    return {"n_test": len(y), "n_wrong": len(wrong), "samples": samples, "why": ""}


def _page(run: _Run) -> dict[str, Any]:
    """Every value the page template shows."""
    return {
        "name": _run_name(run),
        "header": _header(run),
        "run_rows": _run_rows(run),
        "data_warning": _data_warning(run),
        "data_rows": _data_rows(run),
        "network_rows": _network_rows(run),
        "accuracy": _accuracy_rows(run),
        "per_class": _per_class(run),
        "learning_curve": _learning_curve(run),
        "diagnostics": _diagnostics(run),
        "confusion": _confusion(run),
        "pairs": _pairs(run),
        "boundary": _boundary(run),
        "misclassified": _misclassified(run),
        "config_text": run.config_text,
        "version": __version__,
        "folder": run.run_dir.name,
        "generated": datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %z"),
    }


# --------------------------------------------------- text formatting (count, duration: filters too)


def _count(value: Any) -> str:
    """An int with thousands separators; anything else as text, None as ``-``."""
    return f"{value:,}" if isinstance(value, int) else str(value if value is not None else "-")


def _duration(seconds: Any) -> str:
    """Seconds as ``12.3 s``, ``4 min 5 s`` or ``1 h 2 min 3 s``; ``-`` if not a number."""
    if not isinstance(seconds, int | float) or not math.isfinite(seconds):
        return "-"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min {secs} s" if hours else f"{minutes} min {secs} s"


def _when(stamp: Any) -> str:
    """An ISO time stamp as ``YYYY-mm-dd HH:MM:SS +zone``; ``-`` if empty, as is if unparsable."""
    if not stamp:
        return "-"
    try:
        return datetime.fromisoformat(str(stamp)).strftime("%Y-%m-%d %H:%M:%S %z").strip()
    except ValueError:
        return str(stamp)


def _png_uri(png: bytes) -> str:
    """PNG bytes as a base64 ``data:`` URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


@functools.cache
def template_environment() -> jinja2.Environment:
    """The Jinja2 environment of the report templates: autoescaped, undefined names are errors."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("scratchnn_cli", "report/templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(count=_count, duration=_duration, png_uri=_png_uri)
    return env
