"""``--set key.path=value`` overrides, applied to the raw YAML mapping before validation."""

from __future__ import annotations

from typing import Any

import yaml

from scratchnn_cli.errors import ConfigError
from scratchnn_cli.yaml_limits import MAX_YAML_DEPTH, YAMLLimitError, bounded_safe_load

#: the most characters of an override quoted in an error message: enough to recognise it, while
#: a 10,000-character value does not turn the one-line message into a screenful
SHOWN_CHARS = 80


def apply_overrides(
    raw: dict[str, Any], overrides: list[str], option: str = "--set"
) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides; the value is parsed as YAML (so 0.01 is a number),
    or kept as its text where it is a value PyYAML cannot build (2001-13-01), for the schema to
    judge. ``option`` names where they come from in error messages (``--set``, a sweep's grid)."""
    for item in overrides:
        key, sep, text = item.partition("=")
        where = f"{option} {shown(item)}"
        if not sep or not key.strip():
            raise ConfigError(f"{where}: expected key.path=value, e.g. train.lr=0.01")
        value = _parse_value(text, where)
        node = raw
        parts = key.strip().split(".")
        if not all(part.strip() for part in parts):  # train..lr, .lr, train.
            raise ConfigError(f"{where}: empty part in the key path {key.strip()!r}")
        if len(parts) > MAX_YAML_DEPTH:  # as deep as a file may nest
            raise ConfigError(f"{where}: the key path has more than {MAX_YAML_DEPTH} parts")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{where}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return raw


def shown(item: str) -> str:
    """``item`` quoted for a message, cut to :data:`SHOWN_CHARS` characters."""
    if len(item) <= SHOWN_CHARS:
        return repr(item)
    return f"{item[:SHOWN_CHARS]!r}... ({len(item):,} characters)"


def _parse_value(text: str, where: str) -> Any:
    """The value of one override, read as YAML within the limits of yaml_limits.py.

    Text that is not YAML (``[10`` with its ``]`` missing) is refused with PyYAML's word on
    it, naming the override: kept as text, it would be blamed on the spec file by the schema
    ("model.struct: Input should be a valid list"). A value PyYAML parses but cannot build
    (the impossible date 2001-13-01) is kept as its text: it may be a name. ``where`` names
    the override in messages."""
    if not text.strip():
        return text
    try:
        return bounded_safe_load(text)
    except YAMLLimitError as exc:
        raise ConfigError(f"{where}: the value {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{where}: the value is not valid YAML ({_yaml_problem(exc)}); "
            "put it in YAML quotes to give it as text"
        ) from None
    except ValueError:  # well-formed, but an impossible date (2001-13-01)
        return text


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's complaint in one line: 'while parsing a flow sequence: expected ',' or ']', but
    got '<stream end>''."""
    context = getattr(exc, "context", None)
    problem = getattr(exc, "problem", None)
    if problem is None:
        return str(exc).splitlines()[0]
    return f"{context}: {problem}" if context else str(problem)
