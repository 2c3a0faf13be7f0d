"""report/progress.py: the live progress line fits the terminal's width keeping the most useful
fields, and the plain lines (no terminal) carry the ETA."""

from __future__ import annotations

import io

from helpers import render
from rich.console import Console

from scratchnn_cli.records import EpochRecord
from scratchnn_cli.report.progress import TrainingProgress, live_line

RECORD = EpochRecord(
    epoch=123,
    iteration=24_600,
    cost=0.123456,
    train_accuracy=0.9,
    lr=0.1,
    seconds=30.0,
    val_cost=0.2345,
    val_accuracy=0.9123,
)


def test_the_live_line_fits_the_width_keeping_the_most_useful_fields() -> None:
    def shown(width: int) -> str:
        line = live_line(
            "circles_modern", RECORD, 100_000, [1.0, 0.5, 0.2], 0.92, 31.0, 92.0, width
        )
        printed = render(line, width, terminal=True)
        assert printed.count("\n") == 1, printed  # one line: never wrapped
        assert len(printed.rstrip("\n")) <= width, (width, printed)
        return printed

    essentials = ("epoch 123", "J 0.12346", "ETA 0:01:32", "acc 0.9123 (best 0.9200)")
    narrow, medium, wide, widest = shown(60), shown(80), shown(100), shown(200)
    for printed in (narrow, medium, wide, widest):
        assert all(field in printed for field in essentials), printed
    assert "━" not in narrow  # no room for the bar at 60
    assert "━" in medium and "25%" in medium  # a shorter bar at 80
    assert "━" * 24 in wide and "0:00:31" in wide  # the whole bar and the elapsed time
    for field in ("circles_modern", "upd 24,600/100,000", "val J 0.2345", "0:00:31"):
        assert field in widest, widest
    assert "ETA" in shown(40) and "epoch 123" in shown(40)


def test_plain_lines_carry_the_eta() -> None:
    from scratchnn_cli.config import TrainConfig

    console = Console(width=200, file=io.StringIO(), force_terminal=False)
    cfg = TrainConfig(max_iterations=1000, eps=0)
    with TrainingProgress(console, cfg, 200, "small") as progress:  # 1,000 updates planned
        progress(EpochRecord(1, 200, 0.5, 0.8, 0.1, 2.0))
        progress(EpochRecord(2, 400, 0.4, 0.8, 0.1, 4.0))
    lines = console.file.getvalue().splitlines()
    assert lines[0] == "training small: up to 1,000 updates"
    assert lines[1].endswith("2.0s  ETA 0:00:08")  # 2 s for 200 updates: 800 left take 8 s
    assert lines[2].endswith("4.0s")  # the last line, printed once training is over
