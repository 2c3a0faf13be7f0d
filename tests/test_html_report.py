"""Tests for ``write_html_report``: one self-contained HTML page per finished run."""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import (
    CONFIGS,
    LEGACY_RUNS,
    PNG_SIGNATURE,
    assert_one_line_error,
    invoke,
)
from PIL import Image
from typer.testing import CliRunner

from scratchnn_cli.cli import app
from scratchnn_cli.config import load_config
from scratchnn_cli.data import load_dataset
from scratchnn_cli.errors import RunFolderError
from scratchnn_cli.experiment import load_run_model
from scratchnn_cli.report import html as html_module
from scratchnn_cli.report.html import MAX_MISCLASSIFIED, write_html_report

DATA_URI = "data:image/png;base64,"

# a 2-D, 3-class CSV whose class names need escaping (and exercise the softmax boundary)
ODD_NAMES = ["<b>bird</b>", "cat & dog", 'say "hi"']
THREE_CLASS_CONFIG = """\
name: three
seed: 0
data:
  dataset: {csv}
  split: [0.6, 0.2, 0.2]
model:
  struct: [6]
  sigma: 0.5
train:
  lr: 0.05
  eps: 0
  max_iterations: 1500
"""


class Page(HTMLParser):
    """What the tests look at in a report: tags, images, URLs, section ids, sample figures and
    the row headers of the per-class table."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.img_src: list[str] = []
        self.urls: list[str] = []
        self.section_ids: list[str] = []
        self.samples = 0
        self.per_class_rows: list[str] = []
        self.img_alt: list[str] = []
        #: table class ("per-class", "pairs") -> its body rows, each a list of cell texts
        self.tables: dict[str, list[list[str]]] = {}
        self._in_per_class = self._in_body = False
        self._row_header: list[str] | None = None
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.tags.append(tag)
        classes = (values.get("class") or "").split()
        for name in ("src", "href", "srcset", "poster", "data"):
            if values.get(name):
                self.urls.append(values[name] or "")
        if tag == "img":
            self.img_src.append(values.get("src") or "")
            self.img_alt.append(values.get("alt") or "")
        if tag == "table":
            known = [c for c in classes if c in ("per-class", "pairs")]
            self._table = known[0] if known else None
        if self._table and tag == "tr" and self._in_body:
            self.tables.setdefault(self._table, []).append([])
        if self._table and tag in ("th", "td") and self._in_body:
            self._cell = []
        if tag == "section" and values.get("id"):
            self.section_ids.append(values["id"] or "")
        if tag == "figure" and "sample" in classes:
            self.samples += 1
        if tag == "table" and "per-class" in classes:
            self._in_per_class = True
        if tag == "tbody" and (self._in_per_class or self._table):
            self._in_body = True
        if tag == "th" and self._in_per_class and self._in_body and self._row_header is None:
            self._row_header = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("th", "td") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        if tag == "table":
            self._in_per_class = self._in_body = False
            self._table = None
        if tag == "th" and self._row_header is not None:
            self.per_class_rows.append("".join(self._row_header).strip())
            self._row_header = None

    def handle_data(self, data: str) -> None:
        if self._row_header is not None:
            self._row_header.append(data)
        if self._cell is not None:
            self._cell.append(data)


def train_run(runs_dir: Path, config: Path, *sets: str) -> Path:
    """Train through the CLI, return the run folder (the last line of its output)."""
    args = ["train", str(config), "--runs-dir", str(runs_dir)]
    for item in sets:
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    run_dir = Path(result.output.strip().splitlines()[-1])
    assert (run_dir / "run.json").is_file(), result.output
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small finished runs: 2-D circles, 3-D blobs, 8x8 digit images, a 3-class 2-D CSV."""
    root = tmp_path_factory.mktemp("runs")
    csv = root / "three.csv"
    rng = np.random.default_rng(7)
    centres = np.array([[0.0, 0.0], [3.0, 0.0], [1.5, 2.5]])
    labels = np.repeat(np.arange(3), 40)
    points = centres[labels] + rng.normal(scale=0.7, size=(len(labels), 2))
    pd.DataFrame(
        {"a": points[:, 0], "b": points[:, 1], "label": [ODD_NAMES[k] for k in labels]}
    ).to_csv(csv, index=False)
    config = root / "three.yaml"
    config.write_text(THREE_CLASS_CONFIG.format(csv=csv), encoding="utf-8")
    return {
        "circles": train_run(
            root / "circles", CONFIGS / "circles_shallow.yaml", "train.max_iterations=2000"
        ),
        "blobs": train_run(
            root / "blobs", CONFIGS / "blobs_shallow.yaml", "train.max_iterations=2000"
        ),
        "digits": train_run(
            root / "digits", CONFIGS / "digits_softmax.yaml", "train.max_iterations=1500"
        ),
        "three": train_run(root / "three", config),
        # scaled images: the misclassified grid must show them unscaled
        "digits_std": train_run(
            root / "digits_std",
            CONFIGS / "digits_softmax.yaml",
            "train.max_iterations=1500",
            "data.scale=standard",
        ),
    }


