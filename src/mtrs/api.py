"""The small public API: ``mtrs.load_config``, ``mtrs.train``, ``mtrs.save``, ``mtrs.load``."""

from __future__ import annotations

from pathlib import Path

from mtrs.artifact import LoadedModel, load_model, save_job
from mtrs.config.load import config_from_dict, load_config
from mtrs.config.models import JobConfig
from mtrs.data.tables import Tables
from mtrs.job import Job, run_job


def train(config: JobConfig | str | Path | dict[str, object], tables: Tables | None = None) -> Job:
    """Train a job: read (or stream) its data, fit, train with validation, score the test split.

    Args:
        config: A :class:`JobConfig`, the path of a TOML config, or the config as a dict.
        tables: Tables already in memory (else read from the config's ``[data]``).

    Returns:
        The trained job: ``.test_metrics``, ``.result`` (the epochs), ``.recommender()``.

    Raises:
        MtrsUserError: A bad config or bad data, with one sentence naming what is wrong.
    """
    if isinstance(config, dict):
        cfg = config_from_dict(config)
    elif isinstance(config, JobConfig):
        cfg = config
    else:
        cfg = load_config(config)
    return run_job(cfg, tables)


def save(job: Job, directory: str | Path, overwrite: bool = False) -> Path:
    """Write a trained job as a model directory (safetensors, JSON, TOML; crash-safe).

    ``directory`` must be new or empty, or (with ``overwrite``) an mtrs model directory; see
    :func:`mtrs.artifact.save_job`.

    Raises:
        MtrsUserError: ``directory`` holds something else, or a model and ``overwrite`` is off.
    """
    return save_job(job, directory, overwrite)


def load(directory: str | Path) -> LoadedModel:
    """Load a model directory (checksums verified, never unpickled): ``.recommender()``."""
    return load_model(directory)
