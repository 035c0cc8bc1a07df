"""Two tiny trained models for the service tests, trained once per session."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from mtrs.artifact import save_job
from mtrs.config.load import config_from_dict
from mtrs.datasets.quickstart import write_synth
from mtrs.datasets.synth import SynthSpec
from mtrs.job import run_job


@dataclass(frozen=True)
class Models:
    """``a``: the quickstart job (shared bottom); ``b``: the same data, single-task towers.

    Items carry titles (``brand``) and display columns (``category``, ``price``).
    """

    a: Path
    b: Path
    data: Path


def _train(config: Path, out: Path, architecture: str, time_gaps: bool = False) -> Path:
    raw = tomllib.loads(config.read_text("utf-8"))
    raw["model"]["sequence"] = {"time_gaps": time_gaps}
    for key in ("interactions", "users", "items"):
        raw["data"][key] = str(config.parent / raw["data"][key])
    raw["train"].update({"epochs": 1, "progress": False, "device": "cpu"})
    raw["model"]["architecture"] = architecture
    # Titles and display columns, so the lists carry them.
    raw["data"].update({"item_title_col": "brand", "display_cols": ["category", "price"]})
    return save_job(run_job(config_from_dict(raw)), out)


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    root = tmp_path_factory.mktemp("serve")
    config = write_synth(
        root / "data", SynthSpec(num_users=80, num_items=40, num_events=3_000, seed=3)
    )
    return Models(
        _train(config, root / "model_a", "shared_bottom"),
        _train(config, root / "model_b", "single"),
        root / "data",
    )


@pytest.fixture(scope="session")
def gap_model(models: Models, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Model ``a``'s job with time gaps in the history (``model.sequence.time_gaps``)."""
    out = tmp_path_factory.mktemp("serve_gaps") / "model"
    return _train(models.data / "mtrs.toml", out, "shared_bottom", time_gaps=True)
