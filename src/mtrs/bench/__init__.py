"""Benchmarks on real data: MovieLens-100K across architectures, with ranking evaluation."""

from __future__ import annotations

from mtrs.bench.movielens import (
    BenchmarkResult,
    RunRecord,
    movielens_config,
    movielens_tables,
    resolve_architectures,
    run_benchmark,
)
from mtrs.bench.ranking import (
    RankingSetup,
    catalog_as_of_test,
    popularity_evaluate,
    rank_evaluate,
    rank_metrics,
    ranking_setup,
)

__all__ = [
    "BenchmarkResult",
    "RankingSetup",
    "RunRecord",
    "catalog_as_of_test",
    "movielens_config",
    "movielens_tables",
    "popularity_evaluate",
    "rank_evaluate",
    "rank_metrics",
    "ranking_setup",
    "resolve_architectures",
    "run_benchmark",
]
