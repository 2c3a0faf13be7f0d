"""What a tester trying to break the tool met, one class per section: text from data reaching
the terminal, crafted run files, read-only run folders, runs whose checkpoint or data changed,
and the CLI's first-hour messages. Each test fails without its fix."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers import SMALL_CONFIG, assert_one_line_error, invoke

from scratchnn_cli.report.text import cell, printable
from scratchnn_cli.runs import read_json

# --------------------------------------------------------------------------- terminal text

TITLE = "\x1b]0;owned\x07"  # an OSC sequence: retitles the terminal
CLEAR = "\x1b[2J"  # clears the screen


def test_printable_shows_control_characters_as_escapes() -> None:
    assert printable(f"a{TITLE}b") == "a\\x1b]0;owned\\x07b"
    assert printable("x\ny\rz\t") == "x\\ny\\rz\\t"
    assert printable("left\u202eright") == "left\\u202eright"  # bidi override
    assert printable("Shirt é 日本 [/] $x$") == "Shirt é 日本 [/] $x$"  # printable stays
    assert cell("[/]").plain == "[/]"  # a Text: never parsed as markup


def csv_run(tmp_path: Path, names: tuple[str, str]) -> Path:
    """A finished run on a CSV whose two class names are ``names``."""
    rng = np.random.default_rng(0)
    rows = ["x1,x2,label"]
    for i in range(60):
        c = i % 2
        x = rng.normal(2.0 * c, 0.5, size=2)
        rows.append(f'{x[0]:.4f},{x[1]:.4f},"{names[c]}"')
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    config = tmp_path / "c.yaml"
    config.write_text(
        SMALL_CONFIG.format(name="hostile", max_iterations=200).replace(
            "dataset: blobs400", f"dataset: {tmp_path / 'data.csv'}"
        ),
        encoding="utf-8",
    )
    result = invoke("train", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    return next((tmp_path / "runs").iterdir())


def test_class_names_from_data_never_drive_the_terminal(tmp_path: Path) -> None:
    """A class named with an OSC title sequence and one that reads as Rich markup: evaluate
    shows both escaped and literal (the markup one crashed it with exit 1)."""
    run_dir = csv_run(tmp_path, (f"{TITLE}{CLEAR}", "[/]"))
    result = invoke("evaluate", run_dir)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "\\x1b]0;owned\\x07\\x1b[2J" in result.output
    assert "[/]" in result.output
    assert "test accuracy:" in result.output


# --------------------------------------------------------------------------- evaluate / report


@pytest.fixture(scope="module")
def blobs_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("blobs")
    config = tmp / "c.yaml"
    config.write_text(SMALL_CONFIG.format(name="small", max_iterations=300), encoding="utf-8")
    result = invoke("train", config, "--runs-dir", tmp / "runs", "--set", "data.train_on=train+val")
    assert result.exit_code == 0, result.output
    return next((tmp / "runs").iterdir())


def test_evaluate_keeps_one_file_per_split(blobs_run: Path) -> None:
    """--split val no longer overwrites the test scores; a train+val run's val split is not
    held out, and evaluate says so."""
    test = invoke("evaluate", blobs_run)
    assert test.exit_code == 0, test.output
    assert "not a held-out score" not in test.output
    val = invoke("evaluate", blobs_run, "--split", "val")
    assert val.exit_code == 0, val.output
    assert "note: the model was trained on the val split: this is not a held-out score" in (
        " ".join(val.output.split())
    )
    assert read_json(blobs_run / "evaluation-test.json")["split"] == "test"
    scored = read_json(blobs_run / "evaluation-val.json")
    assert scored["split"] == "val" and scored["held_out"] is False
    assert val.output.splitlines()[-1] == str(blobs_run / "evaluation-val.json")


def test_evaluate_on_a_folder_it_cannot_write_still_shows_the_scores(
    blobs_run: Path, tmp_path: Path
) -> None:
    """A run folder evaluate cannot write into (here: a folder where its file goes, which
    stops root too): the scores are printed, then one 'could not write' line, exit 1."""
    import shutil

    run_dir = tmp_path / blobs_run.name
    shutil.copytree(blobs_run, run_dir)
    (run_dir / "evaluation-test.json").unlink(missing_ok=True)
    (run_dir / "evaluation-test.json").mkdir()
    result = invoke("evaluate", run_dir)
    assert result.exit_code == 1, result.output
    assert "test accuracy: " in result.output and "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"error: {run_dir / 'evaluation-test.json'}: could not write ("), last
    assert "internal error" not in result.output


def test_report_on_a_folder_it_cannot_write_is_one_line(blobs_run: Path, tmp_path: Path) -> None:
    import shutil

    run_dir = tmp_path / blobs_run.name
    shutil.copytree(blobs_run, run_dir)
    (run_dir / "report.html").mkdir()
    result = invoke("report", run_dir)
    line = assert_one_line_error(result, code=1)
    assert line.startswith(f"error: {run_dir / 'report.html'}: could not write ("), line


def test_evaluate_refuses_a_run_whose_data_changed(tmp_path: Path) -> None:
    """The CSV a run trained on was edited: its splits would be other splits, so evaluate
    refuses as --resume does (it printed a test score on another split and exited 0)."""
    run_dir = csv_run(tmp_path, ("a", "b"))
    data = tmp_path / "data.csv"
    data.write_text(data.read_text(encoding="utf-8").replace("\n0.", "\n1.", 3), encoding="utf-8")
    result = invoke("evaluate", run_dir)
    line = assert_one_line_error(result, code=2)
    assert "the data differs from what the run was trained on" in line
    assert not list(run_dir.glob("evaluation*.json"))


def test_resume_refuses_a_run_whose_checkpoint_was_deleted(blobs_run: Path, tmp_path: Path) -> None:
    """An interrupted run whose checkpoint.npz is gone: --resume restarted it from the initial
    weights and replaced its history without a word; now it refuses, keeping the folder."""
    import shutil

    run_dir = tmp_path / blobs_run.name
    shutil.copytree(blobs_run, run_dir)
    info = read_json(run_dir / "run.json")
    (run_dir / "run.json").write_text(json.dumps({**info, "status": "interrupted"}))
    (run_dir / "checkpoint.npz").unlink()
    history = (run_dir / "history.csv").read_bytes()
    epochs = len(history.decode().strip().splitlines()) - 1
    result = invoke("train", "--resume", run_dir)
    line = assert_one_line_error(result, code=2)
    assert f"checkpoint.npz is missing, though the run trained {epochs} epoch(s)" in line, line
    assert f"scratchnn train {run_dir / 'config.yaml'}" in line
    assert (run_dir / "history.csv").read_bytes() == history
    assert read_json(run_dir / "run.json")["status"] == "interrupted"


# --------------------------------------------------------------------------- crafted run files


def interrupted_copy(run: Path, tmp_path: Path) -> Path:
    """A copy of ``run`` that run.json says was interrupted (so --resume reads its checkpoint)."""
    import shutil

    run_dir = tmp_path / run.name
    shutil.copytree(run, run_dir)
    info = read_json(run_dir / "run.json")
    (run_dir / "run.json").write_text(json.dumps({**info, "status": "interrupted"}))
    return run_dir


def huge_npy() -> bytes:
    """The header of a .npy file claiming a 1e6 x 1e6 float64 array (8 TB), and no data."""
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 1000000), }"
    header = header.ljust(117) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()


def replace_npz_member(path: Path, member: str, data: bytes) -> None:
    import zipfile

    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members[member] = data
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)


def test_a_model_file_claiming_a_huge_array_is_refused(blobs_run: Path, tmp_path: Path) -> None:
    """numpy believed the header and tried to allocate 7 TiB: an internal MemoryError."""
    run_dir = interrupted_copy(blobs_run, tmp_path)
    (run_dir / "run.json").write_text(json.dumps(read_json(blobs_run / "run.json")))
    replace_npz_member(run_dir / "model.npz", "W0.npy", huge_npy())
    line = assert_one_line_error(invoke("evaluate", run_dir), code=2)
    assert f"{run_dir / 'model.npz'}: unreadable model file (W0.npy claims a" in line, line


def checkpoint_meta(run_dir: Path) -> dict[str, object]:
    with np.load(run_dir / "checkpoint.npz") as data:
        return json.loads(str(data["meta"]))


def write_checkpoint_meta(run_dir: Path, meta: dict[str, object]) -> None:
    with np.load(run_dir / "checkpoint.npz") as data:
        arrays = {key: data[key] for key in data.files}
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(run_dir / "checkpoint.npz", **arrays)


CRAFTED = {
    "a huge array": ("param0.npy claims a", None),
    "a bogus generator state": (
        "sampling_rng is not a random generator state",
        {"sampling_rng": {"bit_generator": "PCG64", "state": {"state": "x", "inc": 3}}},
    ),
    "a wrong type": ("epochs: Input should be a valid integer", {"epochs": "seven"}),
    "a negative count": (
        "iterations: Input should be greater than or equal to 0",
        {"iterations": -1},
    ),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_a_crafted_checkpoint_is_refused_and_the_run_stays_resumable(
    blobs_run: Path, tmp_path: Path, case: str
) -> None:
    """Each was an internal error (MemoryError, TypeError in training, a ValidationError of
    run.json); the bogus generator state also left run.json 'failed'."""
    run_dir = interrupted_copy(blobs_run, tmp_path)
    said, change = CRAFTED[case]
    if change is None:
        replace_npz_member(run_dir / "checkpoint.npz", "param0.npy", huge_npy())
    else:
        write_checkpoint_meta(run_dir, {**checkpoint_meta(run_dir), **change})
    line = assert_one_line_error(invoke("train", "--resume", run_dir), code=2)
    assert f"{run_dir / 'checkpoint.npz'}: unreadable checkpoint (" in line and said in line, line
    assert read_json(run_dir / "run.json")["status"] == "interrupted"


def test_a_checkpoint_is_as_large_after_400_epochs_as_after_20(tmp_path: Path) -> None:
    """checkpoint.npz carried the whole history and grew with every epoch (a 2 MiB disk filled
    at epoch 1,300 of a 21-parameter net); now history.csv holds the rows, appended."""
    sizes = {}
    for epochs in (20, 400):
        config = tmp_path / f"c{epochs}.yaml"
        config.write_text(
            SMALL_CONFIG.format(name=f"e{epochs}", max_iterations=epochs), encoding="utf-8"
        )
        runs_dir = tmp_path / f"runs{epochs}"
        sets = ["train.batch_size=200", "train.checkpoint_every=10"]  # one update an epoch
        result = invoke("train", config, "--runs-dir", runs_dir, *(f"--set={s}" for s in sets))
        assert result.exit_code == 0, result.output
        run_dir = next(runs_dir.iterdir())
        sizes[epochs] = (run_dir / "checkpoint.npz").stat().st_size
        assert checkpoint_meta(run_dir)["history_rows"] == epochs
        lines = (run_dir / "history.csv").read_text().splitlines()
        assert [int(line.split(",")[0]) for line in lines[1:]] == list(range(1, epochs + 1))
    # the same within the digits of its counters (the history alone was ~200 bytes an epoch)
    assert abs(sizes[400] - sizes[20]) < 100, sizes


# --------------------------------------------------------------------------- plots


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


def test_a_bad_mplbackend_is_ignored(tmp_path: Path) -> None:
    """MPLBACKEND=nonsense made matplotlib raise on import, after a whole run had trained."""
    import os
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


# --------------------------------------------------------------------------- diverged weights


def test_evaluate_refuses_a_model_with_nan_weights(blobs_run: Path, tmp_path: Path) -> None:
    """NaN weights predicted one class for every sample and evaluate reported its share."""
    import shutil

    run_dir = tmp_path / blobs_run.name
    shutil.copytree(blobs_run, run_dir)
    with np.load(run_dir / "model.npz") as data:
        arrays = {key: data[key] for key in data.files}
    arrays["W1"][0, 0] = np.nan
    np.savez(run_dir / "model.npz", **arrays)
    line = assert_one_line_error(invoke("evaluate", run_dir), code=2)
    assert "model.npz: W1 holds NaN or infinite values" in line, line


def test_the_estimator_warns_when_its_fit_diverges() -> None:
    """As scikit-learn does for a fit that failed (the CLI exits 3 for the same run)."""
    from sklearn.datasets import make_blobs
    from sklearn.exceptions import ConvergenceWarning

    from scratchnn_cli.estimator import ScratchnnClassifier

    X, y = make_blobs(200, centers=2, random_state=0)
    with pytest.warns(ConvergenceWarning, match="training diverged in epoch"):
        ScratchnnClassifier(train_lr=1e200, train_max_epochs=20, random_state=0).fit(X * 1e100, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # a sound fit: no warning
        ScratchnnClassifier(train_lr=0.05, train_max_epochs=5, random_state=0).fit(X, y)


# --------------------------------------------------------------------------- files and folders


def test_run_files_follow_the_umask(tmp_path: Path) -> None:
    """Every file was created 0600 whatever the umask: a shared runs folder (a Dask cluster's)
    could not be read by the others."""
    import os
    import stat

    config = tmp_path / "c.yaml"
    config.write_text(SMALL_CONFIG.format(name="shared", max_iterations=200), encoding="utf-8")
    for umask, mode in ((0o022, 0o644), (0o077, 0o600)):
        old = os.umask(umask)
        try:
            result = invoke("train", config, "--runs-dir", tmp_path / f"runs{umask:o}")
        finally:
            os.umask(old)
        assert result.exit_code == 0, result.output
        run_dir = next((tmp_path / f"runs{umask:o}").iterdir())
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in run_dir.iterdir()}
        assert set(modes.values()) == {mode}, (umask, modes)


def test_internal_error_logs_stay_in_one_folder_and_the_newest_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each internal error left a scratchnn-error-*.log in /tmp, forever."""
    from scratchnn_cli import experiment
    from scratchnn_cli.cli.common import KEPT_ERROR_LOGS

    def bug(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(experiment, "evaluate_run", bug)
    folder = tmp_path / "cache" / "scratchnn" / "errors"
    for _ in range(KEPT_ERROR_LOGS + 3):
        line = assert_one_line_error(invoke("evaluate", tmp_path), code=1)
        assert f"(traceback in {folder}/scratchnn-error-" in line, line
    logs = list(folder.glob("scratchnn-error-*.log"))
    assert len(logs) == KEPT_ERROR_LOGS
    assert all("RuntimeError: a bug" in log.read_text() for log in logs)


@pytest.mark.parametrize("below", [False, True], ids=["itself", "a parent"])
def test_a_dangling_symlink_as_the_runs_folder_is_named(tmp_path: Path, below: bool) -> None:
    """It was reported as 'is a file', naming its parent."""
    config = tmp_path / "c.yaml"
    config.write_text(SMALL_CONFIG.format(name="x", max_iterations=200), encoding="utf-8")
    link = tmp_path / "runs"
    link.symlink_to(tmp_path / "gone")
    runs_dir = link / "sub" if below else link
    line = assert_one_line_error(invoke("train", config, "--runs-dir", runs_dir))
    assert f"error: {link}: is a symbolic link to {tmp_path / 'gone'}, which does not exist" in (
        line
    ), line


# --------------------------------------------------------------------------- --help pages

COMMANDS = ["train", "evaluate", "reproduce", "sweep", "gradcheck", "summary", "runs", "report"]


@pytest.mark.parametrize("command", [*COMMANDS, "compare"])
def test_help_pages_show_no_python_types(command: str) -> None:
    """They showed <bool> beside flags, <str>, <int range>, <path> and list[str]."""
    import re

    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    types = r"<(?:bool|str|int|float|path|text|int range|float range)>|list\[\w+\]"
    shown = re.findall(types, result.output, flags=re.IGNORECASE)
    assert shown == [], shown


def test_help_pages_name_an_argument_one_way() -> None:
    """The usage line said [config], the panel config, the text CONFIG."""
    import re

    result = invoke("train", "--help")
    assert "Usage: scratchnn train [OPTIONS] [CONFIG]" in result.output
    assert "[config]" not in result.output
    assert re.search(r"│\s+CONFIG\s", result.output) and not re.search(
        r"│\s+config\s", result.output
    )


@pytest.mark.parametrize(
    ("command", "choices"), [("sweep", "<local|dask>"), ("evaluate", "<test|val|train>")]
)
def test_choices_are_listed_and_checked(command: str, choices: str) -> None:
    help_page = invoke(command, "--help").output
    assert choices in help_page
    option = "--backend" if command == "sweep" else "--split"
    line = assert_one_line_error(invoke(command, "x", option, "nonsense"))
    assert f"Invalid value for '{option}'" in line and "nonsense" in line, line
