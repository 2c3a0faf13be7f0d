"""``scratchnn compare``: runs side by side (scratchnn_cli/compare.py, cli/compare.py).

Expected values are read from the run folders here (json / csv), independently of the code
under test; the legacy fixtures are copied into tmp_path first and never modified."""

from __future__ import annotations

import csv
import io
import re
import shutil
import struct
from pathlib import Path

import pytest
from helpers import (
    LEGACY_RUNS,
    ROOT,
    SMALL_CONFIG,
    assert_one_line_error,
    invoke,
    read_json,
)

from scratchnn_cli.compare import compare as compare_runs
from scratchnn_cli.compare import to_html

LEGACY = ("gold_digits_f32", "gold_dropout_adam", "legacy_diverged", "legacy_interrupted",
          "legacy_small")  # fmt: skip
RESULTS = ["train acc", "val acc", "test acc", "epochs", "seconds", "status"]


def train(config: Path, runs_dir: Path, *overrides: str) -> Path:
    args = [a for o in overrides for a in ("--set", o)]
    result = invoke("train", config, "--runs-dir", runs_dir, *args)
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1])


def expected_results(run_dir: Path) -> dict[str, str]:
    """The result columns of one run as CSV text, straight from its files."""
    info = read_json(run_dir / "run.json")
    metrics = read_json(run_dir / "metrics.json") if (run_dir / "metrics.json").exists() else {}
    row = {f"{s} acc": str(float(metrics[s]["accuracy"])) if s in metrics else "" for s in
           ("train", "val", "test")}  # fmt: skip
    row.update(epochs=str(info["stop"]["epochs"]), seconds=str(info["seconds"]))
    row["status"] = info["status"]
    return row


