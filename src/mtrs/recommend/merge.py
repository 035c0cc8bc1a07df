"""Score fusion across tasks and top-K selection: small pure functions on numpy arrays."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

__all__ = [
    "MERGERS",
    "Merger",
    "ScoreFusion",
    "check_weights",
    "merge",
    "ranks",
    "reciprocal_rank_fusion",
    "top_k",
    "weighted_product",
    "weighted_sum",
]

# Probabilities below this are clipped before the log so a zero never wipes out the product.
_LOG_EPS = 1e-12


def check_weights(weights: Mapping[str, float]) -> None:
    """Merge weights are finite, not negative, and not all zero.

    Raises:
        ValueError: Naming the first bad weight.
    """
    for name, w in weights.items():
        if not np.isfinite(w) or w < 0:
            raise ValueError(f"weight of '{name}' is {w}; weights are finite numbers >= 0")
    if weights and not any(w > 0 for w in weights.values()):
        raise ValueError("every weight is 0; at least one list must count")


def _sort_key(scores: np.ndarray) -> np.ndarray:
    """Ascending sort key for descending scores; NaN ranks last (as if it were -inf)."""
    key = -np.asarray(scores, dtype=np.float64)
    key[np.isnan(key)] = np.inf
    return key


def top_k(scores: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the k highest scores, best first.

    Ties are broken by the lower index, so the result equals a stable descending sort cut at k;
    ``argpartition`` keeps it linear in the number of candidates. NaN scores rank last.

    Args:
        scores: One score per candidate.
        k: Number of indices wanted; when fewer candidates are available, all are returned.
        exclude: Optional mask, True where a candidate must not be returned (e.g. seen items).

    Returns:
        Candidate indices (int64), best first.

    Raises:
        ValueError: If scores is not 1-D or the mask does not match it.

    Shape:
        scores, exclude: [N]; output: [min(k, N - excluded)].
    """
    scores = np.asarray(scores)
    if scores.ndim != 1:
        raise ValueError(f"top_k expects 1-D scores, got shape {scores.shape}.")
    if exclude is None:
        idx = np.arange(scores.shape[0])
    else:
        exclude = np.asarray(exclude, dtype=bool)
        if exclude.shape != scores.shape:
            raise ValueError(f"exclude has shape {exclude.shape}, scores {scores.shape}.")
        idx = np.flatnonzero(~exclude)
    key = _sort_key(scores[idx])
    k = min(max(k, 0), idx.size)
    if k == 0:
        return np.empty(0, dtype=np.int64)
    if k < idx.size:
        kth = key[np.argpartition(key, k - 1)[k - 1]]
        # Keep every candidate tied with the k-th so the stable sort can pick the lowest indices.
        cand = np.flatnonzero(key <= kth)
    else:
        cand = np.arange(idx.size)
    order = cand[np.argsort(key[cand], kind="stable")[:k]]
    return idx[order].astype(np.int64)


def ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of every position along the last axis (1 = highest score).

    Ties are broken by the lower index, consistent with :func:`top_k`; NaN ranks last.

    Args:
        scores: Scores, 1-D or batched with candidates on the last axis.

    Returns:
        Ranks as int64, same shape as scores.

    Shape:
        scores: [..., N]; output: [..., N].
    """
    key = _sort_key(scores)
    order = np.argsort(key, axis=-1, kind="stable")
    out = np.empty(key.shape, dtype=np.int64)
    positions = np.broadcast_to(np.arange(1, key.shape[-1] + 1), key.shape)
    np.put_along_axis(out, order, positions, axis=-1)
    return out


def _active_weights(
    scores: Mapping[str, np.ndarray], weights: Mapping[str, float]
) -> dict[str, float]:
    """Tasks that take part in a merge, with their weights, after checking the inputs."""
    if not scores:
        raise ValueError("Nothing to merge: no task scores were given.")
    missing = [t for t in weights if t not in scores]
    if missing:
        raise ValueError(
            f"Merge weight given for task {missing[0]!r}, which has no scores; "
            f"tasks with scores: {', '.join(scores)}."
        )
    # An empty weight table means "all tasks count equally"; zero weights switch a task off.
    chosen = {t: 1.0 for t in scores} if not weights else {t: float(w) for t, w in weights.items()}
    active = {t: w for t, w in chosen.items() if w != 0.0}
    if not active:
        raise ValueError("Nothing to merge: every task has weight 0.")
    shapes = {t: np.shape(scores[t]) for t in active}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"Task scores differ in shape: {shapes}.")
    return active


def weighted_sum(probs: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """Σ_t w_t · p_t over the tasks with a nonzero weight.

    Args:
        probs: Per-task probabilities (or scores), keyed by task name.
        weights: Per-task weights; tasks absent or at 0 are ignored, an empty mapping weighs
            every task 1.

    Returns:
        The fused score (float64).

    Raises:
        ValueError: If a weight names a task without scores, no task is active, or shapes
            differ.

    Shape:
        each p_t: [...]; output: same.
    """
    active = _active_weights(probs, weights)
    out = np.zeros(np.shape(probs[next(iter(active))]), dtype=np.float64)
    for task, w in active.items():
        out += w * np.asarray(probs[task], dtype=np.float64)
    return out


def weighted_product(probs: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """Π_t p_t^{w_t} over the tasks with a nonzero weight, e.g. p(click)·p(purchase)².

    Computed as ``exp(Σ w_t log p_t)`` with p clipped to ``[1e-12, 1]`` so that a zero
    probability or a large exponent does not underflow the whole product.

    Args:
        probs: Per-task probabilities in [0, 1], keyed by task name.
        weights: Per-task exponents; tasks absent or at 0 are ignored, an empty mapping weighs
            every task 1.

    Returns:
        The fused score (float64).

    Raises:
        ValueError: If a weight names a task without scores, no task is active, or shapes
            differ.

    Shape:
        each p_t: [...]; output: same.
    """
    return ScoreFusion(probs).weighted_product(weights)


def reciprocal_rank_fusion(
    scores: Mapping[str, np.ndarray], weights: Mapping[str, float], k: float = 60.0
) -> np.ndarray:
    """Weighted reciprocal rank fusion: Σ_t w_t / (k + rank_t).

    Only each task's ranking is used, so tasks on different scales (probabilities, ratings)
    fuse without calibration. Ranks are 1-based along the last axis (see :func:`ranks`).

    Args:
        scores: Per-task scores, keyed by task name.
        weights: Per-task weights; tasks absent or at 0 are ignored, an empty mapping weighs
            every task 1.
        k: Smoothing constant; larger values flatten the gap between top ranks (Cormack et al.,
            2009 use 60).

    Returns:
        The fused score (float64).

    Raises:
        ValueError: If a weight names a task without scores, no task is active, or shapes
            differ.

    Shape:
        each score: [..., N]; output: [..., N].
    """
    return ScoreFusion(scores).rrf(weights, k)


class ScoreFusion:
    """The merges of one set of per-task scores, each task's ranks and logs computed once.

    :func:`weighted_product` and :func:`reciprocal_rank_fusion` are this class on fresh
    scores; a search over weights (:func:`mtrs.experiments.merge_fit.fit_merge`) keeps one
    instance, so the per-task sorts (RRF) and logarithms (product) are not redone for every
    candidate weighting. Results equal those functions' exactly (the same operations in the
    same order).

    Args:
        scores: Per-task scores (probabilities for the product), keyed by task name.
    """

    def __init__(self, scores: Mapping[str, np.ndarray]) -> None:
        self.scores = scores
        self._ranks: dict[str, np.ndarray] = {}
        self._logs: dict[str, np.ndarray] = {}

    def _log(self, task: str) -> np.ndarray:
        if task not in self._logs:
            p = np.asarray(self.scores[task], dtype=np.float64)
            self._logs[task] = np.log(np.clip(p, _LOG_EPS, 1.0))
        return self._logs[task]

    def _rank(self, task: str) -> np.ndarray:
        if task not in self._ranks:
            self._ranks[task] = ranks(self.scores[task])
        return self._ranks[task]

    def weighted_product(self, weights: Mapping[str, float]) -> np.ndarray:
        """See :func:`weighted_product`."""
        active = _active_weights(self.scores, weights)
        log_score = np.zeros(np.shape(self.scores[next(iter(active))]), dtype=np.float64)
        for task, w in active.items():
            log_score += w * self._log(task)
        return np.exp(log_score)

    def rrf(self, weights: Mapping[str, float], k: float = 60.0) -> np.ndarray:
        """See :func:`reciprocal_rank_fusion`."""
        active = _active_weights(self.scores, weights)
        out = np.zeros(np.shape(self.scores[next(iter(active))]), dtype=np.float64)
        for task, w in active.items():
            out += w / (k + self._rank(task))
        return out

    def merge(self, strategy: str, weights: Mapping[str, float], rrf_k: float = 60.0) -> np.ndarray:
        """See :func:`merge`."""
        if strategy == "weighted_product":
            return self.weighted_product(weights)
        if strategy == "rrf":
            return self.rrf(weights, rrf_k)
        return merge(strategy, self.scores, weights, rrf_k)


class Merger(Protocol):
    """A fusion strategy: per-task scores and weights in, one fused score out."""

    def __call__(
        self,
        probs: Mapping[str, np.ndarray],
        weights: Mapping[str, float],
        /,
        *,
        rrf_k: float = 60.0,
    ) -> np.ndarray:
        """Fuse per-task scores; ``rrf_k`` is used only by rank-based strategies."""
        ...


def _weighted_sum(
    probs: Mapping[str, np.ndarray], weights: Mapping[str, float], /, *, rrf_k: float = 60.0
) -> np.ndarray:
    return weighted_sum(probs, weights)


def _weighted_product(
    probs: Mapping[str, np.ndarray], weights: Mapping[str, float], /, *, rrf_k: float = 60.0
) -> np.ndarray:
    return weighted_product(probs, weights)


def _rrf(
    probs: Mapping[str, np.ndarray], weights: Mapping[str, float], /, *, rrf_k: float = 60.0
) -> np.ndarray:
    return reciprocal_rank_fusion(probs, weights, k=rrf_k)


MERGERS: dict[str, Merger] = {
    "weighted_sum": _weighted_sum,
    "weighted_product": _weighted_product,
    "rrf": _rrf,
}


def merge(
    strategy: str,
    probs: Mapping[str, np.ndarray],
    weights: Mapping[str, float],
    rrf_k: float = 60.0,
) -> np.ndarray:
    """Fuse per-task scores with a named strategy from :data:`MERGERS`.

    Args:
        strategy: ``"weighted_sum"``, ``"weighted_product"`` or ``"rrf"``.
        probs: Per-task probabilities (or scores), keyed by task name.
        weights: Per-task weights; tasks absent or at 0 are ignored, an empty mapping weighs
            every task 1.
        rrf_k: Smoothing constant of reciprocal rank fusion.

    Returns:
        The fused score (float64), higher is better.

    Raises:
        ValueError: If the strategy is unknown, or the inputs are invalid for it.

    Shape:
        each p_t: [..., N]; output: [..., N].
    """
    fn = MERGERS.get(strategy)
    if fn is None:
        raise ValueError(
            f"Unknown merge strategy {strategy!r}; expected one of: {', '.join(MERGERS)}."
        )
    return fn(probs, weights, rrf_k=rrf_k)
