"""``--set key.path=value`` overrides, applied to the raw YAML mapping before validation."""

from __future__ import annotations

from typing import Any

import yaml

from scratchnn_cli.errors import ConfigError


def apply_overrides(
    raw: dict[str, Any], overrides: list[str], option: str = "--set"
) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides; the value is parsed as YAML (so 0.01 is a number),
    or kept as its text where it is not YAML or is a value PyYAML cannot build (2001-13-01).
    ``option`` names where they come from in error messages (``--set``, a sweep's grid)."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{option} {item!r}: expected key.path=value, e.g. train.lr=0.01")
        try:
            value = yaml.safe_load(text) if text.strip() else text
        except (yaml.YAMLError, ValueError):  # not YAML, or an impossible date (2001-13-01)
            value = text  # kept as text: the schema then says what is wrong with it
        node = raw
        parts = key.strip().split(".")
        if not all(part.strip() for part in parts):  # train..lr, .lr, train.
            raise ConfigError(f"{option} {item!r}: empty part in the key path {key.strip()!r}")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{option} {item!r}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return raw