@pytest.fixture(scope="module")
def reports(runs: dict[str, Path]) -> dict[str, tuple[Path, str, Page, set[str]]]:
    """name -> (report path, its text, parsed page, the run folder's files before the report)."""
    out = {}
    for name, run_dir in runs.items():
        before = {p.name for p in run_dir.iterdir()}
        path = write_html_report(load_run_model(run_dir))
        text = path.read_text(encoding="utf-8")
        out[name] = (path, text, Page(text), before)
    return out


ALL = ["circles", "blobs", "digits", "three"]


# --------------------------------------------------------------------------- self-contained


@pytest.mark.parametrize("name", ALL)
def test_report_is_one_self_contained_file(name: str, runs: dict, reports: dict) -> None:
    path, text, page, before = reports[name]
    run_dir = runs[name]
    assert path == run_dir / "report.html"
    # only report.html was added to the run folder (no temp files, no extra PNGs)
    assert {p.name for p in run_dir.iterdir()} == before | {"report.html"}
    assert text.startswith("<!DOCTYPE html>")
    assert 'src="http' not in text
    assert "<link" not in text.lower()
    assert "<script" not in text.lower()
    assert "@import" not in text and "url(" not in text
    assert "link" not in page.tags and "script" not in page.tags and "iframe" not in page.tags
    assert page.img_src, "the report has no images"
    assert all(src.startswith(DATA_URI) for src in page.img_src)
    assert all(u.startswith(DATA_URI) for u in page.urls), page.urls


@pytest.mark.parametrize("name", ALL)
def test_embedded_images_are_valid_pngs(name: str, reports: dict) -> None:
    _, _, page, _ = reports[name]
    for src in page.img_src:
        data = base64.b64decode(src[len(DATA_URI) :], validate=True)
        assert data.startswith(PNG_SIGNATURE)
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            assert image.format == "PNG"
            assert image.width > 0 and image.height > 0


# --------------------------------------------------------------------------- content


@pytest.mark.parametrize("name", ALL)
def test_header_data_network_and_config(name: str, runs: dict, reports: dict) -> None:
    _, text, page, _ = reports[name]
    info = json.loads((runs[name] / "run.json").read_text(encoding="utf-8"))
    assert info["name"] in text
    assert "completed" in text
    assert info["stop"]["reason"] in text
    assert info["data"]["fingerprint"] in text
    assert " → ".join(str(s) for s in info["network"]["sizes"]) in text
    assert info["network"]["activation"] in text and info["network"]["output"] in text
    for split in ("train", "val", "test"):
        assert f"{info['data'][f'n_{split}']:,}" in text
    assert {"accuracy", "learning-curve", "confusion-matrix", "config"} <= set(page.section_ids)
    # the resolved config, escaped, in a <pre>
    config_text = (runs[name] / "config.yaml").read_text(encoding="utf-8")
    pre = re.search(r"<pre>(.*?)</pre>", text, re.S)
    assert pre is not None
    assert "max_iterations:" in pre.group(1)
    assert pre.group(1) == html.escape(config_text)


