"""Top-K ranking evaluation of a trained model over the whole catalogue, as of the test period."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mtrs.artifact import LoadedModel
from mtrs.data.encoders import as_keys
from mtrs.data.split import TEST
from mtrs.data.tables import Tables
from mtrs.errors import MtrsUserError
from mtrs.eval.metrics import hits_from_ranked, ranking_metrics
from mtrs.pipeline import Job, Prepared, prepare
from mtrs.recommend.catalog import Catalog, build_catalog
from mtrs.recommend.merge import merge, top_k
from mtrs.recommend.recommender import Recommender

MERGED = "merged"
POPULARITY = "popularity"


@dataclass
class RankingSetup:
    """What every ranked list is judged against: one per prepared data set, shared by models.

    Attributes:
        catalog: Built from the rows before the test period (train + validation), so user
            histories, seen items and popularity hold nothing from the test period.
        rows: Catalog user rows evaluated (users with at least one relevant test item).
        relevant: Per evaluated user, the catalog item positions that are relevant.
    """

    catalog: Catalog
    rows: np.ndarray
    relevant: list[np.ndarray]

    def seen_mask(self) -> np.ndarray:
        """bool [U, N]: True where the user interacted with the item before the test period."""
        mask = np.zeros((len(self.rows), len(self.catalog.item_ids)), dtype=bool)
        for u, row in enumerate(self.rows):
            mask[u, self.catalog.seen(int(row))] = True
        return mask


def catalog_as_of_test(prepared: Prepared) -> Catalog:
    """The serving catalog as it stood when the test period began.

    Built from the non-test rows only: each user's latest history, the seen items and the
    popularity counts all come from train + validation. A catalog built from the whole log (as
    ``save_job`` does for serving) would put the test events into the histories and the seen
    sets, which leaks the answers into the ranking.
    """
    keep = prepared.split != TEST
    frame = prepared.frame[keep].reset_index(drop=True)
    return build_catalog(frame, np.ones(len(frame), dtype=bool), prepared.processor,
                         prepared.items_table)  # fmt: skip


def ranking_setup(
    prepared: Prepared, relevant_col: str = "like", max_users: int | None = None
) -> RankingSetup:
    """The test-period catalog and each test user's relevant items.

    Args:
        prepared: The job's prepared data (frame and split).
        relevant_col: A test row is relevant where this column equals 1 (MovieLens: ``like``,
            i.e. a rating of 4 or more; NaN on sampled non-interactions).
        max_users: Evaluate only the first this many users (in catalog order), for quick runs.

    Raises:
        MtrsUserError: The column is missing or no test row is relevant.
    """
    frame, cfg = prepared.frame, prepared.cfg.data
    if relevant_col not in frame.columns:
        raise MtrsUserError(f"ranking: relevance column '{relevant_col}' not found")
    catalog = catalog_as_of_test(prepared)
    test = frame[(prepared.split == TEST) & (frame[relevant_col].to_numpy(dtype=float) == 1.0)]
    user_pos = catalog_positions(catalog.user_ids, test[cfg.user_col])
    item_pos = catalog_positions(catalog.item_ids, test[cfg.item_col])
    ok = (user_pos >= 0) & (item_pos >= 0)
    if not ok.any():
        raise MtrsUserError(f"ranking: no test row has {relevant_col} = 1 for a known user")
    u, i = user_pos[ok], item_pos[ok]
    order = np.lexsort((i, u))
    rows, start = np.unique(u[order], return_index=True)
    groups = np.split(i[order], start[1:])
    if max_users is not None:
        rows, groups = rows[:max_users], groups[:max_users]
    return RankingSetup(catalog, rows, [np.unique(g) for g in groups])


def catalog_positions(ids: list[str], values: pd.Series) -> np.ndarray:
    """Positions of raw ids in a catalog id list (-1 where unknown)."""
    return np.asarray(pd.Index(ids).get_indexer(pd.Index(as_keys(values).astype(str))))


def rank_metrics(
    scores: np.ndarray,
    exclude: np.ndarray,
    relevant: Sequence[np.ndarray],
    ks: Sequence[int] = (10, 20),
) -> dict[str, float]:
    """HR, NDCG and recall at every cut-off for a score matrix over the whole catalogue.

    Args:
        scores: One score per (user, item); higher ranks first (ties: lower item index first).
        exclude: True where an item must not be ranked for the user (already seen).
        relevant: Per user, the relevant item indices.
        ks: Cut-offs.

    Returns:
        ``{"hit_rate@k", "ndcg@k", "recall@k"}`` for each k, averaged over users with at least
        one relevant item.

    Shape:
        scores, exclude: [U, N].
    """
    k_max = max(ks)
    ranked = np.full((scores.shape[0], k_max), -1, dtype=np.int64)
    for u in range(scores.shape[0]):
        top = top_k(scores[u], k_max, exclude[u])
        ranked[u, : len(top)] = top
    hits, n_rel = hits_from_ranked(ranked, list(relevant))
    return ranking_metrics(hits, n_rel, ks)


def _recommender(source: Job | LoadedModel, catalog: Catalog) -> Recommender:
    if isinstance(source, Job):
        proc, cfg = source.prepared.processor, source.cfg
    else:
        proc, cfg = source.processor, source.cfg
    return Recommender(source.model, proc, source.tasks, source.relations, catalog, cfg.recommend)


def rank_evaluate(
    source: Job | LoadedModel,
    ks: Sequence[int] = (10, 20),
    *,
    setup: RankingSetup | None = None,
    tables: Tables | None = None,
    weights: Mapping[str, float] | None = None,
) -> dict[str, dict[str, float]]:
    """Rank every unseen movie for each test user by each task's score and by the merge.

    Scores come from :meth:`Recommender.score` over the test-period catalog (see
    :func:`catalog_as_of_test`), one batched forward pass per user over all candidates.

    Args:
        source: A trained job, or a loaded model directory (its data are prepared again from
            ``tables`` or the config's ``[data]`` with the saved processor).
        ks: Cut-offs.
        setup: A precomputed :func:`ranking_setup` (shared by models trained on the same data).
        tables: The tables of a loaded model when its config's paths are not usable.
        weights: Merge weights (default: the config's ``recommend.weights``, else every
            probability task with weight 1); the strategy is ``recommend.merge``.

    Returns:
        List name (each list task, and ``"merged"``) → ranking metrics.
    """
    if setup is None:
        if isinstance(source, Job):
            prepared = source.prepared
        else:
            prepared = prepare(source.cfg, tables, processor=source.processor)
        setup = ranking_setup(prepared)
    rec = _recommender(source, setup.catalog)
    n_items = len(setup.catalog.item_ids)
    names = [*rec.list_tasks, MERGED]
    mats = {t: np.full((len(setup.rows), n_items), np.nan) for t in names}
    exclude = setup.seen_mask()
    w = dict(weights if weights is not None else rec.cfg.weights)
    if not w:
        w = {t: 1.0 for t in rec.list_tasks if t not in _regression(source)}
    for u, row in enumerate(setup.rows):
        cand = np.flatnonzero(~exclude[u])
        scores, _ = rec.score(int(row), cand)
        scores[MERGED] = merge(rec.cfg.merge, scores, w, rrf_k=rec.cfg.rrf_k)
        for t in names:
            mats[t][u, cand] = scores[t]
    return {t: rank_metrics(mats[t], exclude, setup.relevant, ks) for t in names}


def _regression(source: Job | LoadedModel) -> set[str]:
    return {t.name for t in source.tasks if t.type == "regression"}


def popularity_evaluate(setup: RankingSetup, ks: Sequence[int] = (10, 20)) -> dict[str, float]:
    """The popularity baseline: unseen items ranked by their interactions before the test period.

    Every user gets the same order (ties: lower catalogue index first), less their seen items.
    """
    pop = setup.catalog.popularity["_all"].astype(np.float64)
    scores = np.broadcast_to(pop, (len(setup.rows), len(pop)))
    return rank_metrics(scores, setup.seen_mask(), setup.relevant, ks)
