"""The live learning curve (report/plots.py): redrawn every ``every`` seconds at most, and a
slow drawing pushes the next one back so that drawing never takes more than 1/SHARE of the
time (a fake clock: drawing takes what the test says)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scratchnn_cli.report import plots


def test_a_slow_drawing_pushes_the_next_one_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [0.0]
    drawn: list[float] = []
    draw_seconds = [0.1]

    def draw(history: list, path: Path, title: str) -> None:
        drawn.append(clock[0])
        clock[0] += draw_seconds[0]

    monkeypatch.setattr(plots.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(plots, "plot_learning_curve", draw)
    curve = plots.LiveLearningCurve(tmp_path / "learning_curve.png", "t", every=5.0)
    for epoch in range(400):  # an epoch every 0.25 s
        clock[0] += 0.25
        if epoch == 100:
            draw_seconds[0] = 1.0  # the history has grown: a drawing now takes 1 s
        curve.update(epoch)
    assert drawn[:3] == pytest.approx([5.0, 10.1, 15.2])  # fast drawings: 5 s after the last
    slow = [t for t in drawn if t > 26]
    gaps = [b - a for a, b in zip(slow, slow[1:], strict=False)]
    assert gaps and all(gap >= 1.0 + plots.LiveLearningCurve.SHARE * 1.0 for gap in gaps)
    assert len(curve.history) == 400
