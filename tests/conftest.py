"""Fixtures shared by the test files.

Every test: signal handlers as they were before the test (the CLI's commands, run in-process by
CliRunner, install their own for Ctrl-C and SIGTERM), and temp files (internal-error logs) kept
out of /tmp.
Finished runs that tests of several files read (each file gets its own, or one for the session
where no test changes it)."""

from __future__ import annotations

import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    DIGITS_CONFIG,
    FINITE_ITERATIONS,
    LAYERS_CONFIG,
    SMALL_CONFIG,
    digits_spec,
    invoke,
    only_run,
    write_config,
)

from scratchnn_cli.config import validate_config
from scratchnn_cli.data import load_dataset


@pytest.fixture(autouse=True)
def _signal_handlers_restored() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture(scope="module")
def blobs_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small finished run (blobs400, 300 updates) trained on train+val."""
    tmp = tmp_path_factory.mktemp("blobs")
    config = tmp / "c.yaml"
    config.write_text(SMALL_CONFIG.format(name="small", max_iterations=300), encoding="utf-8")
    result = invoke("train", config, "--runs-dir", tmp / "runs", "--set", "data.train_on=train+val")
    assert result.exit_code == 0, result.output
    return next((tmp / "runs").iterdir())


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small finished run (blobs400, 600 updates: 3 epochs of history)."""
    base = tmp_path_factory.mktemp("display")
    config = base / "small.yaml"
    config.write_text(SMALL_CONFIG.format(name="small", max_iterations=600), encoding="utf-8")
    result = invoke("train", config, "--runs-dir", base / "runs")
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(autouse=True, scope="session")
def _temp_files_in_the_session_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """An internal error may write its traceback to a temp file: keep those out of /tmp."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("tempfiles")))
        yield


@pytest.fixture(scope="session")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits run of test_interrupts.py's ``sigint`` job, trained in one go (in-process);
    tests only read it (or copy it)."""
    base = tmp_path_factory.mktemp("whole")
    config = write_config(
        base, DIGITS_CONFIG.format(name="digits", max_iterations=FINITE_ITERATIONS)
    )
    result = invoke("train", config, "--runs-dir", base / "runs")
    assert result.exit_code == 0, result.output
    return only_run(base / "runs")


@pytest.fixture
def layers_config(tmp_path: Path) -> Path:
    path = tmp_path / "layers.yaml"
    path.write_text(LAYERS_CONFIG, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def digits_dataset() -> Any:
    config = validate_config(digits_spec(["global_avgpool"]), "spec.yaml")
    return load_dataset(config.data, config.seed, config.model.dtype)
