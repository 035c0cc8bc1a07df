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
from mtrs.eval.names import MERGED
from mtrs.eval.ranking import rank_metrics
from mtrs.job import Job
from mtrs.prepare import Prepared, prepare
from mtrs.recommend.catalog import Catalog, build_catalog
from mtrs.recommend.merge import ScoreFusion
from mtrs.recommend.recommender import Recommender

POPULARITY = "popularity"


@dataclass
class RankingSetup:
    """What every ranked list is judged against: one per prepared data set, shared by models.

    Attributes:
        catalog: Built from the rows before the period ranked (the test period: train +
            validation), so user histories, seen items and popularity hold nothing of it.
        rows: Catalog user rows evaluated (users with at least one relevant item in the period).
        relevant: Per evaluated user, the catalog item positions that are relevant.
    """

    catalog: Catalog
    rows: np.ndarray
    relevant: list[np.ndarray]

    def seen_mask(self) -> np.ndarray:
        """bool [U, N]: True where the user interacted with the item before the period."""
        mask = np.zeros((len(self.rows), len(self.catalog.item_ids)), dtype=bool)
        for u, row in enumerate(self.rows):
            mask[u, self.catalog.seen(int(row))] = True
        return mask

    def interactions(self) -> tuple[np.ndarray, np.ndarray]:
        """Every catalog user's interactions before the period: (user rows, item positions)."""
        counts = np.diff(self.catalog.seen_ptr)
        users = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
        return users, self.catalog.seen_idx.astype(np.int64)


def catalog_as_of(prepared: Prepared, period: int = TEST) -> Catalog:
    """The serving catalog as it stood when a period (VALID or TEST) began.

    Built from the rows of the earlier splits only (for the test period: train + validation;
    for the validation period: train): each user's latest history, the seen items and the
    popularity counts hold nothing of the period ranked. A catalog built from the whole log
    (as training does for serving) would put the period's events into the histories and the
    seen sets, which leaks the answers into the ranking.
    """
    memory = prepared.in_memory()
    frame = memory.frame[memory.split < period].reset_index(drop=True)
    return build_catalog(frame, np.ones(len(frame), dtype=bool), prepared.processor, memory.items)


def catalog_as_of_test(prepared: Prepared) -> Catalog:
    """The catalog as of the test period (see :func:`catalog_as_of`)."""
    return catalog_as_of(prepared, TEST)


def ranking_setup(
    prepared: Prepared,
    relevant_col: str = "like",
    max_users: int | None = None,
    period: int = TEST,
) -> RankingSetup:
    """A period's catalog (as it stood when the period began) and each user's relevant items.

    Args:
        prepared: The job's prepared data (frame and split).
        relevant_col: A row of the period is relevant where this column equals 1 (MovieLens:
            ``like``, i.e. a rating of 4 or more; NaN on sampled non-interactions). A task's
            name stands for its label column (so a derived label can be named).
        max_users: Evaluate only the first this many users (in catalog order), for quick runs.
        period: TEST (the default), or VALID to choose settings without looking at the test
            period.

    Raises:
        MtrsUserError: The column is missing or no test row is relevant.
    """
    memory, cfg = prepared.in_memory(), prepared.cfg.data
    frame = memory.frame
    labels = {t.name: t.label_column for t in prepared.cfg.tasks}
    if relevant_col not in frame.columns and relevant_col in labels:
        relevant_col = labels[relevant_col]
    if relevant_col not in frame.columns:
        raise MtrsUserError(f"ranking: relevance column '{relevant_col}' not found")
    catalog = catalog_as_of(prepared, period)
    test = frame[(memory.split == period) & (frame[relevant_col].to_numpy(dtype=float) == 1.0)]
    user_pos = catalog_positions(catalog.user_ids, test[cfg.user_key])
    item_pos = catalog_positions(catalog.item_ids, test[cfg.item_key])
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


