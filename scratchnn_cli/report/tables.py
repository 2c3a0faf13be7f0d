"""The terminal's tables, all of them: Rich tables of what the commands print (a network's
layers, a confusion matrix, per-class accuracy, a gradient check, the runs of a folder, a
comparison of runs, the course assignment's results). They take plain records and return
tables; choosing what fits the terminal's width is here too. Every cell from data goes through
``report.text.cell``: shown as written, control characters escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from scratchnn_cli.records import ConfusedPair
from scratchnn_cli.report.text import cell, printable
from scratchnn_cli.runs.listing import SHORT_STOP

if TYPE_CHECKING:
    from scratchnn_cli.compare import Comparison
    from scratchnn_cli.nn.gradcheck import GradCheckRow
    from scratchnn_cli.runs.listing import RangeTestRow, RunGroup, RunRow


# --------------------------------------------------------------------------- a network


def summary_table(net: Any, name: str) -> Table:
    """Keras' ``model.summary()`` as a Rich table: per layer of ``net``, its index, description,
    output shape and parameter count; the title names the input shape."""
    table = Table(title=f"{name}: {shape_text(net.input_shape)} inputs")
    for column in ("#", "layer", "output shape", "params"):
        table.add_column(column, justify="left" if column == "layer" else "right")
    for row in net.summary():
        table.add_row(str(row.index), row.layer, shape_text(row.output_shape), f"{row.params:,}")
    return table


def shape_text(shape: tuple[int, ...]) -> str:
    """One sample's shape as text: ``5``, or ``28x28x1`` for images."""
    return "x".join(map(str, shape))


# --------------------------------------------------------------------------- an evaluation


def confusion_table(matrix: np.ndarray, class_names: Sequence[str], title: str = "") -> Table:
    """A Rich table of the confusion matrix: rows true class, columns predicted class."""
    table = Table(title=cell(title) if title else None, show_lines=False)
    table.add_column("true \\ predicted", style="bold")
    for name in class_names:
        table.add_column(cell(name), justify="right")
    for name, row in zip(class_names, np.asarray(matrix), strict=True):
        table.add_row(cell(name), *(str(int(v)) for v in row))
    return table


def per_class_table(matrix: Any, class_names: Sequence[str], split: str) -> Table:
    """A Rich table: per class, its accuracy (recall: correct / samples of the class) and the
    counts; ``-`` and ``0 / 0`` for a class without samples."""
    import numpy as np

    from scratchnn_cli.metrics import as_confusion_matrix, per_class_accuracy

    mat = as_confusion_matrix(matrix)
    table = Table(title=f"{split} per-class accuracy")
    table.add_column("class", style="bold")
    table.add_column("accuracy", justify="right")
    table.add_column("correct / n", justify="right")
    for c, (name, accuracy) in enumerate(zip(class_names, per_class_accuracy(mat), strict=True)):
        shown = "-" if accuracy is None else f"{accuracy:.4f}"
        counts = f"{int(mat[c, c]):,} / {int(np.sum(mat[c])):,}"
        table.add_row(cell(name), shown, counts)  # a name is never markup nor a control code
    return table


def confused_pair_lines(pairs: Sequence[ConfusedPair]) -> list[str]:
    """``most confused pairs (true -> predicted):`` and a line per pair, e.g.
    ``  Shirt -> T-shirt/top: 112 (11.2% of Shirt)``; or one line saying there are none."""
    if not pairs:
        return ["most confused pairs: none (no errors)"]
    lines = ["most confused pairs (true -> predicted):"]
    for p in pairs:
        share = 100 * p.share_of_true
        lines.append(f"  {p.true} -> {p.predicted}: {p.count:,} ({share:.1f}% of {p.true})")
    return lines


# --------------------------------------------------------------------------- a gradient check


GRADCHECK_COLUMNS = ("layer", "param", "shape", "checked", "max |diff|", "relative error", "")


def gradcheck_table(rows: list[GradCheckRow], tolerance: float, title: str) -> Table:
    """One row per parameter array: its layer (index into the network's layers and
    description, e.g. ``2 dense(4)``), name, shape, how many entries were checked,
    the largest absolute difference, the relative error, and ok / FAIL against ``tolerance``."""
    table = Table(title=title)
    for column in GRADCHECK_COLUMNS:
        table.add_column(column, justify="left" if column in ("layer", "param", "") else "right")
    for r in rows:
        table.add_row(
            f"{r.layer} {r.description}",
            r.param,
            "x".join(map(str, r.shape)),
            str(r.checked),
            f"{r.max_abs_diff:.2e}",
            f"{r.relative_error:.2e}",
            "[green]ok[/]" if r.relative_error <= tolerance else "[bold red]FAIL[/]",
        )
    return table


