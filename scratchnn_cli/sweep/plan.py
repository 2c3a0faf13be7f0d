"""A sweep's plan: the grid (``--grid`` / ``sweep.grid``, or a seeded random sample of it), the
folds and seeds, the points, and the spec of every sub-run and of the refit; ``sweep.yaml``
holds it (``read_plan``)."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from scratchnn_cli.config import apply_overrides, read_yaml, validate_config
from scratchnn_cli.config.overrides import shown
from scratchnn_cli.config.schema import WholeNumber
from scratchnn_cli.errors import ConfigError, RunFolderError, UserInputError, one_line
from scratchnn_cli.runs.folder import read_config_yaml
from scratchnn_cli.streams import Stream, stream
from scratchnn_cli.yaml_limits import (
    MAX_CONFIG_BYTES,
    MAX_YAML_DEPTH,
    MAX_YAML_VALUES,
    YAMLLimitError,
    bounded_safe_load,
)

SWEEP_FILE = "sweep.yaml"


SWEEP_KEYS = ("grid", "random", "cv", "seeds")

#: the most sub-runs (points x folds x seeds) one sweep trains. Each is a training run with a
#: folder of its own, checked, trained and summarised one by one: 10,000 is days of training on
#: a course machine even for the smallest spec, while a grid past it (10 keys of 10 values is
#: 10^10 points) is a slip, refused before a single point is listed.
MAX_SUB_RUNS = 10_000

#: the largest grid ``random`` draws its points from: scikit-learn's ``ParameterSampler`` counts
#: the grid's points in a 64-bit integer (at most about 9.2 x 10^18), so a larger grid would end
#: in an OverflowError inside it.
MAX_SAMPLED_GRID = 10**18

_WHOLE_NUMBER = TypeAdapter(WholeNumber)  # the spec's integers: 1000, 1e3, "1e3" and 1000.0


@dataclass
class SweepPlan:
    """What a sweep trains (written to ``sweep.yaml``; ``--resume`` reads it back)."""

    name: str
    seed: int
    base: dict[str, Any]  # the spec without its sweep key, --set applied, data path resolved
    grid: dict[str, list[Any]]
    random: int | None
    cv: int | None
    points: list[dict[str, Any]]
    seeds: list[int] | None = None  # --seeds: every point trained with each (older sweeps: none)

    @property
    def folds(self) -> int:
        return self.cv or 1

    @property
    def runs_per_point(self) -> int:
        """Sub-runs of a point: one per fold, for each of ``seeds``."""
        return self.folds * len(self.seeds or [None])

    def sub_run(self, k: int) -> tuple[int | None, int]:
        """(seed, fold) of a point's sub-run ``k``: the folds of the first seed, then the next
        (seed None without ``seeds``: the spec's own)."""
        repeat, fold = divmod(k, self.folds)
        return (None if self.seeds is None else self.seeds[repeat]), fold


def parse_grid_option(items: Iterable[str]) -> dict[str, list[Any]]:
    """``--grid key.path=v1,v2,v3`` (each value read as YAML, so ``model.struct=[5],[10,5]``
    is two lists) -> ``{key.path: [v1, v2, v3]}``. The values are read within the limits of
    yaml_limits.py (nesting, values once aliases are expanded), as a spec is."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip() or not text.strip():
            raise UserInputError(
                f"--grid {shown(item)}: expected key.path=v1,v2,..., e.g. train.lr=0.1,0.01"
            )
        try:
            values = bounded_safe_load(f"[{text}]")
        except YAMLLimitError as exc:
            raise UserInputError(
                f"--grid {shown(item)}: the list of values {exc.problem}"
            ) from None
        except (yaml.YAMLError, ValueError):
            raise UserInputError(f"--grid {shown(item)}: the values are not a YAML list") from None
        if key.strip() in grid:
            raise UserInputError(f"--grid {key.strip()}: given twice; list all its values in one")
        grid[key.strip()] = values
    return grid


def sweep_section(raw: Any, source: str) -> dict[str, Any]:
    """The spec's top-level ``sweep:`` key, checked: ``{grid: {key.path: [values]},
    random: N | null, cv: K | null}``."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: sweep: must be a mapping (grid:, random:, cv:)")
    unknown = sorted(set(raw) - set(SWEEP_KEYS))
    if unknown:
        raise ConfigError(
            f"{source}: sweep.{unknown[0]}: unknown key (use {', '.join(SWEEP_KEYS)})"
        )
    grid = raw.get("grid") or {}
    if not isinstance(grid, dict):
        raise ConfigError(f"{source}: sweep.grid: must map key.path to a list of values")
    return {**raw, "grid": dict(grid)}


