"""Plots and tables of a run: learning curve, confusion matrix (PNG, via matplotlib Agg; Rich)."""

from __future__ import annotations

import functools
import io
import math
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from scratchnn_cli.runs import atomic_write

if TYPE_CHECKING:
    import matplotlib.pyplot as plt

    from scratchnn_cli.records import DiagnosticsRow


@functools.cache
def pyplot() -> ModuleType:
    """matplotlib.pyplot with the headless Agg backend, imported on first use: importing it
    takes ~2 s, which every process that trains without drawing (a sweep's workers) saves."""
    os.environ.pop("MPLBACKEND", None)  # we only write PNGs: a user's (or a bad) backend is moot
    import matplotlib

    matplotlib.use("Agg")  # headless: never needs a display
    import matplotlib.pyplot

    return matplotlib.pyplot


def literal(text: object) -> str:
    """``text`` as a string matplotlib shows as written: every ``$`` is escaped, so a class or
    feature name is never parsed as mathtext (which draws it wrongly or raises ValueError)."""
    return str(text).replace("$", r"\$")


def figure_png(fig: plt.Figure) -> bytes:
    """The PNG bytes of a matplotlib figure, which is then closed."""
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():  # a class name with a character the font lacks: a box
            warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)
            fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    finally:
        pyplot().close(fig)
    return buffer.getvalue()


def _write_png(png: bytes, path: Path) -> None:
    atomic_write(path, lambda f: f.write(png))


def plot_learning_curve(history: Sequence[Any], path: Path, title: str = "") -> None:
    """Write ``learning_curve_png`` atomically to ``path``."""
    _write_png(learning_curve_png(history, title), path)


#: A curve of at most this many points is drawn with a marker on each: a line through one point
#: (a one-epoch run) draws nothing at all, and a few points read better as dots.
MARKER_POINTS = 30


def markers(n_points: int) -> dict[str, Any]:
    """The ``plot`` keywords for a curve of ``n_points``: a small dot on each when they are
    few (``MARKER_POINTS``), none otherwise."""
    return {"marker": "o", "markersize": 4} if n_points <= MARKER_POINTS else {}


def learning_curve_png(history: Sequence[Any], title: str = "") -> bytes:
    """``learning_curve_figure`` as PNG bytes."""
    return figure_png(learning_curve_figure(history, title))


def learning_curve_figure(history: Sequence[Any], title: str = "") -> plt.Figure:
    """Cost (train, val) and accuracy (train, val) against epoch, dots on the points when there
    are few (``MARKER_POINTS``).

    ``history`` holds records with epoch, cost, train_accuracy, val_cost, val_accuracy.
    """
    epochs = [r.epoch for r in history]
    val = [r for r in history if r.val_cost is not None]
    dots = markers(len(history))
    fig, (ax_cost, ax_acc) = pyplot().subplots(1, 2, figsize=(10, 4))
    ax_cost.plot(epochs, [r.cost for r in history], label="train J (epoch mean)", **dots)
    if val:
        ax_cost.plot([r.epoch for r in val], [r.val_cost for r in val], label="val J", **dots)
    costs = [r.cost for r in history] + [r.val_cost for r in val]
    if costs and 0 < min(costs) and max(costs) < 1e100 and max(costs) / min(costs) > 50:
        ax_cost.set_yscale("log")
    ax_cost.set_xlabel("epoch")
    ax_cost.set_ylabel("cross-entropy cost J")
    ax_acc.plot(epochs, [r.train_accuracy for r in history], label="train (during epoch)", **dots)
    if val:
        ax_acc.plot([r.epoch for r in val], [r.val_accuracy for r in val], label="val", **dots)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_cost, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs: never 0.98, 1.02
        ax.grid(alpha=0.3)
        if history:
            ax.legend()
    fig.suptitle(literal(title or "learning curve"))
    return fig