# --------------------------------------------------------------------------- runs


#: The columns given up, one at a time, while the table is wider than the terminal: the least
#: useful first (the run's name, status and test accuracy always stay).
RUNS_DROP_ORDER = ("val acc", "age", "stopped by")


#: The narrowest a cut run name gets (with its ``…``): enough to tell runs apart by date.
RUN_NAME_MIN = 12


RUNS_COLUMNS = ("run", "status", "test acc", "val acc", "stopped by", "age")


def fitted_runs_table(rows: list[RunRow], title: str, console: Console) -> Table:
    """``runs_table`` as wide as it can be within ``console.width``: first with the stop
    reasons shortened, then without an accuracy column no run has (a sweep's runs have no
    test split: their val acc then stays), then without the columns of ``RUNS_DROP_ORDER`` one
    after the other, and at last with the run names cut (``…``) to what is left of the
    width."""

    def width(table: Table) -> int:
        return Measurement.get(console, console.options.update(width=10_000), table).maximum

    unused = [c for c, key in (("test acc", "test"), ("val acc", "val")) if _none_has(rows, key)]
    kept = {"val acc"} if unused == ["test acc"] else set()  # the one accuracy there is
    order = [*unused, *(c for c in RUNS_DROP_ORDER if c not in unused and c not in kept)]
    variants = [(False, [])] + [(True, order[:k]) for k in range(len(order) + 1)]
    for short, dropped in variants:
        table = runs_table(rows, title, short, dropped)
        if width(table) <= console.width:
            return table
    names = max([cell_len("run")] + [cell_len(printable(r.run)) for r in rows])
    table.columns[0].max_width = max(RUN_NAME_MIN, console.width - (width(table) - names))
    return table


def _none_has(rows: list[RunRow], key: str) -> bool:
    return all(getattr(r, key) is None for r in rows)


def runs_table(
    rows: list[RunRow], title: str, short: bool = False, dropped: Sequence[str] = ()
) -> Table:
    """One row per run: name, status, test and val accuracy ('-' if none), stop reason, age;
    without the columns in ``dropped``, and with ``SHORT_STOP``'s names when ``short``. Only the
    run column may shrink (its names then end in ``…``); no cell ever wraps."""

    table = Table(title=cell(title))
    columns = [c for c in RUNS_COLUMNS if c not in dropped]
    for column in columns:
        justify = "right" if "acc" in column or column == "age" else "left"
        least = None if column == "run" else len(column)  # the others keep their header's width
        table.add_column(
            column, justify=justify, no_wrap=True, overflow="ellipsis", min_width=least
        )
    for r in rows:
        stop = SHORT_STOP.get(r.stopped_by, r.stopped_by) if short else r.stopped_by
        cells = {
            "run": cell(r.run),
            "status": r.status,
            "test acc": "-" if r.test is None else f"{r.test:.4f}",
            "val acc": "-" if r.val is None else f"{r.val:.4f}",
            "stopped by": stop,
            "age": r.age,
        }
        table.add_row(*(cells[c] for c in columns))
    return table


def groups_table(groups: list[RunGroup], runs_dir: Path) -> Table:
    """One row per folder of runs in ``runs_dir``: its name, how many runs it holds and how
    many have each status; the title says how to list one's runs."""
    example = printable(Path(runs_dir) / "FOLDER")
    title = f"folders of runs in {printable(runs_dir)}: list one with scratchnn runs {example}"
    table = Table(title=cell(title))
    table.add_column("folder", no_wrap=True, overflow="ellipsis")
    table.add_column("runs", justify="right", no_wrap=True)
    table.add_column("statuses", min_width=len("statuses"))
    for group in groups:
        statuses = ", ".join(f"{n} {status}" for status, n in sorted(group.statuses.items()))
        table.add_row(cell(f"{group.path.name}/"), f"{group.runs:,}", statuses)
    return table


def range_tests_table(rows: list[RangeTestRow], runs_dir: Path) -> Table:
    """One row per learning-rate range test in ``runs_dir``: its folder, the rate it suggested
    beside the spec's, its age; the title says where its curve is."""
    title = f"learning-rate range tests in {printable(runs_dir)} (each folder's lr_find.png)"
    table = Table(title=cell(title))
    table.add_column("folder", no_wrap=True, overflow="ellipsis")
    for column in ("suggested lr", "spec's lr", "age"):
        table.add_column(column, justify="right", no_wrap=True, min_width=len(column))

    def rate(value: float | None) -> str:
        return "-" if value is None else f"{value:.2g}"

    for r in rows:
        table.add_row(cell(f"{r.folder}/"), rate(r.suggested_lr), rate(r.configured_lr), r.age)
    return table