def _check_grid(grid: dict[str, Any]) -> dict[str, list[Any]]:
    if not grid:
        raise UserInputError(
            "nothing to sweep: give --grid key.path=v1,v2 or sweep.grid in the spec"
        )
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise UserInputError(f"sweep grid {key}: needs a non-empty list of values")
        if key.split(".")[0] == "seed":
            raise UserInputError(
                f"sweep grid {key}: every point shares the seed; to train each point with "
                "several seeds, give --seeds 0,1,2 (sweep.seeds)"
            )
        if key.split(".")[0] in ("name", "sweep") or key.startswith(("data.cv", "data.seed")):
            raise UserInputError(f"sweep grid {key}: this key cannot be swept")
    return grid


def _refuse_repeated_values(grid: dict[str, list[Any]]) -> None:
    """A value listed twice for one key would train the same points twice (checked for new
    plans only: a sweep.yaml an earlier version wrote is resumed as it is)."""
    for key, values in grid.items():
        seen = set()
        for value in values:
            text = json.dumps(value, sort_keys=True, default=str)
            if text in seen:
                raise UserInputError(f"sweep grid {key}: the value {text} is listed twice")
            seen.add(text)


def _whole_number(value: Any) -> int | None:
    """``value`` as the spec reads an integer key (1000, 1e3, "1e3" or 1000.0 are 1000; see
    ``WholeNumber`` in config/schema.py), or None where it is no whole number (1.5, true, text)."""
    try:
        return _WHOLE_NUMBER.validate_python(value)
    except ValidationError:
        return None


def _check_seeds(seeds: Any) -> list[int] | None:
    """``seeds`` as distinct whole numbers >= 0 (written as the spec's integers may be)."""
    if seeds is None:
        return None
    numbers = [_whole_number(s) for s in seeds] if isinstance(seeds, list) else []
    if not numbers or any(n is None or n < 0 for n in numbers) or len(set(numbers)) < len(numbers):
        raise UserInputError(f"seeds: must be distinct whole numbers >= 0, not {seeds!r}")
    return numbers


def parse_seeds_option(text: str | None) -> list[int] | None:
    """``--seeds 0,1,2`` -> [0, 1, 2] (None when not given)."""
    if text is None:
        return None
    try:
        return _check_seeds([int(part) for part in text.split(",")])
    except ValueError:
        raise UserInputError(f"--seeds {text!r}: expected whole numbers, e.g. 0,1,2") from None


def _count(value: Any, what: str, least: int) -> int | None:
    """``value`` as a whole number >= ``least`` (written as the spec's integers may be: 1e3)."""
    if value is None:
        return None
    number = _whole_number(value)
    if number is None or number < least:
        raise UserInputError(f"{what}: must be a whole number >= {least}, not {value!r}")
    return number


def _check_size(
    grid: dict[str, list[Any]], random: int | None, folds: int, seeds: list[int] | None
) -> None:
    """Refuse a sweep of more than :data:`MAX_SUB_RUNS` sub-runs, or a random sample of a grid
    past :data:`MAX_SAMPLED_GRID`, from the lengths of the grid's lists alone: before a point
    is listed (a few keys of ten values each make billions of them)."""
    size = math.prod(len(values) for values in grid.values())
    lengths = [str(len(values)) for values in grid.values()]
    if len(lengths) > 12:  # the message stays one readable line
        lengths = [*lengths[:10], f"... ({len(lengths)} keys)"]
    product = f"{' x '.join(lengths)} = {_count_text(size)} points"
    if len(grid) == 1:
        product = f"{_count_text(size)} points"
    if random is not None and size > MAX_SAMPLED_GRID:
        raise UserInputError(
            f"sweep grid: {product}: --random draws from at most {MAX_SAMPLED_GRID:,} points; "
            "sweep fewer values"
        )
    points = size if random is None else min(random, size)
    if points < size:
        product += f", {points:,} drawn (random)"
    factors = [f"{folds} folds"] if folds > 1 else []
    factors += [f"{len(seeds)} seeds"] if seeds else []
    sub_runs = points * folds * len(seeds or [None])
    if factors:
        product += f" x {' x '.join(factors)} = {sub_runs:,} sub-runs"
    if sub_runs > MAX_SUB_RUNS:
        raise UserInputError(
            f"sweep grid: {product}: more than the {MAX_SUB_RUNS:,} sub-runs a sweep may train; "
            "sweep fewer values, or train a sample of the points with --random N"
        )