@pytest.mark.parametrize("name", ALL)
def test_per_class_table_names_every_class(name: str, runs: dict, reports: dict) -> None:
    _, text, page, _ = reports[name]
    metrics = json.loads((runs[name] / "metrics.json").read_text(encoding="utf-8"))
    classes = json.loads((runs[name] / "run.json").read_text(encoding="utf-8"))["data"]["classes"]
    # one row per class, headed by its name (unescaped by the parser)
    assert page.per_class_rows == classes
    for split, m in metrics.items():
        matrix = np.asarray(m["confusion_matrix"])
        for c in range(len(classes)):
            assert f"{int(matrix[c, c]):,} / {int(matrix[c].sum()):,}" in text, (split, c)
        assert f"{m['accuracy']:.4f}" in text


def test_class_names_are_escaped(reports: dict) -> None:
    _, text, page, _ = reports["three"]
    assert "<b>bird</b>" not in text
    assert "&lt;b&gt;bird&lt;/b&gt;" in text
    assert "cat &amp; dog" in text
    assert set(ODD_NAMES) <= set(page.per_class_rows)


def test_run_text_is_escaped_everywhere(runs: dict, tmp_path: Path) -> None:
    """Free text of run.json (the run's name, stop reason, error) is shown as text, never markup."""
    run_dir = Path(shutil.copytree(runs["blobs"], tmp_path / "run"))
    info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    name = '<script>alert("x")</script> & co'
    reason = "stopped <i>early</i> & on purpose"
    info.update(name=name, error="R&D <img src=x>")
    info["stop"]["reason"] = reason
    (run_dir / "run.json").write_text(json.dumps(info), encoding="utf-8")
    text = write_html_report(load_run_model(run_dir)).read_text(encoding="utf-8")
    page = Page(text)
    assert "<script" not in text and "script" not in page.tags
    assert "<i>early</i>" not in text and "i" not in page.tags
    assert "<img src=x>" not in text and len(page.img_src) == 3  # curve, confusion, gradient flow
    assert " & co" not in text and "R&D" not in text
    title = re.search(r"<title>(.*?)</title>", text, re.S)
    assert title is not None and html.unescape(title.group(1)) == f"{name} - scratchnn run report"
    heading = re.search(r"<h1>(.*?) <span", text, re.S)
    assert heading is not None and html.unescape(heading.group(1)) == name
    assert "&lt;script&gt;alert(" in text
    assert "stopped &lt;i&gt;early&lt;/i&gt; &amp; on purpose" in text
    assert "R&amp;D &lt;img src=x&gt;" in text


# labels and a feature name that matplotlib would parse as (broken) mathtext if left unescaped
DOLLAR_NAMES = ["$a", "b$c^$ & d"]
DOLLAR_CONFIG = """\
name: dollar
seed: 0
data:
  dataset: {csv}
  split: [0.6, 0.2, 0.2]
model:
  struct: [3]
  sigma: 0.5
train:
  lr: 0.05
  eps: 0
  max_iterations: 200
"""


@pytest.mark.slow
def test_report_of_2d_data_with_dollar_class_names(tmp_path: Path) -> None:
    csv = tmp_path / "dollar.csv"
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1], 50)
    points = rng.normal(size=(len(labels), 2)) + np.outer(labels, [2.5, 0.0])
    pd.DataFrame(
        {"x$^$": points[:, 0], "y": points[:, 1], "label": [DOLLAR_NAMES[k] for k in labels]}
    ).to_csv(csv, index=False)
    config = tmp_path / "dollar.yaml"
    config.write_text(DOLLAR_CONFIG.format(csv=csv), encoding="utf-8")
    run_dir = train_run(tmp_path / "runs", config)

    result = CliRunner().invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 0, (result.output, result.exception)
    text = (run_dir / "report.html").read_text(encoding="utf-8")
    page = Page(text)
    assert "decision-boundary" in page.section_ids
    assert len(page.img_src) == 4  # curve, confusion, decision boundary, gradient flow
    assert sorted(page.per_class_rows) == sorted(DOLLAR_NAMES)
    assert "b$c^$ &amp; d" in text and "b$c^$ & d" not in text


