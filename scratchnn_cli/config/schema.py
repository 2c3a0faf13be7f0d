"""The schema of the experiment spec (pydantic): every section, key, type and bound.

The YAML layout is a contract (other tools write these files); see README.md, section "The config".
Every problem is reported as one :class:`ConfigError` line that names the key path.
"""

from __future__ import annotations

import difflib
import inspect
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from scratchnn_cli.nn.layers import ACTIVATIONS, LAYERS, Layer
from scratchnn_cli.nn.network import short_form
from scratchnn_cli.nn.optim.optimizers import OPTIMIZERS, make_optimizer
from scratchnn_cli.nn.optim.schedules import SCHEDULES, make_schedule

BUILTIN_DATASETS = ("blobs400", "circles500", "digits", "fashion-mnist")
BUILTIN_IMAGE_SHAPES = {"digits": (8, 8), "fashion-mnist": (28, 28)}  # (H, W), as data/ loads them
#: the label column of the built-ins that stand for the course's CSV files (blobs400.csv and
#: circles500.csv call it Class, and the shipped specs say ``target: Class``): naming it is true
#: and accepted; any other ``data.target`` of a built-in would be silently ignored, so it is refused
BUILTIN_TARGETS = {"blobs400": "Class", "circles500": "Class"}


def _whole_number(value: Any) -> Any:
    """Accept 1e6 or "1e6" (YAML reads 1e6 as text) where a whole number is expected; 1.5 or
    "1.5" is left for pydantic to refuse ("got a number with a fractional part")."""
    _not_bool(value)
    if isinstance(value, str | float):
        try:
            number = float(value)
        except ValueError:
            return value
        if number.is_integer():
            return int(number)
        if math.isfinite(number):  # "1.5e0": refused as the number it is, not as text
            return number
    return value


def _not_bool(value: Any) -> Any:
    """A bool is not a number anywhere in the spec (``lr: true`` is refused, not read as 1)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got the boolean {str(value).lower()}")
    return value


Number = Annotated[float, BeforeValidator(_not_bool), Field(allow_inf_nan=False)]
# every integer of the spec is a WholeNumber, so 1e3 / "1e6" / 1000.0 mean 1000 / 1000000 /
# 1000 in every int key alike (README: "Numbers written like 1e-8 or 1e6 ... are accepted")
WholeNumber = Annotated[int, BeforeValidator(_whole_number)]
Count = Annotated[WholeNumber, Field(gt=0)]
NonNegativeInt = Annotated[WholeNumber, Field(ge=0)]
PositiveFloat = Annotated[Number, Field(gt=0)]
NonNegativeFloat = Annotated[Number, Field(ge=0)]
Fraction = Annotated[Number, Field(ge=0, le=1)]
Seed = NonNegativeInt

#: the longest ``name``: it names run folders (``<timestamp>-<name>-p003-s1-f2`` in a sweep),
#: and a file name has at most 255 bytes
NAME_MAX_LENGTH = 100


class _Section(BaseModel):
    """A config section: unknown keys are refused, numbers given as strings ("1e-8") accepted."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class AugmentConfig(_Section):
    """``data.augment``: random transforms of each training batch (data/augment.py).

    hflip: mirror left-right with probability 0.5; shift: translate by up to +-shift pixels in
    each direction (filled with 0); rotate: by an angle uniform in [-rotate, rotate] degrees
    (bilinear, filled with 0); noise: add N(0, noise^2) to every pixel (not clipped); erase:
    probability of setting a random rectangle (2-20% of the image) to 0."""

    hflip: bool = False
    shift: NonNegativeInt = 0
    rotate: Annotated[Number, Field(ge=0, le=180)] = 0.0
    noise: NonNegativeFloat = 0.0
    erase: Fraction = 0.0

    @model_validator(mode="after")
    def _something_on(self) -> AugmentConfig:
        if not (self.hflip or self.shift or self.rotate or self.noise or self.erase):
            raise ValueError(
                "turn on at least one of hflip, shift, rotate, noise, erase "
                "(or leave data.augment out)"
            )
        return self