def _count_text(number: int) -> str:
    """``number`` for a message: 1,000,000 written out, up to 21 digits; about 10^30 beyond."""
    return f"{number:,}" if number < 10**21 else f"about 10^{len(str(number)) - 1}"


def _check_resumable(plan: SweepPlan) -> None:
    """Refuse a plan that sweep.yaml could hold but ``--resume`` could not read back: it reads
    sweep.yaml as a spec is read (at most ``MAX_CONFIG_BYTES``, ``MAX_YAML_VALUES`` values,
    ``MAX_YAML_DEPTH`` levels), and a plan lists every point with its values."""
    from scratchnn_cli.runs.folder import yaml_bytes

    data = asdict(plan)
    values, depth = _yaml_size(data)
    size = len(yaml_bytes(data)) if values <= MAX_YAML_VALUES else 0
    if values > MAX_YAML_VALUES or depth > MAX_YAML_DEPTH or size > MAX_CONFIG_BYTES:
        what = (
            f"{values:,} values (at most {MAX_YAML_VALUES:,})"
            if values > MAX_YAML_VALUES
            else f"{depth} levels of nesting (at most {MAX_YAML_DEPTH})"
            if depth > MAX_YAML_DEPTH
            else f"{size:,} bytes (at most {MAX_CONFIG_BYTES:,})"
        )
        raise UserInputError(
            f"sweep grid: the plan of {len(plan.points):,} points is too large for sweep.yaml "
            f"({what}), which --resume reads back; sweep fewer points or smaller values"
        )


def _yaml_size(value: Any) -> tuple[int, int]:
    """(values, levels) of ``value`` written as YAML, counted as yaml_limits.py counts
    them: every scalar and collection one value, a mapping's keys too; a scalar one level."""
    if isinstance(value, dict):
        children = [part for pair in value.items() for part in pair]
    elif isinstance(value, list | tuple):
        children = list(value)
    else:
        return 1, 1
    values, depth = 1, 0
    for child in children:
        child_values, child_depth = _yaml_size(child)
        values += child_values
        depth = max(depth, child_depth)
    return values, depth + 1


def expand_points(
    grid: dict[str, list[Any]], random: int | None, seed: int
) -> list[dict[str, Any]]:
    """The points of ``grid``: all of them (scikit-learn's ``ParameterGrid``), or ``random`` of
    them drawn without replacement (``ParameterSampler``, random_state from the stream
    ``[seed, 9]``). Keys keep the grid's order."""
    from sklearn.model_selection import ParameterGrid, ParameterSampler

    every = ParameterGrid(grid)
    if random is None:
        points = list(every)
    else:
        state = int(stream(seed, Stream.SWEEP_POINTS).integers(2**31))
        points = list(ParameterSampler(grid, n_iter=min(random, len(every)), random_state=state))
    return [{key: point[key] for key in grid} for point in points]


def plan_sweep(
    config_path: Path,
    overrides: list[str] | None = None,
    grid_options: list[str] | None = None,
    random: int | None = None,
    cv: int | None = None,
    seeds: list[int] | None = None,
) -> SweepPlan:
    """Read the spec, its ``sweep:`` key and the command-line options (which win) into a plan."""
    raw = read_yaml(config_path)
    section = sweep_section(raw.pop("sweep", None), str(config_path))
    raw = apply_overrides(raw, overrides or [])
    config = validate_config(copy.deepcopy(raw), str(config_path), default_name=config_path.stem)
    grid = _check_grid({**section.get("grid", {}), **parse_grid_option(grid_options or [])})
    _refuse_repeated_values(grid)
    random = _count(random if random is not None else section.get("random"), "random", 1)
    cv = _count(cv if cv is not None else section.get("cv"), "cv", 2)
    seeds = _check_seeds(seeds if seeds is not None else section.get("seeds"))
    if cv is None and config.data.split[1] == 0:
        raise ConfigError(
            f"{config_path}: data.split has no val part: a sweep without cv scores val"
        )
    _check_size(grid, random, cv or 1, seeds)
    raw["name"] = config.name
    raw.setdefault("data", {})["dataset"] = config.data.dataset  # a CSV: absolute path
    points = expand_points(grid, random, config.seed)
    plan = SweepPlan(config.name or "sweep", config.seed, raw, grid, random, cv, points, seeds)
    _check_resumable(plan)
    return plan


