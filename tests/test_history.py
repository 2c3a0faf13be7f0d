"""runs/history.py: history.csv is written and read back in one place, to the same records."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from scratchnn_cli.errors import RunFolderError
from scratchnn_cli.records import EpochRecord
from scratchnn_cli.runs.history import append_history, history_csv, read_history

RECORDS = [
    EpochRecord(1, 200, 0.6931471805599453, 0.5, 0.1, 0.012, 0.7, 0.49),
    EpochRecord(2, 400, 1 / 3, 0.75, 0.1, 0.024),  # no validation: None
    EpochRecord(3, 600, math.inf, 0.5, 0.1, 0.036, math.inf, 0.5),
    EpochRecord(4, 800, math.nan, 0.5, 0.05, 0.048, math.nan, 0.5),
]


def same(a: EpochRecord, b: EpochRecord) -> bool:
    """Equal field by field, NaN equal to NaN."""
    return all(
        x == y
        or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
        for x, y in zip(vars(a).values(), vars(b).values(), strict=True)
    )


def test_the_records_read_back_are_the_records_written(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    path.write_text(history_csv(RECORDS[:2]))
    append_history(path, RECORDS[2:])
    back = read_history(path)
    assert len(back) == 4 and all(same(a, b) for a, b in zip(back[:3], RECORDS[:3], strict=True))
    assert back[1].val_cost is None and back[1].val_accuracy is None  # not evaluated
    assert back[0].cost == 0.6931471805599453  # to the last bit, not 10 digits
    # a NaN validation cost reads back as missing (pandas' convention: an empty cell)
    assert back[3].val_cost is None and math.isnan(back[3].cost)


def test_rows_after_the_checkpoint_and_a_half_written_row_are_left_out(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    path.write_text(history_csv(RECORDS[:3]) + "4,800,0.5,0.")  # an append cut short
    assert [r.epoch for r in read_history(path)] == [1, 2, 3]
    assert [r.epoch for r in read_history(path, rows=2)] == [1, 2]
    with pytest.raises(RunFolderError, match="3 rows, but the checkpoint was saved after 4"):
        read_history(path, rows=4)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("epoch,cost\n1,0.5\n", "not a history.csv"),
        (history_csv([]) + "1,200,x,0.5,,,0.1,0.01\n", "line 2 is not a row of numbers"),
        (history_csv([]) + "1,200,0.5\n", "line 2 has 3 cells, not 8"),
    ],
)
def test_a_file_it_did_not_write_is_refused_in_one_line(
    tmp_path: Path, text: str, said: str
) -> None:
    path = tmp_path / "history.csv"
    path.write_text(text)
    with pytest.raises(RunFolderError, match=said):
        read_history(path)