class CVConfig(_Section):
    """``data.cv: {folds: 5, fold: 2}``: train on the other folds of train + val, validate on
    fold ``fold`` (stratified, seeded k-fold; ``folds: 1``: the spec's own train / val split);
    the test split is left empty. Written by ``scratchnn sweep`` into its sub-runs."""

    folds: Count
    fold: NonNegativeInt = 0

    @model_validator(mode="after")
    def _fold_in_range(self) -> CVConfig:
        if self.fold >= self.folds:
            raise ValueError(f"fold {self.fold} is not one of 0 .. {self.folds - 1}")
        return self


class DataConfig(_Section):
    """Which data, which label column, how to split it."""

    dataset: str
    target: str | None = None
    split: tuple[Fraction, Fraction, Fraction] = (0.5, 0.25, 0.25)
    classes: list[Annotated[str | int, BeforeValidator(_not_bool)]] | None = None
    train_size: Count | None = None
    train_on: Literal["train", "train+val"] = "train"
    image_shape: Annotated[list[Count], Field(min_length=2, max_length=3)] | None = None
    scale: Literal["none", "standard", "minmax"] = "none"  # fitted on the train split only
    augment: AugmentConfig | None = None
    cv: CVConfig | None = None  # a cross-validation fold (scratchnn sweep --cv)
    # the seed of the train / val / test split, the CV folds and train_size's sample (default:
    # the run's seed); sweep --seeds keeps it while the runs' seeds (weights, order) vary
    seed: Seed | None = None

    @field_validator("cv")
    @classmethod
    def _cv_trains_on_train(cls, value: CVConfig | None, info: ValidationInfo) -> Any:
        if value is not None and info.data.get("train_on") == "train+val":
            raise ValueError("the held-out fold is the val split: use data.train_on: train")
        return value

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

    @field_validator("target")
    @classmethod
    def _target_of_a_csv(cls, value: str | None, info: ValidationInfo) -> str | None:
        """``data.target`` chooses a CSV file's label column; a built-in's labels are fixed."""
        dataset = info.data.get("dataset")
        if value is None or dataset not in BUILTIN_DATASETS:
            return value
        fixed = BUILTIN_TARGETS.get(dataset)
        if value == fixed:
            return value
        accepted = f"leave data.target out or set it to {fixed}" if fixed else "leave it out"
        raise ValueError(
            f"{dataset} is a built-in dataset with fixed labels: data.target only chooses the "
            f"label column of a CSV file; {accepted}"
        )

    @field_validator("split")
    @classmethod
    def _split_sums_to_one(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if not math.isclose(sum(value), 1.0, abs_tol=1e-6):
            raise ValueError(f"train/val/test fractions must sum to 1 (they sum to {sum(value):g})")
        if value[0] <= 0:
            raise ValueError("the train fraction must be greater than 0")
        return value

    @field_validator("augment")
    @classmethod
    def _augment_fits_images(cls, value: AugmentConfig | None, info: ValidationInfo) -> Any:
        dataset = info.data.get("dataset")
        if value is None or dataset not in BUILTIN_DATASETS:  # a CSV: checked when training
            return value
        if dataset not in BUILTIN_IMAGE_SHAPES:
            raise ValueError(f"{dataset} is not an image dataset: it cannot be augmented")
        H, W = BUILTIN_IMAGE_SHAPES[dataset]
        if 2 * value.shift >= min(H, W):
            raise ValueError(
                f"shift {value.shift} must be below half the image size "
                f"({dataset} images are {H}x{W}: at most {(min(H, W) - 1) // 2})"
            )
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


# --------------------------------------------------------------------------- model.layers

#: the activations ``model.activation`` (the short form) may name (nn/layers/activations.py)
HIDDEN_ACTIVATIONS = tuple(ACTIVATIONS)

#: a number in [0, 1): a rate, a decay, a slope below 0
BelowOne = Annotated[Number, Field(ge=0, lt=1)]


def _kernel_size(value: Any) -> Any:
    """``kernel: 3`` or ``kernel: [3, 5]``: a positive whole number, or a list of two (one
    clear error, rather than one per member of a union)."""

    def positive(size: Any) -> bool:
        return isinstance(size, int) and size > 0

    if isinstance(value, list):
        sizes = [_whole_number(v) for v in value]
        if len(sizes) == 2 and all(map(positive, sizes)):
            return sizes
    elif positive(size := _whole_number(value)):
        return size
    raise ValueError("must be a positive whole number or a list [height, width] of two")


KernelSize = Annotated[int | list[int], BeforeValidator(_kernel_size)]

#: What a layer's constructor signature cannot say, by (layer type, setting): the bounds of a
#: number, the choices of a text. Everything else about a setting (its name, order, type and
#: default, whether it is required) comes from the signature (``_setting_type``). The
#: constructor checks the same bounds again, and every entry is run through it, so a bound
#: missing here is still refused, in the layer's words; stated here, it names the key path and
#: reads as every other key's message.
LAYER_BOUNDS: dict[tuple[str, str], Any] = {
    ("leaky_relu", "alpha"): BelowOne,
    ("dropout", "rate"): BelowOne,
    ("batchnorm", "momentum"): BelowOne,
    ("batchnorm", "epsilon"): PositiveFloat,
    ("conv2d", "padding"): Literal["valid", "same"],
}
#: constructor parameters that are not settings of the spec (the network hands dropout its rng)
NOT_SETTINGS = ("self", "rng")


def _setting_type(kind: str, name: str, annotation: Any) -> Any:
    """The spec type of a layer's constructor parameter: its ``LAYER_BOUNDS`` entry, else from
    its annotation: int is a positive whole number (every whole number a layer takes is a count
    or a size), float a finite number, ``int | None`` an optional whole number, ``int |
    tuple[int, int]`` a kernel size, a ``Literal`` its choices. TypeError, at import, for any
    other annotation: a new kind of setting needs its type stated here."""
    if (kind, name) in LAYER_BOUNDS:
        return LAYER_BOUNDS[kind, name]
    if annotation is int:
        return Count
    if annotation is float:
        return Number
    if get_origin(annotation) is Literal:
        return annotation
    members = set(get_args(annotation))
    if members == {int, type(None)}:
        return Count | None
    if members == {int, tuple[int, int]}:
        return KernelSize
    raise TypeError(f"{kind}: no spec type for the setting {name}: {annotation}")


class _LayerSpec(_Section):
    """One entry of ``model.layers``: ``type`` names the layer (nn/layers/), the other keys are
    its constructor's keyword arguments (generated from its signature: ``_layer_spec``)."""

    def make(self) -> Layer:
        """The layer this entry describes (a new object each call)."""
        return LAYERS[self.type](**self.model_dump(exclude={"type"}))

    @model_validator(mode="after")
    def _layer_accepts(self) -> _LayerSpec:
        self.make()  # the layer's own checks: only one missing from LAYER_BOUNDS fails here
        return self


def _layer_spec(kind: str, layer: type[Layer]) -> type[_LayerSpec]:
    """The spec of the layer ``kind`` (``DenseSpec``...): a ``type`` key, then one key per
    parameter of the layer's constructor (``NOT_SETTINGS`` aside), in the signature's order,
    with its default (none: required) and its type (``_setting_type``)."""
    hints = get_type_hints(layer.__init__)
    fields: dict[str, Any] = {"type": (Literal[kind], kind)}
    example = [f"type: {kind}"]
    for name, param in inspect.signature(layer.__init__).parameters.items():
        if name in NOT_SETTINGS:
            continue
        required = param.default is inspect.Parameter.empty
        fields[name] = (_setting_type(kind, name, hints[name]), ... if required else param.default)
        shown = "..." if required else "null" if param.default is None else param.default
        example.append(f"{name}: {shown}")
    what = " ".join((layer.__doc__ or kind).strip().split("\n\n")[0].split())
    doc = f"``{{{', '.join(example)}}}``: {what}"
    return _publish(
        create_model(f"{layer.__name__}Spec", __base__=_LayerSpec, __doc__=doc, **fields)
    )


def _publish(section: type[BaseModel]) -> Any:
    """Make a generated section a module attribute, so configs pickle (sweep workers)."""
    section.__module__ = __name__
    globals()[section.__name__] = section
    return section


#: the spec of each layer type, in the order of ``LAYERS`` (nn/layers/__init__.py)
LAYER_SPECS: dict[str, type[_LayerSpec]] = {
    kind: _layer_spec(kind, layer) for kind, layer in LAYERS.items()
}


def _type_only(value: Any) -> Any:
    """Let ``relu`` stand for ``{type: relu}`` in ``model.layers``; refuse, in one message,
    what is neither a name nor a mapping."""
    if isinstance(value, str):
        return {"type": value}
    if not isinstance(value, dict | BaseModel):
        raise ValueError(
            "must be a layer's type (relu) or a mapping of its settings ({type: dense, units: 64})"
        )
    return value


LayerSpec = Annotated[
    Annotated[
        Union[tuple(LAYER_SPECS.values())],  # noqa: UP007 (a tuple of generated classes)
        Field(discriminator="type"),
    ],
    BeforeValidator(_type_only),
]


class ModelConfig(_Section):
    """The network: its hidden layers, output, weight initialisation and dtype.

    The layers are written either as ``layers`` (a list, any order of layer types) or in the
    short form ``struct`` + ``activation`` (+ ``dropout``): a dense layer per entry of
    ``struct``, each followed by the activation (and dropout). Never both. The output layer
    (sigmoid for two classes, softmax for more) is added after them."""

    layers: list[LayerSpec] | None = None
    struct: list[Count] = Field(default_factory=list)
    activation: Literal[HIDDEN_ACTIVATIONS] = "sigmoid"
    output: Literal["auto", "sigmoid", "softmax"] = "auto"
    init: Literal["normal", "xavier", "he"] = "normal"
    mu: Number = 0.0
    sigma: PositiveFloat = 0.1
    dropout: BelowOne = 0.0
    dtype: Literal["float64", "float32"] = "float64"

    @model_validator(mode="after")
    def _one_way_to_write_layers(self) -> ModelConfig:
        short = sorted({"struct", "activation", "dropout"} & self.model_fields_set)
        if self.layers is not None and short:
            raise ValueError(
                f"model.layers and model.{'/'.join(short)} both describe the hidden layers: "
                "give one of them (layers is the long form, struct + activation the short one)"
            )
        return self

    def layer_specs(self) -> list[_LayerSpec]:
        """The hidden layers as a list, whichever form the spec used."""
        if self.layers is not None:
            return list(self.layers)
        entries = short_form(self.struct, self.activation, self.dropout)
        return [LAYER_SPECS[kind](**settings) for kind, settings in entries]

    def make_layers(self) -> list[Layer]:
        """The hidden layers, new objects (unbound: each network needs its own)."""
        return [spec.make() for spec in self.layer_specs()]


# --------------------------------------------------------------------------- optimizer, schedule


def _name_only(value: Any, default: str) -> Any:
    """Let ``optimizer: adam`` stand for ``optimizer: {name: adam}``; no name: the default."""
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, dict) and "name" not in value:
        return {"name": default, **value}
    return value


