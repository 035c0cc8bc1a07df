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


def _matrix(setup: RankingSetup) -> Any:
    users, items = setup.interactions()
    return interaction_matrix(
        users, items, len(setup.catalog.user_ids), len(setup.catalog.item_ids)
    )


def _fingerprint(*setups: RankingSetup) -> str:
    """A digest of what the baselines read (interactions, evaluated users, relevant items)."""
    h = hashlib.sha256()
    for s in setups:
        for a in (*s.interactions(), s.rows, *s.relevant):
            h.update(np.ascontiguousarray(a).tobytes())
            h.update(b"|")
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
        key = _fingerprint(valid, test)
        if key in self.cache:
            return self.cache[key]
        v_matrix, t_matrix = _matrix(valid), _matrix(test)
        v_exclude, t_exclude = valid.seen_mask(), test.seen_mask()
        out = []
        for name in self.names:
            sel = select(
                name, v_matrix, valid.rows, v_exclude, valid.relevant, self.ks, self.metric
            )
            model = make_baseline(name, **sel.best).fit(t_matrix)
            metrics = rank_metrics(model.scores(test.rows), t_exclude, test.relevant, self.ks)
            out.append(BaselineResult(name, sel.best, sel.best_metrics, metrics))
        self.cache[key] = out
        return out


def as_rows(results: Sequence[BaselineResult]) -> dict[str, dict[str, dict[str, float]]]:
    """Baseline name → its only (``merged``) list → test metrics."""
    return {r.name: {MERGED: r.test} for r in results}
