"""Experiments: grids of runs over architectures, λ values and seeds, aggregated and written."""

from __future__ import annotations

from mtrs.experiments.aggregate import aggregate, mean_std, run_stats
from mtrs.experiments.compare import run_comparison, write_comparison
from mtrs.experiments.grid import Grid, run_grid
from mtrs.experiments.ranking import rank_evaluate, ranking_setup
from mtrs.experiments.record import RunRecord

__all__ = [
    "Grid",
    "RunRecord",
    "aggregate",
    "mean_std",
    "rank_evaluate",
    "ranking_setup",
    "run_comparison",
    "run_grid",
    "run_stats",
    "write_comparison",
]
