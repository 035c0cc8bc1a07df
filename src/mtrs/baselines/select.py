"""Hyper-parameter selection on a validation period, and the ranking evaluation it uses."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtrs.baselines.base import Baseline
from mtrs.baselines.registry import DEFAULT_GRIDS, grid_points, make_baseline
from mtrs.eval.metrics import is_higher_better, ranking_metrics
from mtrs.eval.ranking import rank_metrics

__all__ = ["GridResult", "Selection", "select"]


@dataclass(frozen=True)
class GridResult:
    """One grid point's outcome.

    Attributes:
        params: The hyper-parameters the model was built with.
        metrics: Its ranking metrics on the validation period.
        seconds: Wall time of fitting, scoring and ranking.
    """

    params: dict[str, Any]
    metrics: dict[str, float]
    seconds: float


@dataclass(frozen=True)
class Selection:
    """The outcome of a grid search.

    Attributes:
        metric: The target metric, e.g. ``"ndcg@10"``.
        best: The chosen hyper-parameters.
        table: Every grid point, in grid order.
    """

    metric: str
    best: dict[str, Any]
    table: list[GridResult] = field(default_factory=list)

    @property
    def best_metrics(self) -> dict[str, float]:
        """The validation metrics of the chosen point."""
        return next(r.metrics for r in self.table if r.params == self.best)


def _better(value: float, best: float | None, higher: bool) -> bool:
    if math.isnan(value):
        return False
    if best is None:
        return True
    # Strict: on a tie the earlier grid point (listed first, usually the simpler) stays.
    return value > best if higher else value < best


def select(
    baseline: str | Callable[..., Baseline],
    matrix: Any,
    rows: np.ndarray,
    exclude: np.ndarray,
    relevant: Sequence[np.ndarray],
    ks: Sequence[int] = (10, 20),
    metric: str = "ndcg@10",
    grid: Mapping[str, Sequence[Any]] | None = None,
) -> Selection:
    """Fit every grid point on the training matrix and keep the best on the validation period.

    The training matrix must hold nothing from the validation period (nor the test period),
    and ``exclude`` the training interactions of the evaluated users, so the choice is made
    without any look at the test period.

    Args:
        baseline: A name of :data:`~mtrs.baselines.registry.BASELINES`, or a factory taking
            the grid's parameters as keyword arguments.
        matrix: Training interactions, user × item.
        rows: The evaluated users' rows of ``matrix``.
        exclude: True where an item must not be ranked for the user (seen in training).
        relevant: Per evaluated user, the relevant validation item indices.
        ks: Cut-offs; the metric's cut-off must be among them.
        metric: The metric to optimise, a key of :func:`mtrs.eval.ranking.rank_metrics`'s result.
        grid: Parameter name → values; defaults to the baseline's
            :data:`~mtrs.baselines.registry.DEFAULT_GRIDS` entry (needed for a factory).

    Returns:
        The best parameters and the whole table.

    Raises:
        ValueError: If the metric is not computed for these cut-offs, no grid is known, or
            every point's metric is NaN.

    Shape:
        matrix: [U_all, N]; rows: [U]; exclude: [U, N]; relevant: U arrays.
    """
    # The metric names come from the metric code itself (one dummy user), not a copy of them.
    known = ranking_metrics(np.zeros((1, max(ks)), dtype=bool), np.ones(1, dtype=np.int64), ks)
    if metric not in known:
        raise ValueError(f"Metric {metric!r} is not computed; available: {', '.join(known)}.")
    higher = is_higher_better(metric)
    if grid is None:
        if not isinstance(baseline, str) or baseline not in DEFAULT_GRIDS:
            raise ValueError(f"No default grid for {baseline!r}: pass grid=.")
        grid = DEFAULT_GRIDS[baseline]
    rows = np.asarray(rows, dtype=np.int64)
    table: list[GridResult] = []
    best: dict[str, Any] | None = None
    best_value: float | None = None
    for params in grid_points(grid):
        start = time.perf_counter()
        if isinstance(baseline, str):
            model = make_baseline(baseline, **params)
        else:
            model = baseline(**params)
        scores = model.fit(matrix).scores(rows)
        metrics = rank_metrics(scores, exclude, relevant, ks)
        table.append(GridResult(dict(params), metrics, time.perf_counter() - start))
        if _better(metrics[metric], best_value, higher):
            best, best_value = dict(params), metrics[metric]
    if best is None:
        raise ValueError(f"Every grid point has {metric} = NaN: no user has a relevant item.")
    return Selection(metric, best, table)