@pytest.mark.parametrize(
    ("name", "two_d"), [("circles", True), ("three", True), ("blobs", False), ("digits", False)]
)
def test_decision_boundary_only_for_2d_data(name: str, two_d: bool, reports: dict) -> None:
    _, text, page, _ = reports[name]
    assert ("decision-boundary" in page.section_ids) is two_d
    assert ("Decision boundary" in text) is two_d
    if two_d:
        # learning curve + confusion matrix + decision boundary + gradient flow
        assert len(page.img_src) == 4
        assert "test points" in text


@pytest.mark.parametrize(
    ("name", "images"), [("digits", True), ("circles", False), ("blobs", False), ("three", False)]
)
def test_misclassified_grid_only_for_image_data(name: str, images: bool, reports: dict) -> None:
    _, _, page, _ = reports[name]
    assert ("misclassified" in page.section_ids) is images
    if not images:
        assert page.samples == 0
        return
    metrics = json.loads((reports[name][0].parent / "metrics.json").read_text(encoding="utf-8"))
    matrix = np.asarray(metrics["test"]["confusion_matrix"])
    wrong = int(matrix.sum() - np.trace(matrix))
    assert wrong > 0, "the digits run should misclassify a few test images"
    assert page.samples == min(wrong, MAX_MISCLASSIFIED)
    assert len(page.img_src) == 3 + page.samples  # + curve, confusion, gradient flow


def test_no_misclassified_images_says_so(runs: dict, tmp_path: Path, monkeypatch) -> None:
    run_dir = Path(shutil.copytree(runs["digits"], tmp_path / "run"))
    from scratchnn_cli.nn.network import Network

    real_predict = Network.predict
    monkeypatch.setattr(Network, "predict", lambda self, X: real_predict(self, X) * 0)
    monkeypatch.setattr(
        "scratchnn_cli.report.html.Dataset.split",
        lambda self, split: (self.X_test[self.y_test == 0], self.y_test[self.y_test == 0]),
    )
    text = write_html_report(load_run_model(run_dir)).read_text(encoding="utf-8")
    page = Page(text)
    assert "misclassified" in page.section_ids
    assert page.samples == 0
    assert "classified correctly" in text


# ----------------------------------------------- per-class accuracy, confused pairs, the image grid


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))


def per_class_cells(matrix: np.ndarray) -> list[list[str]]:
    """Per class: [accuracy, "correct / n"] as the report shows them, with plain NumPy."""
    rows = matrix.sum(axis=1)
    return [
        [f"{matrix[c, c] / n:.3f}" if n else "-", f"{matrix[c, c]:,} / {n:,}"]
        for c, n in enumerate(rows)
    ]


def expected_pairs(matrix: np.ndarray, names: list[str]) -> list[list[str]]:
    """The report's pairs table: top 5 off-diagonal cells (count, then names), with plain
    NumPy; each [true, predicted, count, % of true, other way, both ways]."""
    off = matrix * (1 - np.eye(len(matrix), dtype=int))
    cells = sorted(
        (-off[t, p], names[t], names[p], t, p) for t, p in zip(*np.nonzero(off), strict=True)
    )
    return [
        [
            true,
            pred,
            f"{-neg:,}",
            f"{100 * -neg / matrix[t].sum():.1f}%",
            f"{matrix[p, t]:,}",
            f"{matrix[t, p] + matrix[p, t]:,}",
        ]
        for neg, true, pred, t, p in cells[:5]
    ]


@pytest.mark.parametrize("name", [*ALL, "digits_std"])
def test_per_class_accuracy_values(name: str, runs: dict, reports: dict) -> None:
    _, _, page, _ = reports[name]
    metrics = read_metrics(runs[name])
    splits = [s for s in ("train", "val", "test") if s in metrics]
    per_split = [per_class_cells(np.asarray(metrics[s]["confusion_matrix"])) for s in splits]
    classes = page.per_class_rows
    expected = [
        [classes[c], *[cell for cells in per_split for cell in cells[c]]]
        for c in range(len(classes))
    ]
    assert page.tables["per-class"] == expected
    for s in splits:  # the same numbers as metrics.json's own per_class_accuracy
        shown = [float(row[1 + 2 * splits.index(s)]) for row in expected]
        assert shown == pytest.approx(metrics[s]["per_class_accuracy"], abs=5e-4)