def list_scores(rec: Recommender, setup: RankingSetup) -> dict[str, np.ndarray]:
    """Every list task's score of every (evaluated user, catalog item), NaN where excluded.

    Scores come from :meth:`Recommender.predict`, one batched pass per user over the items the
    user had not interacted with before the period.

    Shape:
        each: [U, N] over ``setup.rows`` × the catalog's items.
    """
    n_items = len(setup.catalog.item_ids)
    mats = {t: np.full((len(setup.rows), n_items), np.nan) for t in rec.list_tasks}
    exclude = setup.seen_mask()
    for u, row in enumerate(setup.rows):
        cand = np.flatnonzero(~exclude[u])
        scores = rec.predict(int(row), cand)
        for t in rec.list_tasks:
            mats[t][u, cand] = scores[t]
    return mats


def default_weights(rec: Recommender) -> dict[str, float]:
    """The config's merge weights, else every probability list with weight 1."""
    w = dict(rec.cfg.weights)
    return w or {t: 1.0 for t in rec.list_tasks if rec.tasks.is_probability(t)}


def rank_evaluate(
    source: Job | LoadedModel,
    ks: Sequence[int] = (10, 20),
    *,
    setup: RankingSetup | None = None,
    tables: Tables | None = None,
    strategy: str | None = None,
    weights: Mapping[str, float] | None = None,
) -> dict[str, dict[str, float]]:
    """Rank every unseen item for each user of the period by each task's score and the merge.

    Args:
        source: A trained job, or a loaded model directory (its data are prepared again from
            ``tables`` or the config's ``[data]`` with the saved processor).
        ks: Cut-offs.
        setup: A precomputed :func:`ranking_setup` (default: the test period).
        tables: The tables of a loaded model when its config's paths are not usable.
        strategy: The merge strategy (default: ``recommend.merge``).
        weights: Merge weights (default: :func:`default_weights`).

    Returns:
        List name (each list task, and ``"merged"``) → ranking metrics.
    """
    if setup is None:
        if isinstance(source, Job):
            prepared = source.prepared
        else:
            prepared = prepare(source.cfg, tables, processor=source.processor)
        setup = ranking_setup(prepared)
    rec = source.recommender(setup.catalog)
    w = dict(weights) if weights is not None else default_weights(rec)
    return evaluate_lists(
        list_scores(rec, setup), setup, {MERGED: (strategy or rec.cfg.merge, w)}, ks, rec.cfg.rrf_k
    )


def evaluate_lists(
    mats: Mapping[str, np.ndarray],
    setup: RankingSetup,
    merges: Mapping[str, tuple[str, Mapping[str, float]]],
    ks: Sequence[int] = (10, 20),
    rrf_k: float = 60.0,
) -> dict[str, dict[str, float]]:
    """Ranking metrics of every list and of named merges of them.

    Args:
        mats: Per list, the score of every (evaluated user, item) (see :func:`list_scores`).
        setup: The period's users, relevant items and seen items.
        merges: Name → (strategy, weights) of each merged list to add.
        ks: Cut-offs.
        rrf_k: The RRF smoothing constant.
    """
    exclude = setup.seen_mask()
    out = {t: rank_metrics(m, exclude, setup.relevant, ks) for t, m in mats.items()}
    fusion = ScoreFusion(mats)
    for name, (strategy, weights) in merges.items():
        merged = fusion.merge(strategy, dict(weights), rrf_k)
        out[name] = rank_metrics(merged, exclude, setup.relevant, ks)
    return out


def popularity_evaluate(setup: RankingSetup, ks: Sequence[int] = (10, 20)) -> dict[str, float]:
    """The popularity baseline: unseen items ranked by their interactions before the test period.

    Every user gets the same order (ties: lower catalogue index first), less their seen items.
    """
    pop = setup.catalog.popularity["_all"].astype(np.float64)
    scores = np.broadcast_to(pop, (len(setup.rows), len(pop)))
    return rank_metrics(scores, setup.seen_mask(), setup.relevant, ks)
