"""Job configuration: pydantic models, TOML loading and the name registry."""

from __future__ import annotations

from mtrs.config.load import dump_config, load_config
from mtrs.config.models import (
    DataConfig,
    FeatureConfig,
    JobConfig,
    ModelConfig,
    RecommendConfig,
    RelationConfig,
    SplitConfig,
    TaskConfig,
    TrainConfig,
)

__all__ = [
    "DataConfig",
    "FeatureConfig",
    "JobConfig",
    "ModelConfig",
    "RecommendConfig",
    "RelationConfig",
    "SplitConfig",
    "TaskConfig",
    "TrainConfig",
    "dump_config",
    "load_config",
]
