"""runs/checkpoint.py and the model / checkpoint files a run folder holds: a deleted, truncated or
crafted checkpoint.npz (or model.npz) is refused with one line and the run stays resumable, and a
checkpoint does not grow with the epochs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    SMALL_CONFIG,
    assert_one_line_error,
    invoke,
    read_json,
)

# ----------------------------------------------------------- deleted, crafted and growing run files


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


@pytest.mark.slow
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


# --------------------------------------------------------------------------- a truncated checkpoint


@pytest.mark.slow
def test_resume_refuses_a_truncated_checkpoint_and_changes_nothing(
    uninterrupted: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / uninterrupted.name
    shutil.copytree(uninterrupted, run_dir)
    info = read_json(run_dir / "run.json")
    (run_dir / "run.json").write_text(json.dumps({**info, "status": "interrupted"}))
    whole = (run_dir / "checkpoint.npz").read_bytes()
    (run_dir / "checkpoint.npz").write_bytes(whole[:200])
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    line = assert_one_line_error(invoke("train", "--resume", run_dir))  # was: exit 1
    assert (
        line
        == f"error: {run_dir / 'checkpoint.npz'}: unreadable checkpoint (File is not a zip file)"
    )
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before
