"""The experiment spec: its schema, YAML loading and ``--set key.path=value`` overrides.

The YAML layout is a contract (other tools write these files); see README.md, section "The config".
Every problem is reported as one :class:`ConfigError` line that names the key path.
"""

from __future__ import annotations

import difflib
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

BUILTIN_DATASETS = ("blobs400", "circles500", "digits", "fashion-mnist")


def _whole_number(value: Any) -> Any:
    """Accept 1e6 or "1e6" (YAML reads 1e6 as text) where a whole number is expected."""
    if isinstance(value, str | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except ValueError:
            return value
        if number.is_integer():
            return int(number)
    return value


Count = Annotated[int, BeforeValidator(_whole_number), Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class _Section(BaseModel):
    """A config section: unknown keys are refused, numbers given as strings ("1e-8") accepted."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    """Which data, which label column, how to split it."""

    dataset: str
    target: str | None = None
    split: tuple[Fraction, Fraction, Fraction] = (0.5, 0.25, 0.25)
    classes: list[str | int] | None = None
    train_size: Count | None = None
    train_on: Literal["train", "train+val"] = "train"
    scale: Literal["none", "standard", "minmax"] = "none"  # fitted on the train split only

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, value: str) -> str:
        if value in BUILTIN_DATASETS:
            return value
        path = Path(os.path.expandvars(value)).expanduser()
        if path.suffix.lower() != ".csv" and not path.exists():
            suggestion = difflib.get_close_matches(value, BUILTIN_DATASETS, n=1)
            hint = f" (did you mean '{suggestion[0]}'?)" if suggestion else ""
            raise ValueError(
                f"unknown dataset '{value}'{hint}: use one of {', '.join(BUILTIN_DATASETS)} "
                "or a path to a CSV file"
            )
        if not path.is_file():
            raise ValueError(f"CSV file not found: {path}")
        return str(path.resolve())

    @field_validator("split")
    @classmethod
    def _split_sums_to_one(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if not math.isclose(sum(value), 1.0, abs_tol=1e-6):
            raise ValueError(f"train/val/test fractions must sum to 1 (they sum to {sum(value):g})")
        if value[0] <= 0:
            raise ValueError("the train fraction must be greater than 0")
        return value

    @field_validator("classes")
    @classmethod
    def _distinct_classes(cls, value: list[str | int] | None) -> list[str | int] | None:
        if value is not None:
            if len(value) < 2:
                raise ValueError("list at least two classes")
            if len({str(v) for v in value}) != len(value):
                raise ValueError("classes must be distinct")
        return value


class ModelConfig(_Section):
    """The network: hidden layer sizes (``struct``), activations, weight initialisation."""

    struct: list[Annotated[int, Field(gt=0)]] = Field(default_factory=list)
    activation: Literal["sigmoid", "tanh", "relu", "leaky_relu"] = "sigmoid"
    output: Literal["auto", "sigmoid", "softmax"] = "auto"
    init: Literal["normal", "xavier", "he"] = "normal"
    mu: Annotated[float, Field(allow_inf_nan=False)] = 0.0
    sigma: PositiveFloat = 0.1
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0
    dtype: Literal["float64", "float32"] = "float64"


def _name_only(value: Any) -> Any:
    """Let ``optimizer: adam`` stand for ``optimizer: {name: adam}`` (same for lr_schedule)."""
    return {"name": value} if isinstance(value, str) else value


# The hyper-parameters each update rule takes (the rest are refused, not silently ignored).
OPTIMIZER_PARAMS: dict[str, tuple[str, ...]] = {
    "sgd": (),
    "momentum": ("beta",),
    "nesterov": ("beta",),
    "rmsprop": ("beta", "epsilon"),
    "adam": ("beta1", "beta2", "epsilon"),
    "adamw": ("beta1", "beta2", "epsilon", "weight_decay"),
}


class OptimizerConfig(_Section):
    """The update rule and its hyper-parameters; unset ones take the rule's defaults."""

    name: Literal["sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"] = "sgd"
    beta: Annotated[float, Field(ge=0, lt=1)] | None = None
    beta1: Annotated[float, Field(ge=0, lt=1)] | None = None
    beta2: Annotated[float, Field(ge=0, lt=1)] | None = None
    epsilon: PositiveFloat | None = None
    weight_decay: NonNegativeFloat | None = None

    @model_validator(mode="after")
    def _params_fit_rule(self) -> OptimizerConfig:
        allowed = OPTIMIZER_PARAMS[self.name]
        given = [
            k
            for k in ("beta", "beta1", "beta2", "epsilon", "weight_decay")
            if getattr(self, k) is not None
        ]
        extra = [k for k in given if k not in allowed]
        if extra:
            takes = ", ".join(allowed) or "no hyper-parameters"
            raise ValueError(f"{self.name} does not take {', '.join(extra)} (it takes {takes})")
        return self

    def hyper(self) -> dict[str, float]:
        """The hyper-parameters that were set, for ``make_optimizer``."""
        return {
            k: getattr(self, k) for k in OPTIMIZER_PARAMS[self.name] if getattr(self, k) is not None
        }


SCHEDULE_PARAMS: dict[str, tuple[str, ...]] = {
    "constant": (),
    "step": ("drop", "every"),
    "exponential": ("gamma",),
    "cosine": ("lr_min", "epochs"),
}


class ScheduleConfig(_Section):
    """Learning rate per epoch: constant, step (x drop every ``every`` epochs), exponential
    (x gamma each epoch) or cosine (from lr down to lr_min over ``epochs`` epochs)."""

    name: Literal["constant", "step", "exponential", "cosine"] = "constant"
    drop: Annotated[float, Field(gt=0, le=1)] = 0.5
    every: Count = 10
    gamma: Annotated[float, Field(gt=0, le=1)] = 0.95
    lr_min: NonNegativeFloat = 0.0
    epochs: Count | None = None

    @model_validator(mode="after")
    def _params_fit_schedule(self) -> ScheduleConfig:
        takes = SCHEDULE_PARAMS[self.name]
        extra = sorted(k for k in self.model_fields_set - {"name"} if k not in takes)
        if extra:
            raise ValueError(
                f"a {self.name} schedule does not take {', '.join(extra)} "
                f"(it takes {', '.join(takes) or 'no parameters'})"
            )
        return self


class EarlyStoppingConfig(_Section):
    """Stop when the monitored validation score has not improved for ``patience`` evaluations."""

    monitor: Literal["val_cost", "val_accuracy"] = "val_cost"
    patience: Count = 5
    min_delta: NonNegativeFloat = 0.0
    restore_best: bool = True


class TrainConfig(_Section):
    """How the weights are fitted: batches, update rule, penalties, schedules and stopping rules."""

    lr: PositiveFloat = 0.001
    eps: NonNegativeFloat = 1e-8
    max_iterations: Count = 1_000_000
    max_epochs: Count | None = None
    batch_size: Annotated[int, Field(gt=0)] | Literal["full"] = 1
    sampling: Literal["random", "shuffle"] = "random"
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    lr_schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    l1: NonNegativeFloat = 0.0
    l2: NonNegativeFloat = 0.0
    early_stopping: EarlyStoppingConfig | None = None
    eval_every: Count = 1
    checkpoint_every: Count | None = None

    _wrap_names = field_validator("optimizer", "lr_schedule", mode="before")(
        lambda cls, v: _name_only(v)
    )

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch_size(cls, value: Any) -> Any:
        value = _whole_number(value)
        if value == "full" or (
            isinstance(value, int) and not isinstance(value, bool) and value > 0
        ):
            return value
        raise ValueError("must be a positive whole number or 'full'")

    @model_validator(mode="after")
    def _cosine_needs_length(self) -> TrainConfig:
        schedule = self.lr_schedule
        if schedule.name == "cosine" and not (schedule.epochs or self.max_epochs):
            raise ValueError("lr_schedule: cosine needs lr_schedule.epochs or train.max_epochs")
        if schedule.name == "cosine" and schedule.lr_min > self.lr:
            raise ValueError(
                f"lr_schedule.lr_min ({schedule.lr_min:g}) is above train.lr ({self.lr:g})"
            )
        return self


class ExperimentConfig(_Section):
    """The whole experiment spec, as written in ``configs/*.yaml``."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")] | None = None
    seed: Annotated[int, Field(ge=0)] = 0
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain YAML-ready data (tuples become lists); the schedule and
        optimizer sections keep only the keys their rule takes, so the result validates again."""
        data = self.model_dump(mode="json")
        schedule = data["train"]["lr_schedule"]
        takes = ("name", *SCHEDULE_PARAMS[schedule["name"]])
        data["train"]["lr_schedule"] = {k: v for k, v in schedule.items() if k in takes}
        optimizer = data["train"]["optimizer"]
        data["train"]["optimizer"] = {k: v for k, v in optimizer.items() if v is not None}
        return data


def format_validation_error(error: ValidationError, source: str) -> str:
    """One line per pydantic error, joined: ``source: key.path: reason``."""
    parts = []
    for err in error.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            parts.append(_unknown_key_message(err["loc"]))
            continue
        if err["type"] == "missing":
            parts.append(f"{loc}: required key is missing")
            continue
        msg = err["msg"].removeprefix("Value error, ")
        shown = err.get("input")
        got = "" if isinstance(shown, dict | list) or shown is None else f" (got {shown!r})"
        parts.append(f"{loc}: {msg}{got}")
    head = "; ".join(parts[:3]) + (f"; and {len(parts) - 3} more" if len(parts) > 3 else "")
    return f"{source}: {head}"


def _unknown_key_message(loc: tuple[Any, ...]) -> str:
    """'unknown key train.lrr (did you mean 'lr'?)' using the fields of the enclosing section."""
    model: type[BaseModel] = ExperimentConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        candidates = (field.annotation, *get_args(field.annotation)) if field else ()
        sections = [a for a in candidates if isinstance(a, type) and issubclass(a, BaseModel)]
        if not sections:
            break
        model = sections[0]
    key = str(loc[-1])
    close = difflib.get_close_matches(key, list(model.model_fields), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{'.'.join(str(p) for p in loc)}: unknown key{hint}"
