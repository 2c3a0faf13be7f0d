"""``data.classes``: which classes to keep, checked against a list of class names.

:func:`resolve_classes` needs only the names, so the built-ins (whose names are known up front)
are checked before any file is read or downloaded; :func:`select_classes` then keeps the rows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from scratchnn_cli.data.raw import RawData
from scratchnn_cli.errors import DataError

_INTEGER = re.compile(r"-?\d+")


def resolve_classes(names: Sequence[str], wanted: Sequence[str | int], dataset: str) -> list[int]:
    """Label numbers (indices into ``names``) of the ``wanted`` classes, in the order listed.

    An entry is a class name, or an integer: the label value as written in the data when every
    name is an integer ("-1", "7"), else the label number 0..k-1. An unknown entry or one listed
    twice raises one :class:`DataError` line that lists the available classes.
    """
    names = list(names)
    numeric_names = all(_INTEGER.fullmatch(n) for n in names)
    by_value = {int(n) if numeric_names else i: i for i, n in enumerate(names)}
    chosen: list[int] = []
    for entry in wanted:
        text = str(entry)
        if text in names:
            index = names.index(text)
        elif _INTEGER.fullmatch(text.strip()) and int(text) in by_value:
            index = by_value[int(text)]
        else:
            shown = ", ".join(names[:30]) + (", ..." if len(names) > 30 else "")
            numbers = "" if numeric_names else f" (or label numbers 0-{len(names) - 1})"
            raise DataError(
                f"data.classes: unknown class {entry!r} in {dataset}; available: {shown}{numbers}"
            )
        if index in chosen:
            raise DataError(f"data.classes: class '{names[index]}' is listed twice")
        chosen.append(index)
    return chosen


def select_classes(raw: RawData, chosen: Sequence[int]) -> RawData:
    """Keep the rows (and official test rows) of the ``chosen`` label numbers, relabelled
    0..k-1 in the order given."""
    names = raw.class_names
    lookup = np.full(len(names), -1, dtype=np.int64)
    lookup[list(chosen)] = np.arange(len(chosen))
    keep = lookup[raw.y] >= 0
    changes: dict[str, object] = {
        "X": raw.X[keep],
        "y": lookup[raw.y[keep]],
        "class_names": [names[i] for i in chosen],
    }
    if raw.y_test is not None and raw.X_test is not None:
        keep_test = lookup[raw.y_test] >= 0
        changes["X_test"] = raw.X_test[keep_test]
        changes["y_test"] = lookup[raw.y_test[keep_test]]
    return replace(raw, **changes)


def check_class_sizes(raw: RawData, dataset: str) -> None:
    """Every class needs at least 2 rows (one DataError line naming the first that has not)."""
    counts = np.bincount(raw.y, minlength=len(raw.class_names))
    small = [(name, int(n)) for name, n in zip(raw.class_names, counts, strict=True) if n < 2]
    if small:
        name, n = small[0]
        raise DataError(
            f"{dataset}: class '{name}' has {n} sample{'' if n == 1 else 's'}; "
            "each class needs at least 2"
        )
