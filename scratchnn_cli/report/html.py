"""One self-contained HTML report of a finished run: ``run_dir/report.html``.

The report gathers what a run folder holds (run.json, config.yaml, history.csv, metrics.json,
model.npz) into a single page a person can open in any browser or attach to an e-mail: every
image is embedded as a base64 ``data:image/png`` URI, the CSS is inline, there is no JavaScript
and nothing is fetched from anywhere. Figures are drawn with matplotlib (Agg): the decision boundary
and the image tiles straight into memory, the learning curve and confusion matrix by report.py's
own functions (which write to a path) in a private temporary folder. The only file written into
the run folder is ``report.html`` itself (atomically).

The network is only ever asked for ``predict`` / ``predict_proba``; no maths happens here.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from scratchnn_cli import __version__
from scratchnn_cli.config import ExperimentConfig
from scratchnn_cli.data import Dataset
from scratchnn_cli.errors import RunFolderError, one_line
from scratchnn_cli.experiment import SPLITS, load_run_model, training_set
from scratchnn_cli.nn.network import Network
from scratchnn_cli.report.plots import (
    confusion_matrix_png,
    figure_png,
    learning_curve_png,
    literal,
    plt,
)
from scratchnn_cli.runs import read_json, write_text

REPORT_NAME = "report.html"
#: Statuses a report can be made of: the run ended and left a model and metrics behind.
REPORTABLE_STATUSES = ("completed", "diverged")
#: At most this many misclassified test images are shown.
MAX_MISCLASSIFIED = 24
#: Points per axis of the decision-boundary grid.
GRID_STEPS = 300

# Class colours: blue / red for two classes (matching the RdBu probability map), else tab10/20.
_TWO_CLASS_COLOURS = ("#2166ac", "#b2182b")


# --------------------------------------------------------------------------- public entry point


def write_html_report(run_dir: Path) -> Path:
    """Write ``run_dir/report.html`` for a finished (completed or diverged) run; return its path.

    Raises :class:`RunFolderError` (one line) for a folder that is not a run, a run that has not
    finished (running, interrupted, failed) or one whose files are missing or unreadable. The
    run's data is rebuilt from its config, so a config that no longer validates (ConfigError) or
    data that cannot be loaded (DataError) raise those one-line errors as ``evaluate`` does.
    """
    run_dir = Path(run_dir)
    run = _load_run(run_dir)
    page = _render(run)
    path = run_dir / REPORT_NAME
    write_text(path, page)
    return path


# --------------------------------------------------------------------------- loading


@dataclass
class _Run:
    """Everything the report shows, loaded from one run folder."""

    run_dir: Path
    info: dict[str, Any]
    config_text: str
    config: ExperimentConfig
    dataset: Dataset
    net: Network
    metrics: dict[str, Any]
    history: list[SimpleNamespace] | None


def _load_run(run_dir: Path) -> _Run:
    config, dataset, net, info = load_run_model(run_dir, REPORTABLE_STATUSES)
    config_path = run_dir / "config.yaml"
    try:
        config_text = config_path.read_text(encoding="utf-8")
        metrics = read_json(run_dir / "metrics.json")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RunFolderError(f"{run_dir}: unreadable run files ({one_line(exc)})") from None

    return _Run(
        run_dir=run_dir,
        info=info,
        config_text=config_text,
        config=config,
        dataset=dataset,
        net=net,
        metrics=metrics,
        history=_read_history(run_dir / "history.csv"),
    )


def _read_history(path: Path) -> list[SimpleNamespace] | None:
    """history.csv as records (epoch, cost, train_accuracy, val_cost, val_accuracy, lr), or None
    when the file is absent or unreadable."""
    if not path.is_file():
        return None

    def number(text: str | None) -> float | None:
        if text is None or text.strip() == "":
            return None
        value = float(text)
        return None if math.isnan(value) else value

    try:
        with open(path, encoding="utf-8", newline="") as f:
            return [
                SimpleNamespace(
                    epoch=int(row["epoch"]),
                    cost=number(row["cost"]),
                    train_accuracy=number(row["train_accuracy"]),
                    val_cost=number(row.get("val_cost")),
                    val_accuracy=number(row.get("val_accuracy")),
                    lr=number(row.get("lr")),
                )
                for row in csv.DictReader(f)
            ]
    except (OSError, KeyError, ValueError, TypeError):
        return None


# --------------------------------------------------------------------------- figures


def _class_colours(k: int) -> list[Any]:
    if k == 2:
        return list(_TWO_CLASS_COLOURS)
    cmap = plt.get_cmap("tab10" if k <= 10 else "tab20")
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


def _decision_boundary_png(run: _Run) -> tuple[bytes | None, str]:
    """The decision-boundary figure of 2-D data, and a note (why it is missing, if it is)."""
    dataset, net = run.dataset, run.net
    X_fit, y_fit = training_set(run.config, dataset)
    X_test, y_test = dataset.split("test")
    every = np.concatenate([dataset.X_train, dataset.X_val, dataset.X_test])
    lo, hi = every.min(axis=0), every.max(axis=0)
    pad = np.where(hi > lo, 0.08 * (hi - lo), 1.0)
    xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], GRID_STEPS)
    ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], GRID_STEPS)
    gx, gy = np.meshgrid(xs, ys)
    labels, proba = _predict(net, np.column_stack([gx.ravel(), gy.ravel()]))
    if not np.isfinite(proba).all():
        return None, "the network's outputs over the grid are not finite numbers"

    k = dataset.n_classes
    colours = _class_colours(k)
    fig, ax = plt.subplots(figsize=(7.5, 6.2))
    if k == 2:
        p1 = proba[:, 1].reshape(gx.shape)
        filled = ax.contourf(gx, gy, p1, levels=np.linspace(0, 1, 21), cmap="RdBu_r", alpha=0.45)
        bar = fig.colorbar(filled, ax=ax, ticks=np.linspace(0, 1, 6))
        bar.set_label(literal(f"predicted P(class = {dataset.class_names[1]})"))
    else:
        from matplotlib.colors import ListedColormap

        grid_labels = labels.reshape(gx.shape)
        ax.pcolormesh(
            gx,
            gy,
            grid_labels,
            cmap=ListedColormap(colours),
            vmin=-0.5,
            vmax=k - 0.5,
            alpha=0.3,
            shading="auto",
        )
        confidence = proba.max(axis=1).reshape(gx.shape)
        shade = ax.contourf(gx, gy, confidence, levels=np.linspace(0, 1, 11), cmap="Greys_r")
        shade.set_alpha(0.25)
        ax.contour(
            gx, gy, grid_labels, levels=np.arange(k) + 0.5, colors="k", linewidths=0.8, alpha=0.6
        )
    # The predicted-class border (P = 0.5 for two classes).
    if k == 2:
        ax.contour(gx, gy, proba[:, 1].reshape(gx.shape), levels=[0.5], colors="k", linewidths=1.5)

    fit_label = "train+val" if run.config.data.train_on == "train+val" else "train"
    for c, name in enumerate(dataset.class_names):
        fit = y_fit == c
        ax.scatter(
            X_fit[fit, 0],
            X_fit[fit, 1],
            s=16,
            marker="o",
            color=colours[c],
            edgecolors="white",
            linewidths=0.4,
            alpha=0.85,
            label=literal(f"{fit_label}: {name}"),
        )
    for c, name in enumerate(dataset.class_names):
        test = y_test == c
        ax.scatter(
            X_test[test, 0],
            X_test[test, 1],
            s=46,
            marker="^",
            color=colours[c],
            edgecolors="black",
            linewidths=0.8,
            label=literal(f"test: {name}"),
        )
    if len(y_test):
        wrong = _predict(net, X_test)[0] != y_test
        if wrong.any():
            ax.scatter(
                X_test[wrong, 0],
                X_test[wrong, 1],
                s=160,
                marker="o",
                facecolors="none",
                edgecolors="black",
                linewidths=1.4,
                label=f"test: misclassified ({int(wrong.sum())})",
            )
    names = list(dataset.feature_names) + ["", ""]
    ax.set_xlabel(literal(names[0] or "feature 0"))
    ax.set_ylabel(literal(names[1] or "feature 1"))
    ax.set_xlim(xs[0], xs[-1])
    ax.set_ylim(ys[0], ys[-1])
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.22 if k == 2 else 1.02, 1.0),
        fontsize="small",
        title="points (class)",
        frameon=False,
    )
    ax.set_title(literal(f"{_run_name(run)}: decision boundary"))
    return figure_png(fig), ""


def _image_png(image: np.ndarray, vmin: float, vmax: float) -> bytes:
    """One greyscale image (dark = high value) as PNG bytes, one pixel per value."""
    buffer = io.BytesIO()
    plt.imsave(buffer, image, cmap="gray_r", vmin=vmin, vmax=vmax, format="png")
    return buffer.getvalue()


# --------------------------------------------------------------------------- HTML pieces


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _img(png: bytes, alt: str, css_class: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    cls = f' class="{css_class}"' if css_class else ""
    return f'<img{cls} src="data:image/png;base64,{data}" alt="{_esc(alt)}">'


def _run_name(run: _Run) -> str:
    return str(run.info.get("name") or run.config.name or run.run_dir.name)


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or not math.isfinite(seconds):
        return "-"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min {secs} s" if hours else f"{minutes} min {secs} s"


def _when(stamp: Any) -> str:
    if not stamp:
        return "-"
    try:
        return datetime.fromisoformat(str(stamp)).strftime("%Y-%m-%d %H:%M:%S %z").strip()
    except ValueError:
        return str(stamp)


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else _esc(value if value is not None else "-")


def _rows(pairs: Sequence[tuple[str, str]]) -> str:
    """A two-column key/value table; values are already HTML."""
    body = "".join(f"<tr><th>{_esc(k)}</th><td>{v}</td></tr>" for k, v in pairs)
    return f'<table class="kv">{body}</table>'


def _splits_present(run: _Run) -> list[str]:
    return [s for s in SPLITS if isinstance(run.metrics.get(s), dict)]


def _shown_split(run: _Run) -> str | None:
    present = _splits_present(run)
    return "test" if "test" in present else (present[0] if present else None)


def _accuracy_table(run: _Run) -> str:
    rows = []
    for split in _splits_present(run):
        m = run.metrics[split]
        n, acc = m.get("n"), m.get("accuracy")
        errors = "-"
        matrix = m.get("confusion_matrix")
        if matrix is not None:
            mat = np.asarray(matrix)
            errors = f"{int(mat.sum() - np.trace(mat)):,}"
        acc_text = f"{acc:.4f}" if isinstance(acc, int | float) else "-"
        bar = _bar(acc) if isinstance(acc, int | float) else ""
        rows.append(
            f"<tr><th>{_esc(split)}</th><td class='num'>{_count(n)}</td>"
            f"<td class='num'>{acc_text}</td><td class='num'>{errors}</td><td>{bar}</td></tr>"
        )
    if not rows:
        return "<p class='note'>metrics.json holds no split.</p>"
    return (
        "<table class='grid'><thead><tr><th>split</th><th>n</th><th>accuracy</th>"
        "<th>errors</th><th></th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _bar(fraction: float) -> str:
    width = max(0.0, min(1.0, float(fraction))) * 100
    return f"<span class='bar'><span style='width:{width:.1f}%'></span></span>"


def _per_class_table(run: _Run) -> str:
    names = list(run.dataset.class_names)
    splits = [s for s in _splits_present(run) if run.metrics[s].get("confusion_matrix")]
    if not splits:
        return "<p class='note'>metrics.json holds no confusion matrix.</p>"
    head = "".join(f"<th colspan='2'>{_esc(s)}</th>" for s in splits)
    sub = "".join("<th>recall</th><th>correct / n</th>" for _ in splits)
    rows = []
    matrices = {s: np.asarray(run.metrics[s]["confusion_matrix"]) for s in splits}
    for c, name in enumerate(names):
        cells = []
        for s in splits:
            mat = matrices[s]
            if c >= len(mat):
                cells.append("<td class='num'>-</td><td class='num'>-</td>")
                continue
            n, correct = int(mat[c].sum()), int(mat[c, c])
            if n == 0:
                cells.append("<td class='num'>-</td><td class='num'>0 / 0</td>")
                continue
            recall = correct / n
            cls = " low" if recall < 0.8 else ""
            cells.append(
                f"<td class='num{cls}'>{recall:.3f}</td><td class='num'>{correct:,} / {n:,}</td>"
            )
        rows.append(f"<tr><th>{_esc(name)}</th>{''.join(cells)}</tr>")
    return (
        "<table class='grid per-class'><thead>"
        f"<tr><th rowspan='2'>class</th>{head}</tr><tr>{sub}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _header(run: _Run) -> str:
    info = run.info
    status = str(info.get("status"))
    stop = info.get("stop") or {}
    shown = _shown_split(run)
    headline = ""
    if shown is not None and isinstance(run.metrics[shown].get("accuracy"), int | float):
        headline = (
            f"<div class='stat'><span class='big'>{run.metrics[shown]['accuracy']:.4f}</span>"
            f"<span>{_esc(shown)} accuracy</span></div>"
        )
    stats = (
        headline + f"<div class='stat'><span class='big'>{_count(stop.get('epochs'))}</span>"
        "<span>epochs</span></div>"
        f"<div class='stat'><span class='big'>{_count(stop.get('iterations'))}</span>"
        "<span>updates</span></div>"
        f"<div class='stat'><span class='big'>{_esc(_duration(info.get('seconds')))}</span>"
        "<span>duration</span></div>"
    )
    return (
        f"<header><h1>{_esc(_run_name(run))} "
        f"<span class='status status-{_esc(status)}'>{_esc(status)}</span></h1>"
        f"<p class='reason'>{_esc(stop.get('reason') or '')}</p>"
        f"<div class='stats'>{stats}</div></header>"
    )


def _run_section(run: _Run) -> str:
    info = run.info
    stop = info.get("stop") or {}
    versions = info.get("versions") or {}
    pairs = [
        ("status", _esc(info.get("status"))),
        ("started", _esc(_when(info.get("started")))),
        ("ended", _esc(_when(info.get("ended")))),
        ("duration", _esc(_duration(info.get("seconds")))),
        ("training time", _esc(_duration(stop.get("train_seconds")))),
        ("stopped by", _esc(stop.get("stopped_by") or "-")),
        ("stop reason", _esc(stop.get("reason") or "-")),
        ("epochs / updates", f"{_count(stop.get('epochs'))} / {_count(stop.get('iterations'))}"),
        ("seed", _esc(run.config.seed)),
        ("folder", f"<code class='wrap'>{_esc(run.run_dir)}</code>"),
        ("config file", f"<code class='wrap'>{_esc(info.get('config_file') or '-')}</code>"),
    ]
    if info.get("error"):
        pairs.append(("error", _esc(info["error"])))
    if versions:
        pairs.append(("versions", _esc(", ".join(f"{k} {v}" for k, v in versions.items()))))
    half = (len(pairs) + 1) // 2
    return (
        "<section id='run'><h2>Run</h2><div class='halves'>"
        f"{_rows(pairs[:half])}{_rows(pairs[half:])}</div></section>"
    )


def _data_network_section(run: _Run) -> str:
    dataset = run.dataset
    recorded = run.info.get("data") or {}
    network = run.info.get("network") or {}
    fingerprint = recorded.get("fingerprint") or dataset.fingerprint
    warning = ""
    if recorded.get("fingerprint") and recorded["fingerprint"] != dataset.fingerprint:
        warning = (
            "<p class='warn'>The data rebuilt for this report differs from the data the run "
            f"recorded (fingerprint {_esc(dataset.fingerprint)}); the figures below use the "
            "rebuilt data.</p>"
        )
    sizes = (
        f"train {len(dataset.y_train):,} · val {len(dataset.y_val):,} · "
        f"test {len(dataset.y_test):,}"
    )
    classes = " ".join(f"<span class='tag'>{_esc(c)}</span>" for c in dataset.class_names)
    shape = dataset.image_shape
    features = f"{dataset.n_features:,}" + (f" ({shape[0]}×{shape[1]} images)" if shape else "")
    data_pairs = [
        ("name", _esc(recorded.get("name") or dataset.name)),
        ("source", _esc(recorded.get("source") or dataset.source)),
        ("fingerprint", f"<code class='wrap'>{_esc(fingerprint)}</code>"),
        ("split sizes", _esc(sizes)),
        ("trained on", _esc(run.config.data.train_on)),
        ("features", _esc(features)),
        (f"classes ({dataset.n_classes})", classes),
    ]
    layer_sizes = network.get("sizes") or run.net.sizes
    n_params = sum(int(np.asarray(a).size) for a in run.net.state().values())
    net_pairs = [
        ("sizes", _esc(" → ".join(str(s) for s in layer_sizes))),
        ("activation", _esc(network.get("activation") or run.net.activation.name)),
        ("output", _esc(network.get("output") or run.net.loss.name)),
        ("parameters", f"{n_params:,}"),
        ("optimizer", _esc(run.config.train.optimizer.name)),
        ("learning rate", _esc(f"{run.config.train.lr:g} ({run.config.train.lr_schedule.name})")),
        ("batch size", _esc(run.config.train.batch_size)),
    ]
    return (
        "<div class='cols'>"
        f"<section><h2>Data</h2>{warning}{_rows(data_pairs)}</section>"
        f"<section><h2>Network</h2>{_rows(net_pairs)}</section>"
        "</div>"
    )


def _results_section(run: _Run) -> str:
    return (
        "<section id='accuracy'><h2>Accuracy</h2>"
        f"{_accuracy_table(run)}"
        "<h3>Per-class accuracy (recall: correct / samples of the class)</h3>"
        f"{_per_class_table(run)}</section>"
    )


def _figures_section(run: _Run) -> str:
    name = _run_name(run)
    parts = []
    if run.history:
        stop = run.info.get("stop") or {}
        title = f"{name}: stopped by {stop.get('stopped_by', run.info.get('status'))}"
        history = run.history
        png = learning_curve_png(history, title)
        parts.append(
            "<section id='learning-curve'><h2>Learning curves</h2>"
            f"<figure>{_img(png, 'learning curves: cost and accuracy per epoch')}</figure>"
            "</section>"
        )
    else:
        parts.append(
            "<section id='learning-curve'><h2>Learning curves</h2>"
            "<p class='note'>No training history was recorded (history.csv is missing, empty "
            "or unreadable).</p></section>"
        )
    shown = _shown_split(run)
    if shown is not None and run.metrics[shown].get("confusion_matrix") is not None:
        m = run.metrics[shown]
        accuracy = m.get("accuracy")
        title = f"{name}: {shown} confusion matrix" + (
            f" (accuracy {accuracy:.3f})" if isinstance(accuracy, int | float) else ""
        )
        matrix = np.asarray(m["confusion_matrix"])
        class_names = list(run.dataset.class_names)
        png = confusion_matrix_png(matrix, class_names, title)
        parts.append(
            f"<section id='confusion-matrix'><h2>Confusion matrix ({_esc(shown)})</h2>"
            "<p class='note'>Rows: true class; columns: predicted class.</p>"
            f"<figure>{_img(png, f'{shown} confusion matrix', 'confusion')}</figure></section>"
        )
    return "".join(parts)


def _decision_boundary_section(run: _Run) -> str:
    if run.dataset.n_features != 2:
        return ""
    png, why = _decision_boundary_png(run)
    if png is None:
        body = f"<p class='note'>No decision boundary: {_esc(why)}.</p>"
    else:
        fit = "train+val" if run.config.data.train_on == "train+val" else "train"
        what = (
            "Background: the network's predicted probability of class "
            f"<b>{_esc(run.dataset.class_names[1])}</b>; black line: the decision boundary "
            "(P = 0.5)."
            if run.dataset.n_classes == 2
            else "Background: the predicted class (colour) and its probability (darker = less "
            "sure); black lines: borders between predicted classes."
        )
        body = (
            f"<p class='note'>{what} Dots: the {fit} points the network was trained on; "
            "triangles: test points (circled: misclassified); colour: true class.</p>"
            f"<figure>{_img(png, 'decision boundary over the data', 'boundary')}</figure>"
        )
    return f"<section id='decision-boundary'><h2>Decision boundary</h2>{body}</section>"


def _misclassified_section(run: _Run) -> str:
    shape = run.dataset.image_shape
    if shape is None:
        return ""
    X, y = run.dataset.split("test")
    split = "test"
    if len(y) == 0:
        return (
            "<section id='misclassified'><h2>Misclassified test images</h2>"
            "<p class='note'>The test split is empty.</p></section>"
        )
    predicted, proba = _predict(run.net, X)
    wrong = np.flatnonzero(predicted != y)
    names = run.dataset.class_names
    if len(wrong) == 0:
        body = f"<p class='note'>None: all {len(y):,} {split} images are classified correctly.</p>"
    else:
        lo, hi = float(np.min(X)), float(np.max(X))
        hi = hi if hi > lo else lo + 1.0
        cells = []
        for i in wrong[:MAX_MISCLASSIFIED]:
            true, pred = int(y[i]), int(predicted[i])
            p = proba[i, pred] if proba.shape[1] > pred else float("nan")
            sure = f"<span class='p'>p = {p:.2f}</span>" if math.isfinite(p) else ""
            png = _image_png(np.asarray(X[i]).reshape(shape), lo, hi)
            cells.append(
                f"<figure class='sample'>"
                f"{_img(png, f'test #{i}: true {names[true]}, predicted {names[pred]}', 'px')}"
                f"<figcaption><span class='true'>{_esc(names[true])}</span> → "
                f"<span class='pred'>{_esc(names[pred])}</span>{sure}"
                f"<span class='idx'>#{i}</span></figcaption></figure>"
            )
        shown = min(len(wrong), MAX_MISCLASSIFIED)
        body = (
            f"<p class='note'>{len(wrong):,} of {len(y):,} {split} images are misclassified; "
            f"the first {shown} are shown as <b>true → predicted</b> (p: the network's "
            "probability of the predicted class; #: index in the test split).</p>"
            f"<div class='samples'>{''.join(cells)}</div>"
        )
    return f"<section id='misclassified'><h2>Misclassified test images</h2>{body}</section>"


def _config_section(run: _Run) -> str:
    return (
        "<section id='config'><h2>Resolved config</h2>"
        "<details open><summary>config.yaml (every setting, defaults filled in)</summary>"
        f"<pre>{html.escape(run.config_text)}</pre></details></section>"
    )


_CSS = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; --accent: #0969da; }
* { box-sizing: border-box; }
body { margin: 0; background: #eef1f4; color: var(--ink);
  font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 24px; }
header, section { background: #fff; border: 1px solid var(--line); border-radius: 8px;
  padding: 16px 20px; margin: 0 0 16px; }
h1 { margin: 0; font-size: 26px; }
h2 { margin: 0 0 12px; font-size: 19px; border-bottom: 1px solid var(--line); padding-bottom: 6px; }
h3 { margin: 18px 0 8px; font-size: 16px; }
.reason { color: var(--muted); margin: 4px 0 12px; }
.status { display: inline-block; vertical-align: middle; font-size: 13px; font-weight: 600;
  padding: 2px 10px; border-radius: 999px; background: #ddf4ff; color: #0550ae; }
.status-completed { background: #dafbe1; color: #1a7f37; }
.status-diverged { background: #fff1e5; color: #bc4c00; }
.stats { display: flex; flex-wrap: wrap; gap: 12px; }
.stat { background: var(--soft); border: 1px solid var(--line); border-radius: 6px;
  padding: 8px 16px; min-width: 150px; }
.stat span { display: block; color: var(--muted); font-size: 13px; }
.stat .big { color: var(--ink); font-size: 22px; font-weight: 600; }
.cols { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 16px; }
.cols section { margin: 0 0 16px; }
.halves { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 0 24px;
  align-items: start; }
@media (max-width: 800px) { .cols, .halves { grid-template-columns: 1fr; } }
table { border-collapse: collapse; }
table.kv { width: 100%; }
table.kv th { text-align: left; font-weight: 600; color: var(--muted); white-space: nowrap;
  padding: 3px 16px 3px 0; vertical-align: top; width: 1%; }
table.kv td { padding: 3px 0; overflow-wrap: anywhere; vertical-align: top; }
table.grid th, table.grid td { border: 1px solid var(--line); padding: 4px 10px; }
table.grid thead th { background: var(--soft); }
table.grid tbody th { text-align: left; background: var(--soft); }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.low { color: #cf222e; font-weight: 600; }
.bar { display: inline-block; width: 160px; height: 10px; background: var(--soft);
  border: 1px solid var(--line); border-radius: 5px; overflow: hidden; vertical-align: middle; }
.bar span { display: block; height: 100%; background: var(--accent); }
.tag { display: inline-block; background: var(--soft); border: 1px solid var(--line);
  border-radius: 4px; padding: 0 6px; margin: 0 4px 4px 0; font-size: 13px; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; }
code.wrap { overflow-wrap: anywhere; }
figure { margin: 0; }
figure img { max-width: 100%; height: auto; }
img.confusion { max-width: min(100%, 640px); }
img.boundary { max-width: min(100%, 860px); }
.note { color: var(--muted); margin: 0 0 10px; }
.warn { background: #fff8c5; border: 1px solid #d4a72c; border-radius: 6px; padding: 6px 10px; }
.samples { display: grid; grid-template-columns: repeat(auto-fill, minmax(128px, 1fr));
  gap: 10px; }
.sample { background: var(--soft); border: 1px solid var(--line); border-radius: 6px;
  padding: 8px; text-align: center; }
img.px { width: 96px; height: 96px; image-rendering: pixelated; border: 1px solid var(--line);
  background: #fff; }
.sample figcaption { font-size: 13px; line-height: 1.35; }
.sample .true { color: #1a7f37; font-weight: 600; }
.sample .pred { color: #cf222e; font-weight: 600; }
.sample .p, .sample .idx { display: block; color: var(--muted); font-size: 12px; }
details summary { cursor: pointer; color: var(--muted); margin-bottom: 8px; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 6px;
  padding: 10px 14px; overflow: auto; max-height: 36em; margin: 0;
  font: 13px/1.45 ui-monospace, SFMono-Regular, Menlo, monospace; }
footer { color: var(--muted); font-size: 13px; text-align: center; padding: 4px 0 16px; }
"""


def _render(run: _Run) -> str:
    """The whole page."""
    name = _run_name(run)
    generated = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %z")
    body = "".join(
        [
            _header(run),
            _run_section(run),
            _data_network_section(run),
            _results_section(run),
            _figures_section(run),
            _decision_boundary_section(run),
            _misclassified_section(run),
            _config_section(run),
        ]
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="generator" content="scratchnn">\n'
        f"<title>{_esc(name)} - scratchnn run report</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n<main>\n{body}\n"
        f"<footer>scratchnn {_esc(__version__)} run report of <code>{_esc(run.run_dir.name)}</code>"
        f" · generated {_esc(generated)}</footer>\n"
        "</main>\n</body>\n</html>\n"
    )
