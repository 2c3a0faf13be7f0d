"""CSV files: numeric feature columns plus one label column.

:func:`read_csv` runs one short check per way a file can be unusable, in this order: it cannot be
read or parsed, a name is given to two columns, it has fewer than two columns, no data rows, no
such label column, missing values, non-numeric features, infinite features, labels that are not
integers or text, a single class.
Each problem is one :class:`DataError` line naming the file (and the column and line if known).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from scratchnn_cli.data.raw import RawData
from scratchnn_cli.data.scaling import nonfinite_columns
from scratchnn_cli.errors import DataError, one_line

if TYPE_CHECKING:  # pandas is imported where used: it is slow to import
    import pandas as pd


def read_csv(path: Path, target: str | None) -> RawData:
    """Read a CSV: every column but ``target`` (default: the last) is a numeric feature."""
    df = _parse(path)
    _check_distinct_names(_header(path), path)
    columns = [str(c) for c in df.columns]
    df.columns = columns
    _check_has_rows_and_columns(df, path)
    target = _label_column(columns, target, path)
    features = [c for c in columns if c != target]
    _check_no_missing_values(df, path)
    _check_numeric_features(df, features, target, path)
    X = df[features].to_numpy(dtype=np.float64)
    _check_finite_features(X, features, path)
    y, class_names = _encode_labels(df[target], path)
    _check_two_classes(class_names, target, path)
    return RawData(
        X=X,
        y=y,
        class_names=class_names,
        feature_names=features,
        source=f"CSV file {path} (label column '{target}')",
    )


def _parse(path: Path, **options: object) -> pd.DataFrame:
    """``pd.read_csv(path, **options)``; its errors one DataError line each."""
    import pandas as pd

    try:
        return pd.read_csv(path, **options)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the CSV file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: cannot parse the CSV file: {one_line(exc)}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the CSV file: {one_line(exc)}") from None


def _header(path: Path) -> list[str]:
    """The header's names as written: ``pd.read_csv`` renames a repeated name (the second
    ``Class`` becomes ``Class.1``, which would then train as a feature), so the first row is read
    again as plain text, by the same parser (same quoting, encoding and separator)."""
    first = _parse(path, header=None, nrows=1, dtype=str, keep_default_na=False)
    return [str(name) for name in first.iloc[0]] if len(first) else []


def _check_distinct_names(names: list[str], path: Path) -> None:
    """Refuse a header that gives a name to more than one column, naming each such name and its
    columns (1 = the first); empty names are pandas' 'Unnamed: k', distinct already."""
    columns: dict[str, list[int]] = {}
    for number, name in enumerate(names, start=1):
        if name.strip():
            columns.setdefault(name, []).append(number)
    repeated = [
        f"{name!r} (columns {', '.join(map(str, where))})"
        for name, where in columns.items()
        if len(where) > 1
    ]
    if repeated:
        raise DataError(
            f"{path}: the header gives the same name to several columns: {'; '.join(repeated)}; "
            "give each column its own name"
        )


def _check_has_rows_and_columns(df: pd.DataFrame, path: Path) -> None:
    columns = list(df.columns)
    if len(columns) < 2:
        raise DataError(
            f"{path}: needs at least two columns (features and a label), found {len(columns)}: "
            f"{', '.join(columns)}"
        )
    if len(df) == 0:
        raise DataError(f"{path}: the CSV file has a header but no data rows")


def _label_column(columns: list[str], target: str | None, path: Path) -> str:
    """``target``, or the last column when it is None; refused when there is no such column."""
    target = columns[-1] if target is None else target
    if target not in columns:
        raise DataError(
            f"{path}: target column '{target}' not found; columns are: {', '.join(columns)}"
        )
    return target


def _check_no_missing_values(df: pd.DataFrame, path: Path) -> None:
    """Refuse empty cells, naming each column with its count and the first line (1 = header)."""
    missing = df.isna()
    if not missing.to_numpy().any():
        return
    parts = []
    for column in df.columns:
        rows = np.flatnonzero(missing[column].to_numpy())
        if len(rows):
            plural = "s" if len(rows) > 1 else ""
            parts.append(f"'{column}' ({len(rows)} row{plural}, first on line {rows[0] + 2})")
    raise DataError(f"{path}: missing values in column {', '.join(parts)}")


def _check_numeric_features(df: pd.DataFrame, features: list[str], target: str, path: Path) -> None:
    import pandas as pd

    non_numeric = [c for c in features if not pd.api.types.is_numeric_dtype(df[c])]
    if non_numeric:
        parts = [f"'{c}' (e.g. {_first_non_number(df[c])})" for c in non_numeric]
        raise DataError(
            f"{path}: non-numeric feature column{'s' if len(parts) > 1 else ''} "
            f"{', '.join(parts)}; features must be numbers (the label column is '{target}', "
            "set data.target to choose another)"
        )


def _first_non_number(column: pd.Series) -> str:
    """The first cell of ``column`` that is not a number, and its line: "'red' on line 5"."""
    import pandas as pd

    bad = pd.to_numeric(column, errors="coerce").isna().to_numpy()
    row = int(np.flatnonzero(bad)[0]) if bad.any() else 0
    return f"{str(column.iloc[row])!r} on line {row + 2}"


def _check_finite_features(X: np.ndarray, features: list[str], path: Path) -> None:
    bad = [features[c] for c in nonfinite_columns(X)]
    if bad:
        raise DataError(f"{path}: infinite values in column {', '.join(map(repr, bad))}")


def _encode_labels(column: pd.Series, path: Path) -> tuple[np.ndarray, list[str]]:
    """Labels 0..k-1 and their names: integers in numeric order, text in sorted order; floats
    must be whole numbers (1.0 is the label 1)."""
    import pandas as pd

    values = column
    if pd.api.types.is_float_dtype(values):
        as_float = values.to_numpy(dtype=np.float64)
        fractional = as_float[~np.isfinite(as_float) | (as_float != np.round(as_float))]
        if len(fractional):
            raise DataError(
                f"{path}: label column '{column.name}' holds non-integer values "
                f"(e.g. {fractional[0]:g}); labels must be integers or text "
                "(set data.target to choose another column)"
            )
        values = values.astype(np.int64)
    elif not pd.api.types.is_integer_dtype(values):
        values = values.astype(str)
    codes, uniques = pd.factorize(values, sort=True)
    return codes.astype(np.int64), [str(u) for u in uniques]


def _check_two_classes(class_names: list[str], target: str, path: Path) -> None:
    if len(class_names) < 2:
        raise DataError(
            f"{path}: label column '{target}' holds a single class ('{class_names[0]}'); "
            "a classifier needs at least two"
        )