class _RuleSection(_Section):
    """The section of one rule (an update rule or a schedule): ``name`` + its parameters,
    generated from the rule class's signature, so each parameter is declared once, there."""

    def params(self) -> dict[str, Any]:
        """The rule's keyword arguments (unset ones, None, are left to the rule's defaults)."""
        return {k: v for k, v in self.model_dump(exclude={"name"}).items() if v is not None}


def _rule_section(name: str, rule: type, skip: tuple[str, ...], base: type) -> type[BaseModel]:
    """A pydantic section for ``rule``: its ``__init__`` parameters beyond ``skip``, typed from
    the annotations (int: a whole number, float: a number), defaulting to the rule's defaults."""
    hints = get_type_hints(rule.__init__)
    fields: dict[str, Any] = {"name": (Literal[name], name)}
    for pname, p in inspect.signature(rule.__init__).parameters.items():
        if pname in skip:
            continue
        kind = Count if hints[pname] is int else Number
        default = None if p.default is inspect.Parameter.empty else p.default
        fields[pname] = (kind | None, default)
    doc = (rule.__doc__ or name).strip().splitlines()[0]
    return _publish(create_model(f"{rule.__name__}Section", __base__=base, __doc__=doc, **fields))


class _OptimizerSection(_RuleSection):
    @model_validator(mode="after")
    def _rule_accepts(self) -> _OptimizerSection:
        make_optimizer(self.name, [np.zeros(1)], 1.0, **self.params())  # the rule's own checks
        return self

    def hyper(self) -> dict[str, Any]:
        """The hyper-parameters, for ``make_optimizer``."""
        return self.params()


