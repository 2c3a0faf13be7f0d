"""The experiment spec: its schema (``schema``), YAML loading (``load``), ``--set`` (``overrides``).

The YAML layout is a contract (other tools write these files); see README.md, section "The config".
"""

from scratchnn_cli.config.load import load_config, read_yaml, validate_config
from scratchnn_cli.config.overrides import apply_overrides
from scratchnn_cli.config.schema import (
    DataConfig,
    ExperimentConfig,
    ModelConfig,
    TrainConfig,
)

__all__ = [
    "DataConfig",
    "ExperimentConfig",
    "ModelConfig",
    "TrainConfig",
    "apply_overrides",
    "validate_config",
    "load_config",
    "read_yaml",
]