class LiveLearningCurve:
    """Redraws ``learning_curve.png`` while training, so a user can keep the image open and
    watch it grow: at most every ``every`` seconds, and never more than 1/``SHARE`` of the
    time: a redraw that took d seconds waits SHARE d before the next (a drawing costs ~0.5 s,
    more as the history grows: every 5 s it took ~10% of a 3M-step single-sample run)."""

    SHARE = 30

    def __init__(self, path: Path, title: str, every: float = 5.0) -> None:
        self.path, self.title, self.every = path, title, every
        self.history: list[Any] = []
        self._last = time.monotonic()
        self._wait = every

    def update(self, record: Any) -> None:
        self.history.append(record)
        if time.monotonic() - self._last >= self._wait:
            start = time.monotonic()
            plot_learning_curve(self.history, self.path, f"{self.title} (training...)")
            self._last = time.monotonic()
            self._wait = max(self.every, self.SHARE * (self._last - start))

    def finish(self, history: Sequence[Any], title: str) -> None:
        plot_learning_curve(history, self.path, title)


def confusion_matrix_png(matrix: np.ndarray, class_names: Sequence[str], title: str = "") -> bytes:
    """Confusion matrix (rows: true class, columns: predicted) with class names, as PNG bytes."""
    k = len(class_names)
    size = max(4.0, 0.6 * k + 2)
    fig, ax = pyplot().subplots(figsize=(size, size))
    labels = [literal(name) for name in class_names]
    from sklearn.metrics import ConfusionMatrixDisplay

    display = ConfusionMatrixDisplay(np.asarray(matrix), display_labels=labels)
    display.plot(ax=ax, cmap="Blues", colorbar=False, xticks_rotation=45 if k > 3 else "horizontal")
    ax.set_title(literal(title or "confusion matrix"))
    return figure_png(fig)


def plot_augmentation(
    originals: np.ndarray, augmented_list: Sequence[np.ndarray], path: Path, title: str = ""
) -> None:
    """Write ``augmentation_png`` atomically to ``path``."""
    _write_png(augmentation_png(originals, augmented_list, title), path)


