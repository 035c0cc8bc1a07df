"""Top-K ranking metrics of a score matrix over a whole catalogue (models and baselines alike)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mtrs.eval.metrics import hits_from_ranked, ranking_metrics
from mtrs.recommend.merge import top_k


def rank_metrics(
    scores: np.ndarray,
    exclude: np.ndarray,
    relevant: Sequence[np.ndarray],
    ks: Sequence[int] = (10, 20),
) -> dict[str, float]:
    """Rank every non-excluded item per user and compute HR, NDCG and recall at each cut-off.

    Ranking is :func:`mtrs.recommend.merge.top_k` (ties: lower item index first, NaN last);
    lists shorter than ``max(ks)`` (few unseen items) are padded with -1, which never hits.

    Args:
        scores: One score per (user, item), higher is better.
        exclude: True where an item must not be ranked for the user (already seen).
        relevant: Per user, the relevant item indices.
        ks: Cut-offs.

    Returns:
        ``{"hit_rate@k", "ndcg@k", "recall@k"}`` for each k, averaged over users with at least
        one relevant item.

    Raises:
        ValueError: If the shapes disagree.

    Shape:
        scores, exclude: [U, N]; relevant: U arrays.
    """
    scores, exclude = np.asarray(scores), np.asarray(exclude, dtype=bool)
    if scores.ndim != 2 or exclude.shape != scores.shape or len(relevant) != scores.shape[0]:
        raise ValueError(
            f"scores {scores.shape}, exclude {exclude.shape} and {len(relevant)} relevant "
            "lists must agree on [users, items]."
        )
    k_max = max(ks)
    ranked = np.full((scores.shape[0], k_max), -1, dtype=np.int64)
    for u in range(scores.shape[0]):
        top = top_k(scores[u], k_max, exclude[u])
        ranked[u, : len(top)] = top
    hits, n_rel = hits_from_ranked(ranked, list(relevant))
    return ranking_metrics(hits, n_rel, ks)
