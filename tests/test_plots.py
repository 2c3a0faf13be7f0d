"""report/plots.py: the learning curve (live and final), overlaid curves, and pictures that
cannot be drawn (they never cost a run)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from helpers import SMALL_CONFIG, invoke, read_json

from scratchnn_cli.compare import CurvePoint
from scratchnn_cli.records import EpochRecord
from scratchnn_cli.report import plots

# --------------------------------------------------------------------------- pictures that fail


def test_a_picture_that_cannot_be_drawn_never_costs_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every PNG fails to draw: the run still completes with its model and scores, and says
    which pictures are missing (a failing plot failed the whole run, with no model.npz)."""
    from scratchnn_cli.report import plots

    def broken(fig: object) -> bytes:
        raise RuntimeError("no fonts today")

    monkeypatch.setattr(plots, "figure_png", broken)
    config = tmp_path / "c.yaml"
    config.write_text(SMALL_CONFIG.format(name="nopng", max_iterations=400), encoding="utf-8")
    result = invoke("train", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    run_dir = next((tmp_path / "runs").iterdir())
    assert read_json(run_dir / "run.json")["status"] == "completed"
    assert (run_dir / "model.npz").is_file() and (run_dir / "metrics.json").is_file()
    assert not list(run_dir.glob("*.png"))
    said = " ".join(result.output.split())
    for name in ("learning_curve.png", "confusion_matrix.png"):
        assert f"note: {name} not drawn (RuntimeError: no fonts today)" in said, said


@pytest.mark.slow
def test_a_bad_mplbackend_is_ignored(tmp_path: Path) -> None:
    """MPLBACKEND=nonsense made matplotlib raise on import, after a whole run had trained."""
    import subprocess
    import sys

    config = tmp_path / "c.yaml"
    config.write_text(SMALL_CONFIG.format(name="mpl", max_iterations=200), encoding="utf-8")
    env = {**os.environ, "MPLBACKEND": "nonsense"}
    command = [str(Path(sys.executable).parent / "scratchnn"), "train", str(config)]
    proc = subprocess.run(
        [*command, "--runs-dir", str(tmp_path / "runs")], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    run_dir = next((tmp_path / "runs").iterdir())
    assert (run_dir / "learning_curve.png").is_file() and (run_dir / "model.npz").is_file()


# ------------------------------------------------------------------------ overlaid and short curves


def curve(k: int, epochs: int = 50) -> list[CurvePoint]:
    return [CurvePoint(e, 1 / (e + k), 1.2 / (e + k)) for e in range(1, epochs + 1)]


@pytest.mark.slow
def test_an_overlay_of_many_runs_has_no_run_legend_and_distinct_colours() -> None:
    fig = plots.overlaid_curves_figure([(f"run {k}", curve(k)) for k in range(200)])
    ax = fig.axes[0]
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == ["train J", "val J"]  # the line styles only
    assert len(fig.axes) == 2  # and a colour bar of the runs' order
    assert tuple(fig.get_size_inches()) == plots.OVERLAY_SIZE
    colours = {tuple(line.get_color()) for line in ax.get_lines()}
    assert len(colours) == 200
    png = plots.figure_png(fig)
    width, height = struct.unpack(">II", png[16:24])
    assert 600 < width < 1000 and 350 < height < 600, (width, height)


def test_an_overlay_of_a_few_runs_names_each_once() -> None:
    fig = plots.overlaid_curves_figure([(f"run {k}", curve(k)) for k in range(5)])
    legend = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    assert legend == [f"run {k}" for k in range(5)] + ["train J", "val J"]
    assert len(fig.axes) == 1
    colours = [tuple(line.get_color()) for line in fig.axes[0].get_lines()]
    assert len(set(colours)) == 5  # train and val of a run share its colour
    plots.pyplot().close(fig)


def test_a_one_epoch_learning_curve_draws_its_points() -> None:
    one = [EpochRecord(1, 200, 0.5, 0.8, 0.1, 1.0, val_cost=0.6, val_accuracy=0.7)]
    fig = plots.learning_curve_figure(one)
    lines = [line for ax in fig.axes for line in ax.get_lines()]
    assert len(lines) == 4 and {line.get_marker() for line in lines} == {"o"}
    plots.pyplot().close(fig)
    many = [EpochRecord(e, e, 0.5, 0.8, 0.1, 1.0) for e in range(1, 101)]
    fig = plots.learning_curve_figure(many)
    assert {line.get_marker() for ax in fig.axes for line in ax.get_lines()} == {"None"}
    plots.pyplot().close(fig)


# --------------------------------------------------------------------------- the live curve


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
