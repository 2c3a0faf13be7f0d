"""What the commands show and write outside run folders (issue 18): the user's output paths
(written through, never replaced), data-derived text in the terminal (never control codes),
the live progress line, reproduce's and runs' tables at 80 columns, compare's page and plot,
the learning curve of a short run and a sweep's summary without cross-validation.

Every file written here is under tmp_path: no real /dev node is ever a target (CI runs as root,
and a regression would replace it)."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import select
import shutil
import stat
import struct
import threading
import tty
from pathlib import Path
from typing import Any

import pytest
from helpers import SMALL_CONFIG, TINY_SWEEP, assert_one_line_error, invoke
from rich.console import Console

from scratchnn_cli.cli import output
from scratchnn_cli.compare import CurvePoint, to_html
from scratchnn_cli.compare import compare as compare_runs
from scratchnn_cli.records import EpochRecord
from scratchnn_cli.report import plots
from scratchnn_cli.report.progress import SweepProgress, TrainingProgress, live_line

ROOT = Path(__file__).resolve().parents[1]
ESC = "\x1b"


def render(renderable: Any, width: int, terminal: bool = False) -> str:
    """What a Console ``width`` columns wide prints for ``renderable`` (no colours)."""
    console = Console(width=width, file=io.StringIO(), force_terminal=terminal, color_system=None)
    with console.capture() as captured:
        console.print(renderable)
    return captured.get()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small finished run (blobs400, 600 updates: 3 epochs of history)."""
    base = tmp_path_factory.mktemp("display")
    config = base / "small.yaml"
    config.write_text(SMALL_CONFIG.format(name="small", max_iterations=600), encoding="utf-8")
    result = invoke("train", config, "--runs-dir", base / "runs")
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- 1. output paths


def test_a_symlink_at_the_path_stays_a_symlink_and_its_target_gets_the_content(
    run_dir: Path, tmp_path: Path
) -> None:
    target, link = tmp_path / "target.md", tmp_path / "link.md"
    target.write_text("old\n", encoding="utf-8")
    link.symlink_to(target)
    result = invoke("compare", run_dir, "--md", link)
    assert result.exit_code == 0, result.output
    assert f"wrote {link}" in result.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    expected = invoke("compare", run_dir, "--md", "-").stdout
    assert expected.startswith("| name |")
    assert target.read_text(encoding="utf-8") == expected


def test_an_existing_file_is_written_in_place_not_replaced(run_dir: Path, tmp_path: Path) -> None:
    """A hard link to the file sees the new content: the same inode was written."""
    path, other_name = tmp_path / "table.csv", tmp_path / "hard-link.csv"
    path.write_text("a much longer old content than the table will ever be\n" * 50)
    os.link(path, other_name)
    inode = path.stat().st_ino
    assert invoke("compare", run_dir, "--csv", path).exit_code == 0
    assert path.stat().st_ino == inode
    assert other_name.read_text(encoding="utf-8").startswith("name,")
    assert "old content" not in other_name.read_text(encoding="utf-8")  # truncated first


