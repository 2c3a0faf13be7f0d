"""Run folders: what a training run leaves on disk, and how it is written and read back.

- ``runs.folder``: create a run folder, write every file atomically, load run.json, config.yaml
  and model.npz back;
- ``runs.record``: run.json as a pydantic model (``RunRecord``);
- ``runs.checkpoint``: checkpoint.npz, a training Snapshot;
- ``runs.lock``: the lock (``.lock``) held by the process training a run;
- ``runs.listing``: the summary rows of ``scratchnn runs``.

Every public name is importable from ``scratchnn_cli.runs``.
"""

from __future__ import annotations

from scratchnn_cli.runs.checkpoint import checkpoint_bytes, read_checkpoint, write_checkpoint
from scratchnn_cli.runs.folder import (
    atomic_write,
    create_run_dir,
    fsync_all,
    json_bytes,
    load_finished_run,
    load_model_arrays,
    load_run_info,
    load_run_record,
    npz_bytes,
    read_json,
    run_info_bytes,
    write_files,
    write_json,
    write_npz,
    write_run_info,
    write_text,
    write_yaml,
    yaml_bytes,
)
from scratchnn_cli.runs.listing import KILLED, RunRow, list_runs
from scratchnn_cli.runs.lock import LOCK_NAME, RunLock, is_locked
from scratchnn_cli.runs.record import (
    FINISHED,
    RESUMABLE,
    STATUSES,
    ResumeRecord,
    RunRecord,
    Status,
    StopRecord,
    parse_run_record,
)

__all__ = [
    "FINISHED",
    "KILLED",
    "LOCK_NAME",
    "STATUSES",
    "ResumeRecord",
    "RESUMABLE",
    "RunLock",
    "RunRecord",
    "RunRow",
    "Status",
    "StopRecord",
    "atomic_write",
    "checkpoint_bytes",
    "create_run_dir",
    "fsync_all",
    "is_locked",
    "json_bytes",
    "list_runs",
    "load_finished_run",
    "load_model_arrays",
    "load_run_info",
    "load_run_record",
    "npz_bytes",
    "parse_run_record",
    "read_checkpoint",
    "read_json",
    "run_info_bytes",
    "write_checkpoint",
    "write_files",
    "write_json",
    "write_npz",
    "write_run_info",
    "write_text",
    "write_yaml",
    "yaml_bytes",
]