def point_spec(plan: SweepPlan, params: dict[str, Any]) -> dict[str, Any]:
    """The base spec with one point's values set (as ``--set key.path=value`` would)."""
    items = [f"{key}={json.dumps(value)}" for key, value in params.items()]
    return apply_overrides(copy.deepcopy(plan.base), items, option="sweep grid")


def sub_run_name(plan: SweepPlan, point: int, k: int) -> str:
    """``<name>-p003-f2`` (``-p003-s1-f2`` with seeds) for sub-run ``k`` of point 3."""
    seed, fold = plan.sub_run(k)
    return f"{plan.name}-p{point:03d}{'' if seed is None else f'-s{seed}'}-f{fold}"


def sub_run_spec(plan: SweepPlan, point: int, k: int) -> dict[str, Any]:
    """Point ``point``'s spec for its sub-run ``k``: trained on a fold's train part, validated on
    its held-out part, the test split empty (``data.cv``); with seeds, the run's seed is one of
    them while ``data.seed`` keeps the sweep's, so every seed sees the same folds."""
    seed, fold = plan.sub_run(k)
    raw = point_spec(plan, plan.points[point])
    raw["name"] = sub_run_name(plan, point, k)
    raw["data"].update(train_on="train", cv={"folds": plan.folds, "fold": fold})
    if seed is not None:
        raw["data"].setdefault("seed", plan.seed)
        raw["seed"] = seed
    return raw


def best_spec(plan: SweepPlan, params: dict[str, Any]) -> dict[str, Any]:
    """best.yaml: the winning point's spec, trained on train + val (train only when the spec
    has early stopping, which monitors val), scored on test."""
    raw = point_spec(plan, params)
    raw["name"] = f"{plan.name}-best"
    train = raw.get("train") or {}
    if not train.get("early_stopping"):
        raw["data"]["train_on"] = "train+val"
    return raw


def param_cell(value: Any) -> Any:
    """A parameter value as a results.csv cell: lists and mappings as JSON text."""
    return json.dumps(value) if isinstance(value, list | dict) else value


def point_label(plan: SweepPlan, point: int) -> str:
    return " ".join(f"{k}={param_cell(v)}" for k, v in plan.points[point].items())


def read_plan(sweep_dir: Path) -> SweepPlan:
    """The plan in a sweep folder's sweep.yaml (RunFolderError when it is not a sweep folder).

    The file is read as a run's config.yaml is (``runs.folder.read_config_yaml``: a regular
    file of at most ``MAX_CONFIG_BYTES``, YAML within the limits of yaml_limits.py), since a
    sweep folder may come from anyone: a tampered one is refused in one line, not expanded."""
    path = Path(sweep_dir) / SWEEP_FILE
    if not path.is_file():
        raise RunFolderError(f"{sweep_dir}: not a sweep folder (no {SWEEP_FILE})")
    try:
        plan = SweepPlan(**read_config_yaml(path))
    except TypeError as exc:  # a key SweepPlan does not have, or one it needs missing
        raise RunFolderError(f"{path}: unreadable ({one_line(exc)})") from None
    try:  # written by plan_sweep: checked as its options were
        _check_grid(plan.grid)
        plan.random = _count(plan.random, "random", 1)
        plan.cv = _count(plan.cv, "cv", 2)
        plan.seeds = _check_seeds(plan.seeds)
        if not isinstance(plan.base, dict) or not isinstance(plan.points, list):
            raise UserInputError("base: must be a mapping, points: a list")
        if not all(isinstance(point, dict) for point in plan.points):
            raise UserInputError("points: must be mappings of key.path to value")
        if len(plan.points) * plan.runs_per_point > MAX_SUB_RUNS:
            raise UserInputError(f"more than the {MAX_SUB_RUNS:,} sub-runs a sweep may train")
    except UserInputError as exc:
        raise RunFolderError(f"{path}: not a valid sweep plan ({exc})") from None
    return plan