def test_a_fifo_reader_receives_the_bytes(run_dir: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as f:
            received.append(f.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    result = invoke("compare", run_dir, "--csv", fifo)
    reader.join(timeout=30)
    assert result.exit_code == 0, result.output
    assert not reader.is_alive(), "the FIFO's reader never got an end of file"
    assert stat.S_ISFIFO(fifo.stat().st_mode)  # still a FIFO, not a regular file
    assert received == [invoke("compare", run_dir, "--csv", "-").stdout.encode()]
    assert received[0].startswith(b"name,")


def test_a_terminal_is_written_to_directly(tmp_path: Path) -> None:
    """A character device (a pseudo-terminal here, where no file can be created beside it)."""
    master, slave = os.openpty()
    try:
        tty.setraw(slave)  # no "\n" -> "\r\n" on the way
        path = os.ttyname(slave)
        output.write_output(path, "| a | b |\n")
        got = b""
        while len(got) < 10 and select.select([master], [], [], 10)[0]:
            got += os.read(master, 100)
        assert got == b"| a | b |\n"
        assert stat.S_ISCHR(os.stat(path).st_mode)
    finally:
        os.close(master)
        os.close(slave)


def test_a_folder_path_is_refused_with_exit_2(run_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    line = assert_one_line_error(invoke("compare", run_dir, "--html", folder), 2)
    assert f"{folder}: is a folder" in line
    assert folder.is_dir() and list(folder.iterdir()) == []


def test_a_failed_write_is_one_line_exit_1(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What /dev/full does (ENOSPC on write), without touching /dev/full."""

    def full(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(output.os, "write", full)
    path = tmp_path / "table.md"
    line = assert_one_line_error(invoke("compare", run_dir, "--md", path), 1)
    assert line.endswith(f"{path}: could not write ([Errno 28] No space left on device)")


def test_dash_is_stdout_for_the_page_too(run_dir: Path) -> None:
    result = invoke("compare", run_dir, "--html", "-")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("<!DOCTYPE html>")
    assert "wrote" not in result.stderr


# --------------------------------------------------------------------------- 2. data as text


def test_compare_shows_a_run_name_with_control_characters_escaped(
    run_dir: Path, tmp_path: Path
) -> None:
    evil = tmp_path / "evil"
    shutil.copytree(run_dir, evil)
    info = json.loads((evil / "run.json").read_text(encoding="utf-8"))
    info["name"] = "x\x1b[2Jy"
    (evil / "run.json").write_text(json.dumps(info), encoding="utf-8")
    result = invoke("compare", evil, run_dir)
    assert result.exit_code == 0, result.output
    assert ESC not in result.stdout
    assert "x\\x1b[2Jy" in result.stdout


def test_runs_lists_a_folder_name_with_control_characters_escaped(
    run_dir: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(run_dir, runs / "run\x1b]0;title\x07x")
    result = invoke("runs", runs)
    assert result.exit_code == 0, result.output
    assert ESC not in result.stdout and "\x07" not in result.stdout
    assert "run\\x1b]0;title\\x07x" in result.stdout


def test_progress_displays_show_names_literally() -> None:
    line = live_line("a\x1b[2J[bold]b", None, 100, [], None, 0.0, None, 80)
    assert line.plain.startswith("a\\x1b[2J[bold]b")
    console = Console(width=120, file=io.StringIO(), force_terminal=True, color_system=None)
    with SweepProgress(console, "[red]s\x1bx", 2) as progress:
        progress.point_done("best 0.9: model.activation=\x1b[31m")
        progress.say("point 1: \x1b[2J")
    text = console.file.getvalue()
    assert "sweep [red]s\\x1bx" in text and "\\x1b[31m" in text and "point 1: \\x1b[2J" in text
    assert "\x1b[2J" not in text and "\x1b[31m" not in text


# --------------------------------------------------------------------------- 3. progress line


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


# --------------------------------------------------------------------------- 4. reproduce


def manifest_rows() -> list[Any]:
    """One summary row per experiment of configs/reproduce.yaml, with long reasons."""
    from scratchnn_cli.reproduce import Row, read_manifest

    rows = []
    for entry in read_manifest(ROOT / "configs" / "reproduce.yaml"):
        row = Row(entry["id"], entry["title"], "course CSV (x.csv)", 0.9, 0.95)
        if entry["id"] == 5:
            row.status = "skipped: fashion-mnist: not cached and the download failed: " * 3
        else:
            row.status, row.stopped_by, row.seconds = "completed", "early_stopping", 1234.5
            row.stop = "reached max_iterations = 100,000 (after 250 epochs, 100,000 updates)"
            row.ours_val, row.ours_test = 0.951, 0.972
        rows.append(row)
    return rows


@pytest.mark.parametrize("width", [80, 60])
def test_the_reproduce_table_has_one_line_per_experiment(width: int) -> None:
    from scratchnn_cli.report.tables import reproduce_table as summary_table

    rows = manifest_rows()
    printed = render(summary_table(rows, width), width)
    lines = printed.splitlines()
    assert max(len(line) for line in lines) <= width, printed
    for row in rows:
        (line,) = [line for line in lines if line.startswith(f"{row.id} ")]
        stop = "skipped" if row.id == 5 else "early stop"
        assert line.rstrip().endswith(stop) and ("0.972" in line) != (row.id == 5), line
        if width == 80:  # the manifest's names are whole at 80 columns
            assert f"{row.id} {row.experiment} " in line, line
    assert "download failed" not in printed and "after 250 epochs" not in printed
    assert "summary.md" in printed


def test_reproduce_says_when_each_experiment_starts_and_ends(tmp_path: Path) -> None:
    from scratchnn_cli.reproduce import reproduce_all

    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "small.yaml").write_text(SMALL_CONFIG.format(name="small", max_iterations=200))
    (configs / "reproduce.yaml").write_text(
        "experiments:\n"
        "  - {id: 1, title: small one, config: small.yaml, reported: {test: 0.9}, seconds: 1}\n"
        "  - {id: 2, title: no such config, config: missing.yaml, seconds: 0}\n"
    )
    console = Console(width=80, file=io.StringIO())
    out_dir, rows = reproduce_all(configs, tmp_path / "runs", jobs=1, console=console)
    text = console.file.getvalue()
    lines = text.splitlines()
    started = next(i for i, line in enumerate(lines) if "#1 small one: started" in line)
    ended = next(i for i, line in enumerate(lines) if "#1 small one: test 0." in line)
    assert started < ended
    assert re.search(
        r"#1 small one: test 0\.\d{3} \(reported 0\.900\) completed, \d+ s$", lines[ended]
    )
    assert any("#2 no such config: started" in line for line in lines)
    assert max(len(line) for line in lines) <= 80, text
    assert [r.status.split(":")[0] for r in rows] == ["completed", "failed"]
    assert (out_dir / "summary.md").is_file()


# --------------------------------------------------------------------------- 5. runs listing


def listing_rows(name: str = "20261206-065100-circles_s") -> list[dict[str, Any]]:
    """Two rows of ``scratchnn runs``: an interrupted run named ``name``, a completed one."""
    return [
        dict(run=name, status="interrupted", test=None, val=None, stopped_by="", age="3 d"),
        dict(
            run="20261206-065200-circles",
            status="completed",
            test=0.9712,
            val=0.9633,
            stopped_by="early_stopping",
            age="12 min",
        ),
    ]


@pytest.mark.parametrize("width", [100, 80, 60, 40])
def test_the_runs_table_fits_the_width(width: int) -> None:
    from scratchnn_cli.report.tables import fitted_runs_table

    rows = listing_rows()
    console = Console(width=width, file=io.StringIO())
    printed = render(fitted_runs_table(rows, "runs in runs", console), width)
    lines = printed.splitlines()
    assert max(len(line) for line in lines) <= width, printed
    completed = [line for line in lines if "completed" in line]
    assert len(completed) == 1 and "0.9712" in completed[0], printed  # status, test acc stay
    whole = width >= 60  # names whole while columns can be given up instead
    assert (rows[1]["run"] in printed) == whole, printed
    assert ("early_stopping" in printed) == (width == 100), printed  # shortened first
    assert ("early stop" in printed) == (width == 80), printed
    assert ("val acc" in printed) == (width == 100), printed  # the least useful column
    assert ("12 min" in printed) == (width >= 80), printed  # the next


def test_a_long_run_name_gives_up_columns_before_it_is_cut() -> None:
    from scratchnn_cli.report.tables import fitted_runs_table

    rows = listing_rows("20261206-065100-fashion_shirt_sandal_deep_net")
    console = Console(width=80, file=io.StringIO())
    printed = render(fitted_runs_table(rows, "runs in runs", console), 80)
    assert max(len(line) for line in printed.splitlines()) <= 80, printed
    assert rows[0]["run"] in printed and "interrupted" in printed
    assert "age" not in printed and "stopped by" not in printed


def test_a_sweep_folder_keeps_its_val_accuracy_at_60_columns() -> None:
    from scratchnn_cli.report.tables import fitted_runs_table

    rows = [dict(r, test=None, val=0.9633) for r in listing_rows()]
    console = Console(width=60, file=io.StringIO())
    printed = render(fitted_runs_table(rows, "runs in runs/sweep-x", console), 60)
    assert "val acc" in printed and "0.9633" in printed and "test acc" not in printed


def test_runs_names_the_folders_of_runs_and_lists_them(run_dir: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(run_dir, runs / run_dir.name)
    for k in range(3):
        shutil.copytree(run_dir, runs / "sweep-x-20261206-065100" / f"sweep-x-p00{k}-f0")
    (runs / "notes").mkdir()  # no runs in it: not listed
    result = invoke("runs", runs)
    assert result.exit_code == 0, result.output
    (row,) = [line for line in result.stdout.splitlines() if "sweep-x-20261206-065100/" in line]
    assert re.search(r"│ +3 │ 3 completed", row), row
    assert "notes" not in result.stdout
    assert "list one with scratchnn runs" in " ".join(result.stdout.split())
    inside = invoke("runs", runs / "sweep-x-20261206-065100")
    assert inside.exit_code == 0, inside.output
    assert all(f"sweep-x-p00{k}-f0" in inside.stdout for k in range(3))


def test_a_folder_with_only_sweeps_says_where_the_runs_are(run_dir: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(run_dir, runs / "reproduce-20261206-065100" / run_dir.name)
    result = invoke("runs", runs)
    assert result.exit_code == 0, result.output
    assert f"no runs directly in {runs}" in result.stdout
    assert "reproduce-20261206-065100" in result.stdout and "1 completed" in result.stdout


# ------------------------------------------------------------------------- 6. compare's page, plot


def test_the_compare_page_scrolls_its_table_inside_the_card(run_dir: Path) -> None:
    html = to_html(compare_runs([run_dir]), None)
    assert ".scroll { overflow-x: auto; }" in html
    section = html[html.index('<section id="table">') : html.index('<section id="folders">')]
    assert re.search(
        r'<div class="scroll">\s*<table class="grid">.*</table>\s*</div>', section, re.S
    )


def curve(k: int, epochs: int = 50) -> list[CurvePoint]:
    return [CurvePoint(e, 1 / (e + k), 1.2 / (e + k)) for e in range(1, epochs + 1)]


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


# ------------------------------------------------------------------------- 7. curve, sweep summary


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


def sweep_outcome(cv: int | None, seeds: list[int] | None = None) -> tuple[Any, Any]:
    from scratchnn_cli.sweep.plan import SweepPlan
    from scratchnn_cli.sweep.result import PointRow, SweepResult

    plan = SweepPlan("s", 0, {}, {"train.lr": [0.1, 0.2]}, None, cv, [{"train.lr": 0.1},
                     {"train.lr": 0.2}], seeds)  # fmt: skip
    rows = [
        PointRow(
            point=p,
            params={"train.lr": lr},
            mean_val_accuracy=acc,
            std_val_accuracy=0.0125,
            fold_val_accuracy="",
            epochs=3.0,
            seconds=12.345,
            status="completed",
            note="",
        )  # fmt: skip
        for p, lr, acc in ((0, 0.1, 0.94), (1, 0.2, 0.97))
    ]
    return plan, SweepResult(Path("sweep-s"), plan, rows, rows[1])


def test_a_sweep_summary_without_cv_shows_no_spread() -> None:
    from scratchnn_cli.sweep.files import summary_markdown

    text = summary_markdown(*sweep_outcome(cv=None))
    assert "±" not in text and "CV estimate" not in text and "| std |" not in text
    assert "train.lr=0.2: validation accuracy 0.9700 (best.yaml)" in text
    assert "| train seconds | status |" in text and "| 12.35 | completed |" in text


def test_a_sweep_summary_with_cv_shows_the_spread_and_what_its_seconds_are() -> None:
    from scratchnn_cli.sweep.files import summary_markdown

    text = summary_markdown(*sweep_outcome(cv=3, seeds=[1, 2]))
    assert "CV estimate 0.9700 ± 0.0125 (best.yaml)" in text
    assert "standard deviation over 3 folds x 2 seeds" in text
    assert "| train seconds (sum over 6 sub-runs) | status |" in text


def test_the_sweep_command_without_cv_prints_no_spread(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SWEEP.replace("max_iterations: 1000", "max_iterations: 300"))
    result = invoke(
        "sweep", spec, "--grid", "train.lr=0.1,0.3", "--no-refit", "--runs-dir", tmp_path
    )
    assert result.exit_code == 0, result.output
    assert re.search(r"^best: point \d train\.lr=0\.\d: validation accuracy 0\.\d{4}$",
                     result.stdout, re.M), result.stdout  # fmt: skip
    assert "±" not in result.stdout and "CV estimate" not in result.stdout