# --------------------------------------------------------------------------- a comparison


def comparison_table(comparison: Comparison, transposed: bool = False) -> Table:
    """The Rich table of a comparison: one row per run; every cell is ``report.text.cell`` (never
    markup, control characters escaped: names and values come from the run folders)."""

    from scratchnn_cli.compare import RESULT_COLUMNS

    n = len(comparison.runs)
    shown = "every config key" if comparison.all_keys else "config keys that differ"
    table = Table(title=f"{n} run{'s' if n != 1 else ''} ({shown}: {len(comparison.keys)})")
    numeric = set(RESULT_COLUMNS) - {"status"}
    if transposed:
        rows = comparison.display_rows()
        table.add_column("", style="bold")
        for row in rows:
            table.add_column(cell(row[0]), justify="right", no_wrap=True)
        for i, column in enumerate(comparison.columns[1:], start=1):
            table.add_row(cell(column), *(cell(row[i]) for row in rows))
        return table
    for column in comparison.columns:
        justify = "right" if column in numeric else "left"
        table.add_column(cell(column), justify=justify, no_wrap=True)
    for row in comparison.display_rows():
        table.add_row(*(cell(text) for text in row))
    return table


# --------------------------------------------------------------------------- the assignment


#: The narrowest an experiment's name gets in the terminal's table (with its ``…``).
EXPERIMENT_NAME_MIN = 16


#: The terminal table's layouts, the roomiest first: (padding, with the seconds column). The
#: seconds are also on each experiment's finish line and in summary.md, so they go first.
TABLE_LAYOUTS = ((1, True), (0, True), (0, False))


def reproduce_table(rows: Sequence[Any], width: int) -> Table:
    """The summary as a Rich table for a terminal ``width`` columns wide, one line per
    experiment: the first of ``TABLE_LAYOUTS`` that fits, else the narrowest with the names
    cut (``…``) to the width left. The data each read is in the caption; the stop reasons
    and run folders are left to summary.md."""

    console = Console(width=10_000)
    for padding, seconds in TABLE_LAYOUTS:
        table = _reproduce_table(rows, padding, seconds)
        wide = Measurement.get(console, console.options, table).maximum
        if wide <= width:
            return table
    names = max([cell_len("experiment")] + [cell_len(printable(r.experiment)) for r in rows])
    table.columns[1].max_width = max(EXPERIMENT_NAME_MIN, width - (wide - names))
    return table


def _reproduce_table(rows: Sequence[Any], padding: int, seconds: bool) -> Table:
    """The terminal's summary table: ``padding`` spaces each side of a cell (beside the one
    between columns), with or without the ``seconds`` column."""
    table = Table(
        title="course assignment: reported vs ours (accuracy)",
        caption=_data_caption(rows),
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, padding),
        collapse_padding=True,
    )
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("experiment", no_wrap=True, overflow="ellipsis")
    for split in ("val", "test"):
        table.add_column(f"{split}\nrep.", justify="right", no_wrap=True)
        table.add_column(f"{split}\nours", justify="right", no_wrap=True)
    table.add_column("stop", no_wrap=True)
    if seconds:
        table.add_column("s", justify="right", no_wrap=True)
    for r in rows:
        scores = (r.reported_val, r.ours_val, r.reported_test, r.ours_test)
        cells = [str(r.id), cell(r.experiment), *map(accuracy_text, scores), cell(short_stop(r))]
        if seconds:
            cells.append("-" if r.seconds is None else f"{r.seconds:.0f}")
        table.add_row(*cells)
    return table


def _data_caption(rows: Sequence[Any]) -> Text:
    """Which data each experiment read: ``data: #1 #3 course CSV (blobs400.csv); ...``, and
    where the details are."""
    ids: dict[str, list[str]] = {}
    for r in rows:
        ids.setdefault(r.data, []).append(f"#{r.id}")
    data = "; ".join(f"{' '.join(numbers)} {printable(name)}" for name, numbers in ids.items())
    return Text(f"data: {data}. Stop reasons and run folders: summary.md")


def short_stop(row: Any) -> str:
    """One word or two for how an experiment ended: the stop rule of a completed one
    (``max iter``, ``eps``...), else its status without the reason (``skipped``, ``failed``);
    summary.md has the whole reason."""
    if row.status == "completed" and row.stopped_by:
        return SHORT_STOP.get(row.stopped_by, row.stopped_by)
    return row.status.split(":")[0]


def accuracy_text(value: float | None) -> str:
    """An accuracy to 3 decimals, or ``-`` for none."""
    return "-" if value is None else f"{value:.3f}"