def parse_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def parse_markdown(text: str) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a Markdown table (no cell here holds a ``|``)."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert set("".join(cells[1])) <= set("-:"), cells[1]  # the alignment line
    return cells[0], cells[2:]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two runs of the same config that differ only in train.lr."""
    base = tmp_path_factory.mktemp("two")
    config = base / "small.yaml"
    config.write_text(SMALL_CONFIG.format(name="small", max_iterations=2000), encoding="utf-8")
    return [train(config, base / "runs"), train(config, base / "runs", "train.lr=0.2")]


# --------------------------------------------------------------------------- the table


def test_only_the_differing_key_is_shown(two_runs: list[Path]) -> None:
    result = invoke("compare", *two_runs, "--csv", "-")
    assert result.exit_code == 0, result.output
    rows = parse_csv(result.stdout)
    assert list(rows[0]) == ["name", "train.lr", *RESULTS]
    assert [r["train.lr"] for r in rows] == ["0.05", "0.2"]
    # the same names: each run is labelled by its folder
    assert [r["name"] for r in rows] == [p.name for p in two_runs]

    table = invoke("compare", *two_runs)
    assert table.exit_code == 0, table.output
    assert "train.lr" in table.stdout and "0.2" in table.stdout
    for unchanged in ("model.struct", "train.max_iterations", "seed", "data.dataset"):
        assert unchanged not in table.stdout


def test_all_shows_every_key(two_runs: list[Path]) -> None:
    result = invoke("compare", *two_runs, "--all", "--csv", "-")
    assert result.exit_code == 0, result.output
    header = list(parse_csv(result.stdout)[0])
    for key in ("seed", "data.dataset", "model.struct", "train.lr", "train.max_iterations"):
        assert key in header
    assert "name" not in header[1:]  # the name is the first column, never a parameter
    assert len(header) > len(["name", "train.lr", *RESULTS])
    rows = parse_csv(result.stdout)
    assert [r["model.struct"] for r in rows] == ["[3]", "[3]"]
    assert [r["train.max_iterations"] for r in rows] == ["2000", "2000"]


def test_values_come_from_the_run_folders(two_runs: list[Path]) -> None:
    rows = parse_csv(invoke("compare", *two_runs, "--csv", "-").stdout)
    accuracies = [row[f"{s} acc"] for row in rows for s in ("train", "val", "test")]
    assert len(set(accuracies)) >= 4  # the runs and splits tell apart: a mix-up would show
    for run_dir, row in zip(two_runs, rows, strict=True):
        assert {k: row[k] for k in RESULTS} == expected_results(run_dir)
    table = invoke("compare", *two_runs).stdout
    for run_dir in two_runs:
        metrics = read_json(run_dir / "metrics.json")
        for split in ("train", "val", "test"):
            assert f"{metrics[split]['accuracy']:.4f}" in table


def test_csv_and_markdown_files_parse_back_to_the_same_rows(
    two_runs: list[Path], tmp_path: Path
) -> None:
    csv_path, md_path = tmp_path / "c.csv", tmp_path / "c.md"
    result = invoke("compare", *two_runs, "--csv", csv_path, "--md", md_path)
    assert result.exit_code == 0, result.output
    assert f"wrote {csv_path}" in result.stderr and f"wrote {md_path}" in result.stderr
    assert "train.lr" in result.stdout  # files written: the table still goes to stdout
    rows = parse_csv(csv_path.read_text(encoding="utf-8"))
    header, md_rows = parse_markdown(md_path.read_text(encoding="utf-8"))
    assert header == list(rows[0])
    assert len(md_rows) == len(rows) == 2
    for row, md, run_dir in zip(rows, md_rows, two_runs, strict=True):
        md_row = dict(zip(header, md, strict=True))
        assert md_row["name"] == row["name"] == run_dir.name
        assert md_row["train.lr"] == row["train.lr"]
        assert md_row["status"] == row["status"]
        assert int(md_row["epochs"].replace(",", "")) == int(row["epochs"])
        for split in ("train", "val", "test"):
            assert md_row[f"{split} acc"] == f"{float(row[f'{split} acc']):.4f}"
        assert md_row["seconds"] == f"{float(row['seconds']):.1f}"
    # stdout: the Markdown alone, no table, no "wrote" line
    only = invoke("compare", *two_runs, "--md", "-")
    assert only.stdout == md_path.read_text(encoding="utf-8")


def test_plot_writes_a_png(two_runs: list[Path], tmp_path: Path) -> None:
    png = tmp_path / "curves.png"
    result = invoke("compare", *two_runs, "--plot", png)
    assert result.exit_code == 0, result.output
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 400 and height > 200
    assert len(data) > 10_000  # drawn lines and legend, not an empty canvas


def test_html_page_has_the_table_and_the_plot(two_runs: list[Path], tmp_path: Path) -> None:
    page = tmp_path / "compare.html"
    result = invoke("compare", *two_runs, "--html", page)
    assert result.exit_code == 0, result.output
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert "<th>train.lr</th>" in html and "<td>0.2</td>" in html
    assert "data:image/png;base64," in html
    for run_dir in two_runs:
        assert run_dir.name in html
        assert f"{read_json(run_dir / 'metrics.json')['test']['accuracy']:.4f}" in html


# --------------------------------------------------------------------------- old folders, sweeps


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    """A copy of the 0.1.0 run folders (the fixtures themselves are never touched)."""
    folder = tmp_path / "legacy"
    folder.mkdir()
    for name in LEGACY:
        shutil.copytree(LEGACY_RUNS / name, folder / name)
    return folder


def test_legacy_run_folders(legacy: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in legacy.rglob("*")}
    result = invoke("compare", legacy, "--csv", "-")
    assert result.exit_code == 0, result.output
    rows = parse_csv(result.stdout)
    assert [r["name"] for r in rows] == list(LEGACY)
    for name, row in zip(LEGACY, rows, strict=True):
        assert {k: row[k] for k in RESULTS} == expected_results(legacy / name)
    interrupted = rows[LEGACY.index("legacy_interrupted")]
    assert interrupted["test acc"] == "" and interrupted["status"] == "interrupted"
    assert {p: p.stat().st_mtime_ns for p in legacy.rglob("*")} == before  # nothing written
    table = invoke("compare", legacy / "legacy_small", legacy / "legacy_diverged")
    assert table.exit_code == 0, table.output
    assert "diverged" in table.stdout and "model.activation" in table.stdout


def test_legacy_and_new_run_of_the_same_spec_differ_in_nothing(legacy: Path) -> None:
    """A 0.1.0 config.yaml lacks keys added since; resolved, it equals a new run's config."""
    config = legacy.parent / "small.yaml"
    shutil.copy(LEGACY_RUNS / "small.yaml", config)
    new = train(config, legacy.parent / "runs", "name=legacy_small_new")
    old = legacy / "legacy_small"
    result = invoke("compare", old, new, "--csv", "-")
    assert result.exit_code == 0, result.output
    rows = parse_csv(result.stdout)
    assert list(rows[0]) == ["name", *RESULTS]
    assert rows[0]["test acc"] == rows[1]["test acc"]  # same seed, same spec, same result
    with_all = parse_csv(invoke("compare", old, new, "--all", "--csv", "-").stdout)
    assert "data.scale" in with_all[0]  # a key 0.1.0 did not write, filled in for both
    assert with_all[0]["data.scale"] == with_all[1]["data.scale"] == "none"


