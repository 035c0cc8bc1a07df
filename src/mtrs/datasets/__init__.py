"""Public datasets turned into mtrs tables: MovieLens 100K."""

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

__all__ = [
    "AGE_GROUPS",
    "GENRES",
    "OFFICIAL_SHA256",
    "OFFICIAL_URL",
    "MovieLens100K",
    "MultitaskTables",
    "age_group",
    "build_multitask_tables",
    "fetch_movielens_100k",
    "load_movielens_100k",
    "write_tables",
]
