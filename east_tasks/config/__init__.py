"""Typed experiment configuration: the single source of defaults, validated before any model loads.

`schema` (with `data`) holds the sections and their fields, `presets` the presets and how values merge into a
config, `files` the YAML config and sweep files. Import from here: the names below are the package's interface.
"""

from __future__ import annotations

from east_tasks.config.data import SOURCE_DEFAULTS, ColumnMap, DataConfig
from east_tasks.config.files import (
    SweepFile,
    config_yaml,
    load_config_file,
    load_sweep_file,
    read_yaml,
    write_config_file,
)
from east_tasks.config.presets import PRESETS, checked_config, load_config, merge_fields
from east_tasks.config.schema import (
    DEFAULT_LR,
    BackendConfig,
    BalanceConfig,
    EvalConfig,
    ExperimentConfig,
    GuardConfig,
    LoraConfig,
    Loss,
    SamplingConfig,
    StoreConfig,
    SweepGrid,
    Tracker,
    TrackingConfig,
    TrainConfig,
    WeightingConfig,
    default_ks,
)
from east_tasks.core.styles import BUILTIN_ANSWER_STYLES

__all__ = ["BUILTIN_ANSWER_STYLES", "DEFAULT_LR", "PRESETS", "SOURCE_DEFAULTS", "BackendConfig", "BalanceConfig",
           "ColumnMap", "DataConfig", "EvalConfig", "ExperimentConfig", "GuardConfig", "LoraConfig", "Loss",
           "SamplingConfig", "StoreConfig", "SweepFile", "SweepGrid", "TrackingConfig", "Tracker", "TrainConfig",
           "WeightingConfig", "checked_config", "config_yaml", "default_ks", "load_config", "load_config_file",
           "load_sweep_file", "merge_fields", "read_yaml", "write_config_file"]