class _ScheduleSection(_RuleSection):
    pass


def _union(rules: dict[str, type], skip: tuple[str, ...], base: type, default: str) -> Any:
    members = tuple(_rule_section(name, rule, skip, base) for name, rule in rules.items())
    return Annotated[
        Union[members],  # noqa: UP007 (a tuple of generated classes)
        BeforeValidator(lambda v: _name_only(v, default)),
        Field(discriminator="name"),
    ]


OptimizerConfig = _union(OPTIMIZERS, ("self", "params", "lr"), _OptimizerSection, "sgd")
ScheduleConfig = _union(SCHEDULES, ("self", "lr0"), _ScheduleSection, "constant")
RULE_SECTIONS = {"optimizer": OPTIMIZERS, "lr_schedule": SCHEDULES}


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
    optimizer: OptimizerConfig = Field(
        default_factory=lambda: {"name": "sgd"}, validate_default=True
    )
    lr_schedule: ScheduleConfig = Field(
        default_factory=lambda: {"name": "constant"}, validate_default=True
    )
    l1: NonNegativeFloat = 0.0
    l2: NonNegativeFloat = 0.0
    early_stopping: EarlyStoppingConfig | None = None
    eval_every: Count = 1
    checkpoint_every: Count | None = None
    engine: Literal["auto", "numpy", "compiled"] = "auto"  # nn/engines.py
    diagnostics: bool = True  # probe statistics for `scratchnn diagnose` (training/diagnostics.py)

    def rows_per_update(self, n_samples: int) -> int:
        """How many of ``n_samples`` training rows one update sees: the batch, or all of them."""
        return n_samples if self.batch_size == "full" else min(self.batch_size, n_samples)

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
        params = schedule.params()
        if schedule.name == "cosine":
            params["epochs"] = schedule.epochs or self.max_epochs
        make_schedule(schedule.name, self.lr, **params)  # the schedule's own checks
        return self


