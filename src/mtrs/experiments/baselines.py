"""The non-neural baselines on a prepared log: tuned on the validation period, scored on test.

Each baseline (item-kNN, EASE, implicit ALS) is fitted on the interactions before the
validation period and its hyper-parameters chosen there, on the validation period's relevant
items; the chosen setting is refitted on every interaction before the test period and ranks
the test period through the same ranking setup and metric code as the models.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtrs.baselines.matrix import interaction_matrix
from mtrs.baselines.registry import make_baseline
from mtrs.baselines.select import select
from mtrs.data.split import VALID
from mtrs.eval.ranking import rank_metrics
from mtrs.experiments.ranking import MERGED, RankingSetup, ranking_setup
from mtrs.prepare import Prepared

NAMES = ("item_knn", "ease", "als")
LABELS = {"item_knn": "item-kNN (baseline)", "ease": "EASE (baseline)", "als": "ALS (baseline)"}


@dataclass
class BaselineResult:
    """One baseline on one prepared log: its chosen setting and both periods' metrics."""

    name: str
    params: dict[str, Any]
    valid: dict[str, float]
    test: dict[str, float]


@dataclass(frozen=True)
class _Inputs:
    """What a baseline reads from a ranking setup, users and items in raw-id order.

    Catalog positions follow each run's vocabularies, which also hold the sampled negatives'
    items, so two MovieLens seeds number the same movies differently. Renumbering users and
    items by their raw ids makes the inputs — and the baselines' tie-breaks — identical for
    identical interactions, so a repeated log is recognised and computed once.
    """

    matrix: Any
    rows: np.ndarray
    exclude: np.ndarray
    relevant: list[np.ndarray]

    @classmethod
    def of(cls, setup: RankingSetup) -> _Inputs:
        user_pos = _raw_order(setup.catalog.user_ids)
        item_pos = _raw_order(setup.catalog.item_ids)
        users, items = setup.interactions()
        matrix = interaction_matrix(user_pos[users], item_pos[items], len(user_pos), len(item_pos))
        seen = setup.seen_mask()
        exclude = np.empty_like(seen)
        exclude[:, item_pos] = seen
        relevant = [np.sort(item_pos[r]) for r in setup.relevant]
        return cls(matrix, user_pos[setup.rows], exclude, relevant)

    def digest(self, h: Any) -> None:
        m = self.matrix.tocsr(copy=True)
        m.sort_indices()
        for a in (m.indptr, m.indices, m.data, self.rows, *self.relevant):
            h.update(np.ascontiguousarray(a).tobytes())
            h.update(b"|")


def _raw_order(ids: Sequence[Any]) -> np.ndarray:
    """Position of each catalog entry when the entries are sorted by raw id."""
    keys = np.asarray([str(i) for i in ids], dtype=object)
    order = np.argsort(keys, kind="stable")
    pos = np.empty(len(keys), dtype=np.int64)
    pos[order] = np.arange(len(keys))
    return pos


def _fingerprint(*inputs: _Inputs) -> str:
    """A digest of what the baselines read (interactions, evaluated users, relevant items)."""
    h = hashlib.sha256()
    for x in inputs:
        x.digest(h)
    return h.hexdigest()


class BaselineRunner:
    """Tunes and scores the baselines; a log whose interactions repeat gives the cached result.

    Seeds of the MovieLens benchmark differ only in their sampled negatives, which neither
    the interactions nor the relevant items include, so the baselines are computed once and
    their result reused (the fingerprint of their inputs decides, not an assumption).

    Args:
        names: Baselines to run (keys of :data:`mtrs.baselines.BASELINES`).
        ks: Ranking cut-offs.
        metric: The validation metric the setting is chosen on.
    """

    def __init__(
        self, names: Sequence[str] = NAMES, ks: Sequence[int] = (10, 20), metric: str = "ndcg@10"
    ) -> None:
        self.names = tuple(names)
        self.ks = tuple(ks)
        self.metric = metric
        self.cache: dict[str, list[BaselineResult]] = {}

    def run(
        self, prepared: Prepared, test: RankingSetup, valid: RankingSetup | None = None
    ) -> list[BaselineResult]:
        """Tune each baseline on the validation period of ``prepared``, score it on ``test``."""
        valid = valid or ranking_setup(prepared, period=VALID)
        v, t = _Inputs.of(valid), _Inputs.of(test)
        key = _fingerprint(v, t)
        if key in self.cache:
            return self.cache[key]
        out = []
        for name in self.names:
            sel = select(name, v.matrix, v.rows, v.exclude, v.relevant, self.ks, self.metric)
            model = make_baseline(name, **sel.best).fit(t.matrix)
            metrics = rank_metrics(model.scores(t.rows), t.exclude, t.relevant, self.ks)
            out.append(BaselineResult(name, sel.best, sel.best_metrics, metrics))
        self.cache[key] = out
        return out


def as_rows(results: Sequence[BaselineResult]) -> dict[str, dict[str, dict[str, float]]]:
    """Baseline name → its only (``merged``) list → test metrics."""
    return {r.name: {MERGED: r.test} for r in results}
