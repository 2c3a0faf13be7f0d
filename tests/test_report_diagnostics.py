"""The report's "Diagnostics" section (gradient flow and ``scratchnn diagnose``'s findings) and
``plots.gradient_flow_png``."""

from __future__ import annotations

import base64
import html
import io
import math
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from scratchnn_cli.cli import app
from scratchnn_cli.records import DiagnosticsRow
from scratchnn_cli.report.plots import gradient_flow_png

PNG = b"\x89PNG\r\n\x1a\n"
GRADIENT_FLOW_ALT = "gradient flow"

# The rings, a hidden layer of 3, a learning rate far too low: the weights hardly move, which
# diagnose sees in the update ratio (diagnostics.csv) or, without it, in the flat cost.
SLOW = """\
name: slow
seed: 0
data:
  dataset: circles500
model:
  struct: [3]
  sigma: 0.5
train:
  lr: 1.0e-7
  eps: 0
  max_iterations: 1500
"""


def invoke(*args: object) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def trained(tmp: Path, *sets: str) -> Path:
    """The folder of a SLOW run trained with these --set options."""
    spec = tmp / "slow.yaml"
    spec.write_text(SLOW, encoding="utf-8")
    args: list[object] = ["train", spec, "--runs-dir", tmp / "runs"]
    for item in sets:
        args += ["--set", item]
    return Path(invoke(*args))


def diagnostics_section(run_dir: Path) -> str:
    """The HTML of the report's Diagnostics section (the report written by ``scratchnn
    report``)."""
    page = Path(invoke("report", run_dir)).read_text(encoding="utf-8")
    found = re.search(r'<section id="diagnostics">.*?</section>', page, re.DOTALL)
    assert found, "no Diagnostics section"
    return found.group(0)


def images(section: str) -> dict[str, bytes]:
    """alt text -> PNG bytes of each embedded image of ``section``."""
    found = re.findall(r'<img[^>]*src="data:image/png;base64,([^"]+)"[^>]*alt="([^"]*)"', section)
    return {html.unescape(alt): base64.b64decode(data) for data, alt in found}


def findings(section: str) -> list[str]:
    """The names of the findings (the row headers of the findings table)."""
    body = re.search(r'<table class="grid findings">.*?<tbody>(.*?)</tbody>', section, re.DOTALL)
    assert body, "no findings table"
    return [html.unescape(n) for n in re.findall(r"<tr><th>(.*?)</th>", body.group(1))]


def text(section: str) -> str:
    """The section's text, tags dropped, runs of white space one space."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", section)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The SLOW run with diagnostics (the default) and without."""
    return {
        "with": trained(tmp_path_factory.mktemp("with")),
        "without": trained(tmp_path_factory.mktemp("without"), "train.diagnostics=false"),
    }


def test_a_run_with_diagnostics_shows_the_gradient_flow_and_its_findings(
    runs: dict[str, Path],
) -> None:
    assert (runs["with"] / "diagnostics.csv").is_file()
    section = diagnostics_section(runs["with"])
    pictures = [png for alt, png in images(section).items() if GRADIENT_FLOW_ALT in alt]
    assert len(pictures) == 1
    assert pictures[0].startswith(PNG)
    width, height = Image.open(io.BytesIO(pictures[0])).size
    assert width > 400 and height > 200
    assert "learning rate too low" in findings(section)
    shown = text(section)
    assert "update ratio lr*|dW|/|W| at most" in shown  # seen in diagnostics.csv
    assert "--set train.lr=1e-06" in shown  # what to try
    assert "Missing" not in shown


def test_a_run_without_diagnostics_says_what_is_missing_and_judges_its_history(
    runs: dict[str, Path],
) -> None:
    assert not (runs["without"] / "diagnostics.csv").exists()
    section = diagnostics_section(runs["without"])
    assert not images(section)
    shown = text(section)
    assert "Missing: no diagnostics.csv" in shown
    assert "train.diagnostics: false" in shown
    assert "gradients" in shown and "not checked" in shown
    assert "learning rate too low" in findings(section)  # from history.csv's flat cost
    assert "the cost moved" in shown


def test_an_unreadable_diagnostics_csv_loses_the_figure_not_the_findings(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    copy = tmp_path / runs["with"].name
    shutil.copytree(runs["with"], copy)
    (copy / "diagnostics.csv").write_text("not,a,diagnostics,file\n", encoding="utf-8")
    section = diagnostics_section(copy)
    assert not images(section)
    shown = text(section)
    assert "Missing: diagnostics.csv could not be read" in shown
    assert "learning rate too low" in findings(section)


def row(epoch: int, layer: int, grad: float | None, ratio: float | None) -> DiagnosticsRow:
    return DiagnosticsRow(
        epoch=epoch,
        layer=layer,
        kind="dense",
        probe_cost=math.nan,
        weight_norm=1.0,
        grad_norm=grad,
        update_ratio=ratio,
    )


@pytest.mark.parametrize(
    "rows",
    [
        [row(0, 0, None, None), row(1, 0, math.nan, 0.0), row(2, 0, 0.0, math.inf)],  # none
        [row(0, 0, 0.5, None), row(1, 0, math.nan, 1e-3), row(2, 0, -math.inf, 2e-3)],
        [row(0, 0, 1e-300, 1e300), row(0, 2, 3.0, 1e-9)],  # far apart, one probe
        [],
    ],
    ids=["nothing-drawable", "some-missing", "extremes", "no-rows"],
)
def test_gradient_flow_png_skips_values_a_log_scale_cannot_show(
    rows: list[DiagnosticsRow],
) -> None:
    png = gradient_flow_png(rows, "$odd$ <title>")
    assert png.startswith(PNG)
    Image.open(io.BytesIO(png)).verify()
