"""Shared set-up of the trainer tests: a synthetic log with the packaged quickstart config."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from mtrs.datasets.synth import SynthSpec, generate, write

QUICKSTART = Path(__file__).parents[2] / "src" / "mtrs" / "configs" / "quickstart.toml"

SynthJob = Callable[[SynthSpec], Path]


@pytest.fixture(scope="session")
def synth_job(tmp_path_factory: pytest.TempPathFactory) -> SynthJob:
    """Writes a synthetic log of a spec and the quickstart config ``job.toml``; returns the dir."""

    def make(spec: SynthSpec) -> Path:
        out = tmp_path_factory.mktemp("synth")
        write(generate(spec), out)
        shutil.copy(QUICKSTART, out / "job.toml")
        return out

    return make