@pytest.mark.parametrize("name", [*ALL, "digits_std"])
def test_confused_pairs_section(name: str, runs: dict, reports: dict) -> None:
    _, text, page, _ = reports[name]
    metrics = read_metrics(runs[name])
    classes = json.loads((runs[name] / "run.json").read_text(encoding="utf-8"))["data"]["classes"]
    matrix = np.asarray(metrics["test"]["confusion_matrix"])
    assert "confused-pairs" in page.section_ids
    assert "Most confused pairs (test)" in text
    expected = expected_pairs(matrix, classes)
    assert page.tables.get("pairs", []) == expected
    # the same pairs as metrics.json records
    pairs = metrics["test"]["confused_pairs"]
    recorded = [[p["true"], p["predicted"], f"{p['count']:,}"] for p in pairs]
    assert [row[:3] for row in expected] == recorded
    if not expected:
        assert "the test split has no errors" in text


def test_digits_report_has_a_full_top_five(reports: dict) -> None:
    rows = reports["digits"][2].tables["pairs"]
    assert len(rows) == 5
    counts = [int(row[2]) for row in rows]
    assert counts == sorted(counts, reverse=True) and counts[-1] > 0


def test_a_split_without_errors_has_no_pairs(runs: dict, tmp_path: Path) -> None:
    run_dir = Path(shutil.copytree(runs["digits"], tmp_path / "run"))
    metrics = read_metrics(run_dir)
    matrix = np.asarray(metrics["test"]["confusion_matrix"])
    metrics["test"]["confusion_matrix"] = np.diag(matrix.sum(axis=1)).tolist()  # all right
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    text = write_html_report(load_run_model(run_dir)).read_text(encoding="utf-8")
    page = Page(text)
    assert "confused-pairs" in page.section_ids
    assert "pairs" not in page.tables
    assert "None: the test split has no errors." in text


def test_report_of_a_legacy_folder(tmp_path: Path) -> None:
    """A 0.1.0 run folder (metrics.json without per-class keys): a copy is reported, with the
    per-class accuracy and pairs computed from its confusion matrices; the fixture stays as is."""
    source = LEGACY_RUNS / "legacy_small"
    before = {p.name: p.read_bytes() for p in source.iterdir()}
    recorded = read_metrics(source)
    for m in recorded.values():
        assert "per_class_accuracy" not in m and "confused_pairs" not in m
    run_dir = Path(shutil.copytree(source, tmp_path / "legacy_small"))
    text = write_html_report(load_run_model(run_dir)).read_text(encoding="utf-8")
    page = Page(text)
    # train [[96, 4], [4, 96]], val [[48, 2], [2, 48]], test [[48, 2], [0, 50]]
    assert page.tables["per-class"] == [
        ["0", "0.960", "96 / 100", "0.960", "48 / 50", "0.960", "48 / 50"],
        ["1", "0.960", "96 / 100", "0.960", "48 / 50", "1.000", "50 / 50"],
    ]
    assert page.tables["pairs"] == [["0", "1", "2", "4.0%", "0", "2"]]
    assert read_metrics(run_dir) == recorded  # the report writes only report.html
    assert {p.name: p.read_bytes() for p in source.iterdir()} == before


def decoded_samples(page: Page) -> list[tuple[int, str, str, np.ndarray]]:
    """(test index, true, predicted, the image's red channel as floats) of each sample figure."""
    out = []
    for alt, src in zip(page.img_alt, page.img_src, strict=True):
        found = re.fullmatch(r"test #(\d+): true (.*), predicted (.*)", alt)
        if found is None:
            continue
        with Image.open(io.BytesIO(base64.b64decode(src[len(DATA_URI) :]))) as image:
            red = np.asarray(image.convert("RGB"), dtype=np.float64)[:, :, 0]
        out.append((int(found.group(1)), found.group(2), found.group(3), red))
    return out


