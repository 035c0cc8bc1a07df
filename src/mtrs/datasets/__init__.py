"""Data sets for mtrs: MovieLens 100K and the synthetic log that knows its ground truth."""

from __future__ import annotations

from mtrs.datasets.movielens import (
    AGE_GROUPS,
    GENRES,
    OFFICIAL_SHA256,
    OFFICIAL_URL,
    MovieLens100K,
    MultitaskTables,
    age_group,
    build_multitask_tables,
    fetch_movielens_100k,
    load_movielens_100k,
    write_tables,
)
from mtrs.datasets.movielens_job import movielens_config, movielens_tables
from mtrs.datasets.quickstart import oracle_metrics, write_synth
from mtrs.datasets.synth import SynthData, SynthSpec, generate

__all__ = [
    "AGE_GROUPS",
    "GENRES",
    "OFFICIAL_SHA256",
    "OFFICIAL_URL",
    "MovieLens100K",
    "MultitaskTables",
    "SynthData",
    "SynthSpec",
    "age_group",
    "build_multitask_tables",
    "fetch_movielens_100k",
    "generate",
    "load_movielens_100k",
    "movielens_config",
    "movielens_tables",
    "oracle_metrics",
    "write_synth",
    "write_tables",
]
