"""Choosing the merge strategy and weights on the validation period's ranking.

The merged list is only as good as its weights: adding p(like) to p(interact) with equal
weights made MovieLens lists worse than p(interact) alone. The fit searches every strategy,
starting from each single list and adding the other lists one at a time over a grid of
relative weights, and keeps the best validation metric; every single list is a candidate, so
the fitted merge is never worse on validation than the best single-task list.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtrs.artifact import load_model, write_manifest
from mtrs.config.load import dump_config
from mtrs.data.split import VALID
from mtrs.eval.metrics import is_higher_better
from mtrs.eval.ranking import rank_metrics
from mtrs.experiments.ranking import list_scores, ranking_setup
from mtrs.outdir import rewrite
from mtrs.prepare import prepare
from mtrs.recommend.merge import ScoreFusion

STRATEGIES = ("weighted_sum", "weighted_product", "rrf")
RELATIVE_WEIGHTS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)


@dataclass
class MergeFit:
    """The chosen merge and what was tried.

    Attributes:
        strategy: The chosen strategy.
        weights: The chosen weights (lists left out have weight 0).
        metric: The validation metric maximised (or minimised), e.g. ``ndcg@10``.
        value: Its value for the chosen merge.
        metrics: Every ranking metric of the chosen merge on validation.
        tried: ``(strategy, weights, value)`` of every candidate, in search order.
    """

    strategy: str
    weights: dict[str, float]
    metric: str
    value: float
    metrics: dict[str, float]
    tried: list[tuple[str, dict[str, float], float]] = field(default_factory=list)


def fit_merge(
    scores: Mapping[str, np.ndarray],
    exclude: np.ndarray,
    relevant: Sequence[np.ndarray],
    probability: Sequence[str],
    ks: Sequence[int] = (10, 20),
    metric: str = "ndcg@10",
    rrf_k: float = 60.0,
) -> MergeFit:
    """The strategy and weights whose merged list scores best on a validation period.

    Greedy forward search per strategy: the best single list, then each other list added with
    each relative weight while that improves the metric. ``weighted_product`` only combines
    probabilities (``probability`` names them); the other strategies take every list.

    Args:
        scores: Per list, the validation score of every (user, item) [U, N] (NaN: excluded).
        exclude: True where an item was seen before the period [U, N].
        relevant: Per user, the relevant item positions of the period.
        probability: The lists whose scores are probabilities.
        ks: Cut-offs (the metric's must be among them).
        metric: The metric to optimise, e.g. ``"ndcg@10"``.
        rrf_k: The RRF smoothing constant.

    Raises:
        ValueError: No lists, or a metric the cut-offs do not produce.
    """
    if not scores:
        raise ValueError("fit_merge: no list scores")
    sign = 1.0 if is_higher_better(metric) else -1.0
    tried: list[tuple[str, dict[str, float], float]] = []
    cache: dict[tuple[str, tuple[tuple[str, float], ...]], dict[str, float]] = {}
    fusion = ScoreFusion(scores)

    def evaluate(strategy: str, weights: dict[str, float]) -> float:
        key = (strategy, tuple(sorted(weights.items())))
        if key not in cache:
            merged = fusion.merge(strategy, weights, rrf_k)
            cache[key] = rank_metrics(merged, exclude, relevant, ks)
            if metric not in cache[key]:
                raise ValueError(f"fit_merge: metric '{metric}' is not computed for ks={ks}")
            tried.append((strategy, dict(weights), cache[key][metric]))
        value = cache[key][metric]
        return -math.inf if math.isnan(value) else sign * value

    best: tuple[float, str, dict[str, float]] | None = None
    for strategy in STRATEGIES:
        names = [t for t in scores if strategy != "weighted_product" or t in probability]
        if not names:
            continue
        # On a tie the earlier list (the task order of the config) is kept.
        start = max(names, key=lambda t: (evaluate(strategy, {t: 1.0}), -names.index(t)))
        weights = {start: 1.0}
        current = evaluate(strategy, weights)
        improved = True
        while improved:
            improved = False
            for t in (n for n in names if n not in weights):
                for w in RELATIVE_WEIGHTS:
                    trial = {**weights, t: w}
                    value = evaluate(strategy, trial)
                    if value > current:
                        current, weights, improved = value, trial, True
        if best is None or current > best[0]:
            best = (current, strategy, weights)
    assert best is not None
    _, strategy, weights = best
    chosen = cache[(strategy, tuple(sorted(weights.items())))]
    return MergeFit(strategy, weights, metric, chosen[metric], chosen, tried)


def fit_saved_merge(model_dir: str | Path, relevant: str, metric: str = "ndcg@10") -> MergeFit:
    """Fit a model directory's merge on its validation period and save it in ``config.toml``.

    The log is read again with the saved processor; the catalog is rebuilt as it stood when
    the validation period began, so nothing of that period (nor of the test period) leaks
    into the users' histories. ``recommend.merge`` and ``recommend.weights`` of the saved
    config are replaced (and the manifest rewritten, both in a copy of the directory that is then
    swapped in: :func:`mtrs.outdir.rewrite`), so ``mtrs recommend`` uses the fit.

    Raises:
        MtrsUserError: Not a model directory, a log not in memory, a missing column, or no
            relevant item in the validation period.
    """
    directory = Path(model_dir)
    m = load_model(directory)
    setup = ranking_setup(prepare(m.cfg, processor=m.processor), relevant, period=VALID)
    rec = m.recommender(setup.catalog)
    probability = [t for t in rec.list_tasks if m.tasks.is_probability(t)]
    k = int(metric.split("@", 1)[1]) if "@" in metric else 10
    fit = fit_merge(
        list_scores(rec, setup), setup.seen_mask(), setup.relevant, probability,
        sorted({k, 10}), metric, rec.cfg.rrf_k,
    )  # fmt: skip
    cfg = m.cfg.model_copy(deep=True)
    cfg.recommend.merge = fit.strategy  # type: ignore[assignment]
    cfg.recommend.weights = fit.weights
    with rewrite(directory) as tmp:
        dump_config(cfg, tmp / "config.toml")
        write_manifest(tmp)
    return fit
