"""Read a YAML spec, apply ``--set`` overrides, validate it into an ExperimentConfig."""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from scratchnn_cli.config.overrides import apply_overrides
from scratchnn_cli.config.schema import (
    NAME_MAX_LENGTH,
    ExperimentConfig,
    format_validation_error,
)
from scratchnn_cli.errors import ConfigError
from scratchnn_cli.yaml_limits import BoundedSafeLoader, YAMLLimitError, read_spec_text


class _UniqueKeyLoader(BoundedSafeLoader):
    """The bounded safe loader (yaml_limits.py), refusing a key given twice in one
    mapping (PyYAML keeps the last silently: ``lr: 0.1`` then ``lr: 0.5`` further down would
    train with 0.5, unnoticed)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # <<: keys a later key may override
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):  # the base class says so
                continue
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"found duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping; syntax errors and values PyYAML cannot build (an impossible date
    such as 2001-13-01) name the file, line and column, and so do documents nested too deep
    or expanding to too many values (yaml_limits.py)."""
    text = read_spec_text(path)
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except YAMLLimitError as exc:
        where = f"{path}:{exc.mark.line + 1}:{exc.mark.column + 1}" if exc.mark else str(path)
        raise ConfigError(f"{where}: the YAML document {exc.problem}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from None
    except ValueError as exc:  # well-formed, but a value PyYAML cannot build (2001-13-01)
        raise ConfigError(f"{_locate_bad_value(text, path)}: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the config must be a mapping of keys (data:, model:, train:)")
    return raw


def _locate_bad_value(text: str, path: Path) -> str:
    """``path:line:column: invalid YAML value 'text'`` for the first scalar of ``text`` that
    PyYAML parses but cannot build; just ``path: invalid YAML value`` if none is found."""
    builder = yaml.SafeLoader("")
    try:
        nodes, seen = [yaml.compose(text, Loader=BoundedSafeLoader)], set()
        while nodes:
            node = nodes.pop(0)
            if id(node) in seen:  # an alias (&a ... *a), maybe of a node holding itself
                continue
            seen.add(id(node))
            if isinstance(node, yaml.ScalarNode):
                try:
                    builder.construct_object(node)
                except ValueError:
                    mark = node.start_mark
                    where = f"{path}:{mark.line + 1}:{mark.column + 1}"
                    return f"{where}: invalid YAML value {node.value!r}"
            elif isinstance(node, yaml.MappingNode):
                nodes[:0] = [part for pair in node.value for part in pair]
            elif node is not None:
                nodes[:0] = node.value
    finally:
        builder.dispose()
    return f"{path}: invalid YAML value"


def validate_config(
    raw: dict[str, Any], source: str, default_name: str | None = None
) -> ExperimentConfig:
    """Validate a raw mapping into an :class:`ExperimentConfig` (``ConfigError`` on any problem)."""
    try:
        config = ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None
    if config.name is None and default_name:
        safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in default_name)
        config.name = (safe or "experiment")[:NAME_MAX_LENGTH]  # a run folder's name fits
    return config


def load_config(path: Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load, override and validate the spec in ``path``; the name defaults to the file stem."""
    raw = read_yaml(path)
    raw.pop("sweep", None)  # the grid of ``scratchnn sweep``: not part of one experiment
    raw = apply_overrides(raw, overrides or [])
    return validate_config(raw, str(path), default_name=path.stem)