def augmentation_png(
    originals: np.ndarray, augmented_list: Sequence[np.ndarray], title: str = ""
) -> bytes:
    """A grid of augmentation examples, as PNG bytes: row i is ``originals[i]`` then
    ``augmented_list[0][i]``, ``augmented_list[1][i]``, ... (what
    ``data.augment.augmentation_examples`` returns). Images are (n, H, W) or (n, H, W, 1),
    drawn in grayscale on one shared value scale (so added noise shows as it is), no axes."""
    rows = _grayscale(originals, "originals")
    versions = [_grayscale(a, f"augmented_list[{j}]") for j, a in enumerate(augmented_list)]
    for j, version in enumerate(versions):
        if version.shape != rows.shape:
            raise ValueError(
                f"augmented_list[{j}] has shape {version.shape}, the originals {rows.shape}"
            )
    n, cols = len(rows), 1 + len(versions)
    everything = np.concatenate([rows, *versions]) if n else rows
    finite = everything[np.isfinite(everything)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    H, W = rows.shape[1:]
    scale = 1.2 / max(H, W)  # inches per pixel: each image is 1.2 inches on its long side
    fig, axes = pyplot().subplots(
        max(n, 1), cols, figsize=(cols * W * scale, max(n, 1) * H * scale + 0.4), squeeze=False
    )
    for i in range(n):
        for j, image in enumerate([rows[i]] + [v[i] for v in versions]):
            axes[i, j].imshow(image, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    for ax in axes.ravel():
        ax.set_axis_off()
    axes[0, 0].set_title("original", fontsize=8)
    for j in range(1, cols):
        axes[0, j].set_title(f"augmented {j}", fontsize=8)
    fig.suptitle(literal(title or "data augmentation"))
    return figure_png(fig)


def _grayscale(images: np.ndarray, what: str) -> np.ndarray:
    """(n, H, W) from (n, H, W) or (n, H, W, 1) images."""
    array = np.asarray(images, dtype=np.float64)
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise ValueError(f"{what}: expected grayscale images (n, H, W[, 1]), got {array.shape}")
    return array


#: Up to this many runs, the overlay names each run in a legend beside the plot, in distinct
#: colours (tab10, then tab20); beyond it a legend would be taller than the plot and colours
#: would repeat, so the runs are coloured along a colormap, with a colour bar of their order.
LEGEND_RUNS = 12
#: The overlay's size in inches, whatever the number of runs (the legend never grows it).
OVERLAY_SIZE = (8.0, 4.5)


def run_colours(n: int) -> list[Any]:
    """``n`` distinct colours: tab10 up to 10 runs, tab20 up to ``LEGEND_RUNS`` (which is at
    most 20), else ``n`` points along viridis (what the colour bar shows)."""
    if n <= 10:
        return [pyplot().get_cmap("tab10")(i) for i in range(n)]
    if n <= LEGEND_RUNS:
        return [pyplot().get_cmap("tab20")(i) for i in range(n)]
    return [pyplot().get_cmap("viridis")(i / (n - 1)) for i in range(n)]


def overlaid_curves_png(curves: Sequence[tuple[str, Sequence[Any]]], title: str = "") -> bytes:
    """``overlaid_curves_figure`` as PNG bytes."""
    return figure_png(overlaid_curves_figure(curves, title))


def overlaid_curves_figure(
    curves: Sequence[tuple[str, Sequence[Any]]], title: str = ""
) -> plt.Figure:
    """The learning curves of several runs in one figure: per run, the training cost (solid)
    and the validation cost (dashed, where evaluated) against epoch, one colour per run.
    ``curves`` holds (label, history) with records of epoch, cost and val_cost.

    Up to ``LEGEND_RUNS`` runs, a legend beside the plot names each run's colour; beyond, a
    colour bar numbers the runs in the order given (the comparison table's). The y axis is
    logarithmic when the costs span more than 50x, the x axis when the longest run has more
    than 20x the epochs of the shortest (so a 200-epoch run beside an 8,000-epoch one is not a
    sliver)."""
    from matplotlib.lines import Line2D

    fig, ax = pyplot().subplots(figsize=OVERLAY_SIZE)
    colours = run_colours(len(curves))
    named = len(curves) <= LEGEND_RUNS
    costs: list[float] = []
    lengths: list[int] = []
    for (label, history), colour in zip(curves, colours, strict=True):
        train = [r for r in history if r.cost is not None]
        val = [r for r in history if r.val_cost is not None]
        width = 1.5 if named else 1.0
        if train:
            ax.plot(
                [r.epoch for r in train],
                [r.cost for r in train],
                color=colour,
                linewidth=width,
                label=literal(label),
                **markers(len(train)),
            )
        if val:
            ax.plot(
                [r.epoch for r in val],
                [r.val_cost for r in val],
                color=colour,
                linewidth=width,
                linestyle="--",
                label=None if train else literal(label),
                **markers(len(val)),
            )
        costs += [r.cost for r in train] + [r.val_cost for r in val]
        if history:
            lengths.append(max(r.epoch for r in history))
    if costs and 0 < min(costs) and max(costs) < 1e100 and max(costs) / min(costs) > 50:
        ax.set_yscale("log")
    if lengths and min(lengths) > 0 and max(lengths) / min(lengths) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy cost J")
    ax.grid(alpha=0.3)
    if not costs:
        ax.text(0.5, 0.5, "no learning curves", ha="center", va="center", transform=ax.transAxes)
    else:
        styles = [
            Line2D([], [], color="0.3", label="train J"),
            Line2D([], [], color="0.3", linestyle="--", label="val J"),
        ]
        if named:
            handles = ax.get_legend_handles_labels()[0]
            ax.legend(
                handles=[*handles, *styles],
                fontsize=8,
                loc="upper left",
                bbox_to_anchor=(1.02, 1.0),
                borderaxespad=0.0,
            )
        else:
            ax.legend(handles=styles, fontsize=8)
            _run_colour_bar(fig, ax, len(curves))
    ax.set_title(literal(title or "learning curves"))
    return fig


def _run_colour_bar(fig: plt.Figure, ax: Any, n: int) -> None:
    """A colour bar beside ``ax`` from run 1 to run ``n`` (viridis, as ``run_colours``)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    scale = ScalarMappable(norm=Normalize(1, n), cmap=pyplot().get_cmap("viridis"))
    fig.colorbar(scale, ax=ax, label=f"run (1 to {n}, in the table's order)")


def plot_sweep(
    frame: Any, params: Sequence[str], metric: str, path: Path, title: str, label: str
) -> None:
    """Write ``sweep_png`` atomically to ``path``."""
    _write_png(sweep_png(frame, params, metric, title, label), path)


def sweep_png(frame: Any, params: Sequence[str], metric: str, title: str, label: str) -> bytes:
    """A sweep's ``metric`` over its grid (``frame``: one row per point, a column per
    parameter): a heatmap for two parameters, else one line per combination of the other
    parameters against the first (categorical x). Missing points (failed, not sampled) are
    blank."""
    cells = frame.assign(**{p: frame[p].map(str) for p in params})
    values = cells[metric].astype(float)
    first = list(dict.fromkeys(cells[params[0]]))
    if len(params) == 2:
        second = list(dict.fromkeys(cells[params[1]]))
        grid = np.full((len(second), len(first)), np.nan)
        for x, y, v in zip(cells[params[0]], cells[params[1]], values, strict=True):
            grid[second.index(y), first.index(x)] = v
        fig, ax = pyplot().subplots(figsize=(1.6 + 1.1 * len(first), 1.4 + 0.6 * len(second)))
        image = ax.imshow(grid, cmap="viridis", aspect="auto")
        for (i, j), v in np.ndenumerate(grid):
            if not np.isnan(v):
                shade = "white" if v < np.nanmean(grid) else "black"
                ax.text(j, i, f"{v:.3f}", ha="center", va="center", color=shade, fontsize=8)
        ax.set_xticks(range(len(first)), [literal(v) for v in first])
        ax.set_yticks(range(len(second)), [literal(v) for v in second])
        ax.set_xlabel(literal(params[0]))
        ax.set_ylabel(literal(params[1]))
        fig.colorbar(image, ax=ax, label=literal(label))
    else:
        fig, ax = pyplot().subplots(figsize=(7, 4))
        rest = list(params[1:])
        groups = cells.groupby(rest, sort=False) if rest else [((), cells)]
        for key, group in groups:
            xs = [first.index(v) for v in group[params[0]]]
            order = np.argsort(xs)
            name = ", ".join(f"{p}={k}" for p, k in zip(rest, np.atleast_1d(key), strict=True))
            ax.plot(
                np.array(xs)[order],
                group[metric].astype(float).to_numpy()[order],
                marker="o",
                label=literal(name) if name else None,
            )
        ax.set_xticks(range(len(first)), [literal(v) for v in first])
        ax.set_xlabel(literal(params[0]))
        ax.set_ylabel(literal(label))
        if rest:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    ax.set_title(literal(f"sweep {title}"))
    return figure_png(fig)


def lr_find_png(
    lrs: np.ndarray,
    costs: np.ndarray,
    smoothed: np.ndarray,
    suggested: float | None,
    configured: float | None = None,
    title: str = "",
) -> bytes:
    """The learning-rate range test (``lr_find.py``) as PNG bytes: each update's cost (thin)
    and the smoothed cost (bold) against the rate, on a log axis; the suggested rate marked
    (a dot on the smoothed cost, a vertical line), the spec's ``train.lr`` dashed.

    The y axis stops a little above the smoothed cost's highest value before its lowest point:
    the costs of a diverging rate (up to NaN or 1e30) would flatten everything else."""
    lrs, costs, smoothed = (np.asarray(a, dtype=np.float64) for a in (lrs, costs, smoothed))
    fig, ax = pyplot().subplots(figsize=(8, 4.5))
    ax.plot(lrs, costs, color="tab:blue", alpha=0.35, linewidth=0.8, label="cost of each batch")
    ax.plot(lrs, smoothed, color="tab:blue", linewidth=2, label="smoothed cost")
    finite = np.isfinite(smoothed)
    if finite.any():
        lowest = int(np.argmin(np.where(finite, smoothed, np.inf)))
        before = smoothed[: lowest + 1][finite[: lowest + 1]]
        seen = np.concatenate([before, costs[np.isfinite(costs)]])
        top, bottom = float(before.max()), float(seen.min())
        span = max(top - bottom, 1e-12)
        ax.set_ylim(bottom - 0.05 * span, top + 0.25 * span)
    if suggested is not None:
        at = int(np.argmin(np.abs(np.log(lrs / suggested))))
        ax.axvline(suggested, color="tab:red", linewidth=1)
        ax.plot(
            [suggested],
            [smoothed[at]],
            "o",
            color="tab:red",
            label=f"suggested lr = {suggested:.2g}",
        )
    if configured is not None:
        ax.axvline(
            configured,
            color="0.3",
            linestyle="--",
            linewidth=1,
            label=f"the spec's train.lr = {configured:g}",
        )
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (one update each, growing exponentially)")
    ax.set_ylabel("cross-entropy cost J")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(literal(title or "learning-rate range test"))
    return figure_png(fig)


#: Karpathy's rule of thumb for the update ratio lr*|dW|/|W|: about 1e-3 is healthy (the same
#: reference ``diagnose.py`` judges by); drawn dashed on the update-ratio panel.
UPDATE_RATIO_REFERENCE = 1e-3


def gradient_flow_png(rows: Sequence[DiagnosticsRow], title: str) -> bytes:
    """``gradient_flow_figure`` as PNG bytes."""
    return figure_png(gradient_flow_figure(rows, title))


def gradient_flow_figure(rows: Sequence[DiagnosticsRow], title: str = "") -> plt.Figure:
    """The gradient flow of a run from its diagnostics.csv rows (``records.DiagnosticsRow``):
    each weight layer's gradient norm ||dJ/dW|| on the probe (left) and its update ratio
    lr*|dW|/|W| (right, with Karpathy's 1e-3 dashed) against the probe epochs, one line per
    layer ("layer i (kind)", the same colour in both panels, one legend below them), both on a
    log scale.

    A weight layer is one with a weight norm, gradient norm or update ratio in any row. Values
    a log scale cannot show (None, NaN, infinite, 0 or below) are left out; a panel with no
    value left says so."""
    from matplotlib.ticker import MaxNLocator

    layers: dict[int, list[DiagnosticsRow]] = {}
    for row in rows:
        if any(v is not None for v in (row.weight_norm, row.grad_norm, row.update_ratio)):
            layers.setdefault(row.layer, []).append(row)
    colours = run_colours(len(layers))
    fig, (ax_grad, ax_ratio) = pyplot().subplots(1, 2, figsize=(10, 4))
    panels = (
        (ax_grad, "grad_norm", "gradient norm ||dJ/dW|| on the probe", "no gradient norms"),
        (ax_ratio, "update_ratio", "update ratio lr*|dW|/|W|", "no update ratios"),
    )
    for ax, attribute, ylabel, nothing in panels:
        drawn = False
        for (layer, layer_rows), colour in zip(sorted(layers.items()), colours, strict=True):
            points = sorted(
                (r.epoch, float(v))
                for r in layer_rows
                if (v := _positive(getattr(r, attribute))) is not None
            )
            if not points:
                continue
            ax.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                color=colour,
                label=literal(f"layer {layer} ({layer_rows[0].kind})"),
                **markers(len(points)),
            )
            drawn = True
        if attribute == "update_ratio":
            ax.axhline(
                UPDATE_RATIO_REFERENCE,
                color="0.3",
                linestyle="--",
                linewidth=1,
                label="1e-3 (rule of thumb)",
            )
        if drawn or attribute == "update_ratio":  # the reference line is on a log scale too
            ax.set_yscale("log")
        if not drawn:
            ax.text(0.5, 0.75, nothing, ha="center", va="center", transform=ax.transAxes)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs: never 0.98, 1.02
        ax.set_xlabel("epoch (0: the initial weights)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both" if drawn else "major")
    legend: dict[str, Any] = {}  # label -> handle: each layer once (one colour in both panels)
    for ax, _, _, _ in panels:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    fig.legend(
        list(legend.values()),
        list(legend.keys()),
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=min(len(legend), 4),
        fontsize=8,
        frameon=False,
    )
    fig.suptitle(literal(title or "gradient flow"))
    return fig


#: Values are drawn within these bounds (beyond, at them): a log axis spanning 1e-300 to
#: 1e300 overflows matplotlib when it pads the view.
LOG_FLOOR, LOG_CEILING = 1e-200, 1e200


def _positive(value: object) -> float | None:
    """``value`` as a float when it is a finite number above 0 (what a log scale can show),
    within ``LOG_FLOOR`` and ``LOG_CEILING``; else None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(number) and number > 0):
        return None
    return min(max(number, LOG_FLOOR), LOG_CEILING)