class ExperimentConfig(_Section):
    """The whole experiment spec, as written in ``configs/*.yaml``."""

    name: (
        Annotated[
            str, Field(min_length=1, max_length=NAME_MAX_LENGTH, pattern=r"^[A-Za-z0-9._-]+$")
        ]
        | None
    ) = None
    seed: Seed = 0
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain YAML-ready data (tuples become lists); the schedule and
        optimizer sections keep only the keys their rule takes, so the result validates again."""
        data = self.model_dump(mode="json")
        # only sweep sub-runs have a data.cv or data.seed: other config.yaml files stay as they were
        for key in ("cv", "seed"):
            if data["data"][key] is None:
                del data["data"][key]
        for section in ("optimizer", "lr_schedule"):
            rule = data["train"][section]
            data["train"][section] = {k: v for k, v in rule.items() if v is not None}
        model = data["model"]
        drop = ("struct", "activation", "dropout") if self.model.layers is not None else ("layers",)
        data["model"] = {k: v for k, v in model.items() if k not in drop}
        return data


def format_validation_error(error: ValidationError, source: str) -> str:
    """One line per pydantic error, joined: ``source: key.path: reason``."""
    parts = [_one_error(err) for err in error.errors()]
    head = "; ".join(parts[:3]) + (f"; and {len(parts) - 3} more" if len(parts) > 3 else "")
    return f"{source}: {head}"


def _one_error(err: Any) -> str:
    loc, tag = _user_loc(err["loc"])
    path = ".".join(str(p) for p in loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        return _unknown_key_message(loc, tag)
    if err["type"] == "missing":
        return f"{path}: required key is missing"
    if err["type"] == "union_tag_not_found":  # a model.layers entry without its type
        key = err["ctx"]["discriminator"].strip("'")
        return f"{path}.{key}: required key is missing"
    if err["type"] == "union_tag_invalid":
        key = err["ctx"]["discriminator"].strip("'")
        given = str(err["ctx"]["tag"])
        choices = [t.strip().strip("'") for t in err["ctx"]["expected_tags"].split(",")]
        close = difflib.get_close_matches(given, choices, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"{path}.{key}: unknown {key} '{given}'{hint}: use one of {', '.join(choices)}"
    msg = err["msg"].removeprefix("Value error, ")
    shown = err.get("input")
    got = "" if isinstance(shown, dict | list) or shown is None else f" (got {shown!r})"
    return f"{path}: {msg}{got}"


def _user_loc(loc: tuple[Any, ...]) -> tuple[tuple[Any, ...], str | None]:
    """The key path as the user wrote it: pydantic adds the tag of a tagged union (the rule's
    name, the layer's type) as a path part; drop it, and return it beside the path."""
    parts, tag = [], None
    for i, part in enumerate(loc):
        prev = loc[i - 1] if i else None
        in_union = prev in RULE_SECTIONS or (isinstance(prev, int) and "layers" in loc[:i])
        if in_union and isinstance(part, str) and tag is None:
            tag = part
            continue
        parts.append(part)
    return tuple(parts), tag


def _unknown_key_message(loc: tuple[Any, ...], tag: str | None) -> str:
    """'train.lrr: unknown key (did you mean 'lr'?)' using the fields of the enclosing section;
    in a rule's or a layer's section: 'adam does not take beta (it takes beta1, ...)'."""
    section = ".".join(str(p) for p in loc[:-1])
    key = str(loc[-1])
    if tag is not None:
        takes = _tagged_fields(loc, tag)
        close = difflib.get_close_matches(key, takes, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return (
            f"{section}.{key}: {tag} does not take {key} "
            f"(it takes {', '.join(takes) or 'nothing'}{hint})"
        )
    model: type[BaseModel] = ExperimentConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        candidates = (field.annotation, *get_args(field.annotation)) if field else ()
        sections = [a for a in candidates if isinstance(a, type) and issubclass(a, BaseModel)]
        if not sections:
            break
        model = sections[0]
    close = difflib.get_close_matches(key, list(model.model_fields), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{'.'.join(str(p) for p in loc)}: unknown key{hint}"


def _tagged_fields(loc: tuple[Any, ...], tag: str) -> list[str]:
    """The keys the section of ``tag`` accepts (a rule's parameters, a layer's settings)."""
    if "layers" in loc:
        return [k for k in LAYER_SPECS[tag].model_fields if k != "type"]
    rules = RULE_SECTIONS[str(loc[-2])]
    skip = {"self", "params", "lr", "lr0"}
    return [p for p in inspect.signature(rules[tag].__init__).parameters if p not in skip]
