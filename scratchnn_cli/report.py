"""Plots and tables of a run: learning curve, confusion matrix (PNG, via matplotlib Agg; Rich)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from rich.table import Table  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402

from scratchnn_cli.runs import atomic_write  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def plot_learning_curve(
    epochs: Sequence[int], costs: Sequence[float], path: Path, title: str = ""
) -> None:
    """Epoch cost J against epoch, written atomically to ``path``."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, costs, label="train cost J (epoch mean)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy cost J")
    if len(costs) and min(costs) > 0 and max(costs) / min(costs) > 50:
        ax.set_yscale("log")
    ax.set_title(title or "learning curve")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def plot_confusion_matrix(
    matrix: np.ndarray, class_names: Sequence[str], path: Path, title: str = ""
) -> None:
    """Confusion matrix (rows: true class, columns: predicted) with class names on the axes."""
    k = len(class_names)
    size = max(4.0, 0.6 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    display = ConfusionMatrixDisplay(np.asarray(matrix), display_labels=list(class_names))
    display.plot(ax=ax, cmap="Blues", colorbar=False, xticks_rotation=45 if k > 3 else "horizontal")
    ax.set_title(title or "confusion matrix")
    _save(fig, path)


def confusion_table(matrix: np.ndarray, class_names: Sequence[str], title: str = "") -> Table:
    """A Rich table of the confusion matrix: rows true class, columns predicted class."""
    table = Table(title=title or None, show_lines=False)
    table.add_column("true \\ predicted", style="bold")
    for name in class_names:
        table.add_column(str(name), justify="right")
    for name, row in zip(class_names, np.asarray(matrix), strict=True):
        table.add_row(str(name), *(str(int(v)) for v in row))
    return table
