"""run.json as a pydantic model: what a run folder says about its run.

``RunRecord`` checks the keys every version of scratchnn has written (status, name, started,
stop, network, data, versions, ...): their types, and status being one of ``STATUSES``. Keys it
does not know are kept (``extra="allow"``), so a run.json written by an older or a newer version
reads, and is written back, with everything it holds. The model is strict (no "3" for 3, no
true for 1): a run.json that does not fit is reported, not reinterpreted.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from scratchnn_cli.errors import RunFolderError

Status = Literal["running", "completed", "diverged", "interrupted", "failed"]
STATUSES: tuple[str, ...] = get_args(Status)
#: a run that ended with a model to score (evaluate, report, a sweep's results)
FINISHED: tuple[Status, ...] = ("completed", "diverged")
#: a run ``--resume`` goes on with (and a "running" one whose process is gone)
RESUMABLE: tuple[Status, ...] = ("interrupted", "diverged", "failed")


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class StopRecord(_Record):
    """run.json ``stop``: what ended the training, after how much of it."""

    stopped_by: str
    reason: str
    epochs: int
    iterations: int
    train_seconds: float


class ResumeRecord(_Record):
    """One entry of run.json ``resumed``: when, from which epoch, with which ``--set`` (and
    ``restarted``: why it started again from the initial weights, when it did)."""

    at: str
    from_epoch: int
    overrides: list[str] = Field(default_factory=list)


class RunRecord(_Record):
    """A run.json. Only ``status`` is required: run.json is first written when training starts
    (status running, no stop, no end), and every later version adds to it."""

    status: Status
    name: str | None = None
    config_file: str | None = None
    started: str | None = None
    ended: str | None = None
    seconds: float | None = None
    stop: StopRecord | None = None
    network: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, Any] = Field(default_factory=dict)
    resumed: list[ResumeRecord] = Field(default_factory=list)
    error: str | None = None
    pid: int | None = None
    host: str | None = None
    threads: int | None = None
    engine: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The run.json mapping (the keys of other versions it was read with included)."""
        return self.model_dump(mode="json")


def parse_run_record(data: object, where: str) -> RunRecord:
    """``data`` (parsed JSON) as a RunRecord; RunFolderError naming ``where`` and the first
    problem, in one line, when it does not fit."""
    try:
        return RunRecord.model_validate(data)
    except ValidationError as exc:
        raise RunFolderError(f"{where}: not a valid run record: {first_problem(exc)}") from None


def first_problem(exc: ValidationError) -> str:
    """'key.path: what is wrong (got value)', plus how many other problems there are."""
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "the file"
    text = f"{where}: {first['msg']}"
    if first["type"] != "missing" and first["loc"]:
        shown = repr(first["input"])
        text += f" (got {shown if len(shown) <= 40 else shown[:37] + '...'})"
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more)"
    return text