def test_sweep_folder_one_and_two_levels_down(two_runs: list[Path], tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    shutil.copytree(two_runs[0], sweep / "lr_a")
    shutil.copytree(two_runs[1], sweep / "group" / "lr_b")
    (sweep / "notes").mkdir()  # no run.json: ignored
    (sweep / "notes" / "x.txt").write_text("not a run", encoding="utf-8")
    result = invoke("compare", sweep, "--csv", "-")
    assert result.exit_code == 0, result.output
    rows = parse_csv(result.stdout)
    assert [r["name"] for r in rows] == ["lr_b", "lr_a"]  # sorted by path: group/ < lr_a/
    assert [r["train.lr"] for r in rows] == ["0.2", "0.05"]
    # a run given twice (directly and through its sweep) is shown once
    twice = parse_csv(invoke("compare", sweep / "lr_a", sweep, "--csv", "-").stdout)
    assert len(twice) == 2


@pytest.mark.parametrize("case", ["missing", "file", "empty_folder", "no_runs_below", "none"])
def test_bad_input_is_one_line_exit_2(case: str, tmp_path: Path) -> None:
    paths = {
        "missing": [tmp_path / "nope"],
        "file": [tmp_path / "file.txt"],
        "empty_folder": [tmp_path / "empty"],
        "no_runs_below": [tmp_path / "deep"],
        "none": [],
    }[case]
    (tmp_path / "file.txt").write_text("x", encoding="utf-8")
    (tmp_path / "empty").mkdir()
    (tmp_path / "deep" / "a" / "b" / "c").mkdir(parents=True)  # run.json three levels down
    (tmp_path / "deep" / "a" / "b" / "c" / "run.json").write_text("{}", encoding="utf-8")
    line = assert_one_line_error(invoke("compare", *paths))
    if paths:
        assert str(paths[0]) in line


def test_unreadable_run_json_and_plot_to_stdout_are_bad_input(
    two_runs: list[Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "run.json").write_text("{not json", encoding="utf-8")
    assert "broken" in assert_one_line_error(invoke("compare", two_runs[0], broken))
    assert "--plot" in assert_one_line_error(invoke("compare", *two_runs, "--plot", "-"))


# --------------------------------------------------------------------------- the demo's modern run


def test_circles_modern_reaches_095_test_accuracy(tmp_path: Path) -> None:
    """configs/circles_modern.yaml (seed 0, as the demo runs it) trains in a few seconds."""
    run_dir = train(ROOT / "configs" / "circles_modern.yaml", tmp_path / "runs")
    assert read_json(run_dir / "metrics.json")["test"]["accuracy"] >= 0.95
    assert read_json(run_dir / "run.json")["seconds"] < 10


def test_html_escapes_values_from_the_runs(two_runs: list[Path], tmp_path: Path) -> None:
    run = tmp_path / "odd"
    shutil.copytree(two_runs[0], run)
    config = (run / "config.yaml").read_text(encoding="utf-8")
    (run / "config.yaml").write_text(
        config.replace("dataset: blobs400", "dataset: <b>blobs</b>"), encoding="utf-8"
    )
    page = tmp_path / "odd.html"
    assert invoke("compare", two_runs[0], run, "--html", page).exit_code == 0
    html = page.read_text(encoding="utf-8")
    assert "<td>&lt;b&gt;blobs&lt;/b&gt;</td>" in html and "<b>blobs" not in html


# --------------------------------------------------------------------------- the page


def test_the_compare_page_scrolls_its_table_inside_the_card(small_run: Path) -> None:
    html = to_html(compare_runs([small_run]), None)
    assert ".scroll { overflow-x: auto; }" in html
    section = html[html.index('<section id="table">') : html.index('<section id="folders">')]
    assert re.search(
        r'<div class="scroll">\s*<table class="grid">.*</table>\s*</div>', section, re.S
    )