@pytest.mark.parametrize("name", ["digits", "digits_std"])
def test_misclassified_images_are_the_unscaled_test_images(
    name: str, runs: dict, reports: dict
) -> None:
    """Each sample's pixels are its unscaled 8x8 test image (grey: dark = high, over the test
    split's range) and its caption its true class and a wrong prediction, whatever data.scale
    is."""
    run_dir = runs[name]
    config = load_config(run_dir / "config.yaml")
    assert config.data.scale == ("standard" if name == "digits_std" else "none")
    unscaled = config.data.model_copy(update={"scale": "none"})
    X, y = load_dataset(unscaled, config.seed).split("test")  # the same split: scaling is last
    names = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["data"]["classes"]
    matrix = np.asarray(read_metrics(run_dir)["test"]["confusion_matrix"])
    samples = decoded_samples(reports[name][2])
    assert len(samples) == min(MAX_MISCLASSIFIED, int(matrix.sum() - np.trace(matrix)))
    lo, hi = X.min(), X.max()
    seen = np.zeros_like(matrix)
    for index, true, predicted, red in samples:
        assert true == names[y[index]] and predicted != true
        seen[names.index(true), names.index(predicted)] += 1
        grey = 255 * (1 - (X[index].reshape(8, 8) - lo) / (hi - lo))
        assert red.shape == (8, 8)
        assert np.abs(red - grey).max() <= 2, (index, red, grey)
    assert (seen <= matrix).all()  # every caption is an error the confusion matrix counts
    assert [s[0] for s in samples] == sorted(s[0] for s in samples)  # test order


def _image_shaped(monkeypatch: pytest.MonkeyPatch, shape: tuple[int, ...]) -> None:
    """The report's test split as image-shaped arrays (m, *shape); the network flattens them
    (as a network that starts with a flatten layer would)."""
    from scratchnn_cli.nn.network import Network

    real_split, real_predict, real_proba = (
        html_module.Dataset.split,
        Network.predict,
        Network.predict_proba,
    )

    def split(self, name):  # type: ignore[no-untyped-def]
        X, y = real_split(self, name)
        if name != "test":
            return X, y
        reps = math.prod(shape) // X.shape[1]
        return np.repeat(X, reps, axis=1).reshape(len(X), *shape), y

    def flat(f):  # type: ignore[no-untyped-def]
        return lambda self, X: f(self, np.asarray(X).reshape(len(X), -1)[:, : self.sizes[0]])

    monkeypatch.setattr(html_module.Dataset, "split", split)
    monkeypatch.setattr(Network, "predict", flat(real_predict))
    monkeypatch.setattr(Network, "predict_proba", flat(real_proba))


@pytest.mark.parametrize("shape", [(8, 8), (1, 8, 8)])
def test_misclassified_grid_of_image_shaped_data(
    shape: tuple[int, ...], runs: dict, reports: dict, tmp_path: Path, monkeypatch
) -> None:
    run_dir = Path(shutil.copytree(runs["digits_std"], tmp_path / "run"))
    _image_shaped(monkeypatch, shape)
    page = Page(write_html_report(load_run_model(run_dir)).read_text(encoding="utf-8"))
    flat = decoded_samples(reports["digits_std"][2])
    shaped = decoded_samples(page)
    assert len(shaped) == len(flat) > 0
    for (i, t, p, red), (j, u, q, red_flat) in zip(shaped, flat, strict=True):
        assert (i, t, p) == (j, u, q)
        np.testing.assert_array_equal(red, red_flat)


def test_samples_that_are_not_the_image_size_are_explained(
    runs: dict, tmp_path: Path, monkeypatch
) -> None:
    run_dir = Path(shutil.copytree(runs["digits"], tmp_path / "run"))
    _image_shaped(monkeypatch, (2, 8, 8))  # two channels: not an 8x8 grey image
    text = write_html_report(load_run_model(run_dir)).read_text(encoding="utf-8")
    page = Page(text)
    assert "misclassified" in page.section_ids
    assert page.samples == 0
    assert "cannot be shown: each test sample holds 128 values, not 8×8" in text


# --------------------------------------------------------------------------- refused folders


def test_not_a_run_folder_is_one_line(tmp_path: Path) -> None:
    line = assert_one_line_error(invoke("report", tmp_path / "missing"))
    assert "no such run folder" in line, line
    (tmp_path / "empty").mkdir()
    line = assert_one_line_error(invoke("report", tmp_path / "empty"))
    assert "not a run folder" in line, line
    assert not (tmp_path / "empty" / "report.html").exists()


@pytest.mark.parametrize("status", ["running", "interrupted", "failed"])
def test_unfinished_run_raises(status: str, runs: dict, tmp_path: Path) -> None:
    run_dir = Path(shutil.copytree(runs["blobs"], tmp_path / "run"))
    (run_dir / "report.html").unlink(missing_ok=True)
    info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    info["status"] = status
    (run_dir / "run.json").write_text(json.dumps(info), encoding="utf-8")
    with pytest.raises(RunFolderError, match=f"not finished \\(status: {status}\\)") as raised:
        write_html_report(load_run_model(run_dir))
    assert "\n" not in str(raised.value)
    assert not (run_dir / "report.html").exists()


def test_missing_model_raises(runs: dict, tmp_path: Path) -> None:
    run_dir = Path(shutil.copytree(runs["blobs"], tmp_path / "run"))
    (run_dir / "model.npz").unlink()
    with pytest.raises(RunFolderError, match="model.npz is missing"):
        write_html_report(load_run_model(run_dir))


def test_diverged_run_is_reported(runs: dict, tmp_path: Path) -> None:
    run_dir = Path(shutil.copytree(runs["circles"], tmp_path / "run"))
    info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    info["status"] = "diverged"
    info["stop"].update(stopped_by="diverged", reason="diverged in epoch 3: the cost is nan")
    (run_dir / "run.json").write_text(json.dumps(info), encoding="utf-8")
    (run_dir / "history.csv").unlink()  # and no history: the page says so instead of a plot
    text = write_html_report(load_run_model(run_dir)).read_text(encoding="utf-8")
    page = Page(text)
    assert "status-diverged" in text
    assert "diverged in epoch 3: the cost is nan" in text
    assert "No training history was recorded" in text
    assert "decision-boundary" in page.section_ids
    assert len(page.img_src) == 3  # confusion matrix + decision boundary + gradient flow


# --------------------------------------------------------------------------- in a browser


def _chromium() -> str:
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None
    )
    if found is None:
        missing = "Chromium is not installed (apt-get install chromium); .ci/run installs it"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{missing}, and under CI=true the report must be rendered in a browser")
        pytest.skip(missing)
    return found


COUNT_IMAGES = """<script>
window.addEventListener("load", function () {
  var all = Array.from(document.images);
  var ok = all.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var out = document.createElement("div");
  out.id = "result";
  out.textContent = "images " + ok + " of " + all.length;
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.slow
@pytest.mark.parametrize("name", ["digits", "circles"])
def test_report_renders_in_headless_chromium(name: str, reports: dict, tmp_path: Path) -> None:
    chromium = _chromium()
    path, text, page, _ = reports[name]
    # the report itself has no script: a test-only copy gets one that counts decoded images
    probe = tmp_path / "probe.html"
    assert text.count("</body>") == 1
    probe.write_text(text.replace("</body>", COUNT_IMAGES + "</body>"), encoding="utf-8")
    base = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [*base, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=60
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<div id="result">images (\d+) of (\d+)</div>', dom.stdout)
    assert found, dom.stdout[-2000:]
    n_img = len(page.img_src)
    assert (int(found.group(1)), int(found.group(2))) == (n_img, n_img)

    shot = tmp_path / "shot.png"
    result = subprocess.run(
        [*base, "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1200,2000"]
        + [path.as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.read_bytes().startswith(PNG_SIGNATURE)
    with Image.open(shot) as image:
        assert image.size == (1200, 2000)


# ------------------------------------------------------------------------- a folder it cannot write


def test_report_on_a_folder_it_cannot_write_is_one_line(blobs_run: Path, tmp_path: Path) -> None:
    import shutil

    run_dir = tmp_path / blobs_run.name
    shutil.copytree(blobs_run, run_dir)
    (run_dir / "report.html").mkdir()
    result = invoke("report", run_dir)
    line = assert_one_line_error(result, code=1)
    assert line.startswith(f"error: {run_dir / 'report.html'}: could not write ("), line
