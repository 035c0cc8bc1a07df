"""Recommendation: candidates → per-task scores → one top-K list per task → merged list."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mtrs.config.models import RecommendConfig
from mtrs.data.batch import Batch
from mtrs.data.processor import FittedProcessor
from mtrs.errors import MtrsUserError
from mtrs.layers.embedding import USER_SIDE
from mtrs.recommend.catalog import Catalog
from mtrs.recommend.merge import check_weights, merge, top_k
from mtrs.tasks.taskset import TaskSet

POPULARITY = "popularity"

# A scoring backend: a batch and whether to add the user-scoped tasks → ``TaskSet.predict``'s
# predictions by task and relation name (the torch model by default; ``OnnxModel`` for ONNX).
Predictor = Callable[[Batch, bool], dict[str, Tensor]]


@dataclass(frozen=True)
class RecommendedItem:
    """One entry of a list: the item, what ranked it, and what the items table says of it.

    Attributes:
        item: The raw item id.
        score: The model's score (a task's output, or the merged score); None in a popularity
            fallback.
        popularity: In a popularity fallback (unknown user), the item's share of the training
            positives of the list's task (``Catalog.popularity_share``); else None.
        title: The ``data.item_title_col`` value, if the model has titles.
        display: The ``data.display_cols`` values, by column.
    """

    item: str
    score: float | None = None
    popularity: float | None = None
    title: str | None = None
    display: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """``item``, ``title``, ``display`` and either ``score`` or ``popularity``."""
        out: dict[str, Any] = {"item": self.item, "title": self.title, "display": self.display}
        if self.popularity is not None:
            out["popularity"] = self.popularity
        else:
            out["score"] = self.score
        return out


@dataclass
class Recommendation:
    """Lists for one user: per task, merged, and the predicted profile.

    An unknown user gets the popularity fallback: every list ranks by training popularity
    (``RecommendedItem.popularity``, no scores), ``strategy`` is ``"popularity"`` and the
    profile is empty.
    """

    user: str
    known_user: bool
    lists: dict[str, list[RecommendedItem]]
    merged: list[RecommendedItem]
    strategy: str
    weights: dict[str, float]
    profile: dict[str, Any] = field(default_factory=dict)

    @property
    def fallback(self) -> bool:
        """Whether the lists are the popularity fallback of an unknown user."""
        return not self.known_user

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (``source`` and ``fallback`` say where the lists come from)."""
        return {
            "user": self.user,
            "source": "model" if self.known_user else "popularity (unknown user)",
            "fallback": self.fallback,
            "lists": {k: [i.to_json() for i in v] for k, v in self.lists.items()},
            "merged": [i.to_json() for i in self.merged],
            "merge": {"strategy": self.strategy, "weights": self.weights},
            "profile": self.profile,
        }


class Recommender:
    """Scores candidate items for a user with a trained model and merges the task lists.

    Args:
        model: The trained model (eval mode is set here).
        processor: The fitted processor (feature order and groups).
        tasks: The model's tasks; their relations add derived lists (ESMM joint probability).
        catalog: Encoded items and users from the training log.
        cfg: Default k, merge strategy and weights.
        predictor: Scores batches instead of ``model`` (e.g.
            :class:`mtrs.export.onnx.OnnxModel`); must give what ``model`` gives.
    """

    def __init__(
        self,
        model: nn.Module,
        processor: FittedProcessor,
        tasks: TaskSet,
        catalog: Catalog,
        cfg: RecommendConfig,
        predictor: Predictor | None = None,
    ) -> None:
        self.model = model.eval()
        self.predict: Predictor = predictor or self._torch_predict
        self.proc = processor
        self.tasks = tasks
        self.catalog = catalog
        self.cfg = cfg
        groups = {f.name: f.group for f in processor.cfg.features}
        self._cat_cols = self._columns([groups[f.name] for f in processor.categorical])
        self._num_cols = self._columns([groups[f.name] for f in processor.numeric])
        self._multi_groups = {f.name: f.group for f in processor.multi_hot}
        self.list_tasks = tasks.list_names

    @staticmethod
    def _columns(groups: list[str]) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {"user": [], "context": []}
        for j, g in enumerate(groups):
            if g in USER_SIDE:
                out["user"].append(j)
            elif g == "context":
                out["context"].append(j)
        return out

    def _torch_predict(self, batch: Batch, user_tasks: bool) -> dict[str, Tensor]:
        return self.tasks.predict(self.model(batch, user_tasks=user_tasks).logits)

    def _assemble(self, row: int, cand: Tensor) -> Batch:
        items, users, ctx = self.catalog.items, self.catalog.users, self.catalog.context
        n = len(cand)
        cat = items.cat[cand].clone()
        num = items.num[cand].clone()
        for mat, src, cols in (
            (cat, users.cat[row], self._cat_cols["user"]),
            (cat, ctx.cat[0], self._cat_cols["context"]),
            (num, users.num[row], self._num_cols["user"]),
            (num, ctx.num[0], self._num_cols["context"]),
        ):
            if cols:
                mat[:, cols] = src[cols]
        multi = {}
        for name, g in self._multi_groups.items():
            if g in USER_SIDE:
                multi[name] = users.multi[name][row].expand(n, -1)
            elif g == "context":
                multi[name] = ctx.multi[name][0].expand(n, -1)
            else:
                multi[name] = items.multi[name][cand]
        expand = lambda d: {k: v[row].expand(n, -1) for k, v in d.items()}  # noqa: E731
        return Batch(
            cat=cat,
            num=num,
            labels=torch.zeros(n, 0),
            mask=torch.zeros(n, 0, dtype=torch.bool),
            user=torch.zeros(n, dtype=torch.long),
            multi=multi,
            hist=expand(users.hist),
            hist_value=expand(users.hist_value),
            hist_gap=expand(users.hist_gap),
        )

    @torch.no_grad()
    def score(
        self, row: int, candidates: np.ndarray
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Per-task scores of the candidate item positions for a known user row.

        Returns:
            ``(scores, profile)``: scores per list task [n]; the user-scoped predictions.
        """
        parts: dict[str, list[np.ndarray]] = {t: [] for t in self.list_tasks}
        chunk = self.cfg.chunk_size
        cand_t = torch.from_numpy(candidates.astype(np.int64))
        for start in range(0, len(cand_t), chunk):
            preds = self.predict(self._assemble(row, cand_t[start : start + chunk]), False)
            for name in self.list_tasks:
                parts[name].append(self.tasks.to_output(name, preds[name].numpy()))
        scores = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
        return scores, self.profile(row)

    @torch.no_grad()
    def profile(self, row: int) -> dict[str, Any]:
        """The user-scoped tasks' predictions (the user's predicted profile)."""
        if not self.tasks.user_tasks:
            return {}
        return self._profile(
            self.predict(self._assemble(row, torch.zeros(1, dtype=torch.long)), True)
        )

    def _profile(self, probs: dict[str, Tensor]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for t in self.tasks.user_tasks:
            p = probs[t.name][0]
            if t.encoding.classes is not None:
                values = p.tolist()
                out[t.name] = dict(zip(t.encoding.classes, values, strict=True))
            else:
                out[t.name] = float(t.to_output(p.reshape(1).numpy())[0])
        return out

    def recommend(
        self,
        user_id: str,
        k: int | None = None,
        strategy: str | None = None,
        weights: dict[str, float] | None = None,
        candidates: list[str] | None = None,
    ) -> Recommendation:
        """Top-K lists per task and the merged list for one user.

        Args:
            user_id: The raw user id.
            k: List length (default ``recommend.k``).
            strategy: ``weighted_sum``, ``weighted_product`` or ``rrf``.
            weights: Task weights for the merge (default from the config; else 1 per task).
            candidates: Raw item ids to rank (default: every known item not yet interacted).

        Raises:
            MtrsUserError: Unknown task in weights, unknown candidate item or strategy.
        """
        k = k or self.cfg.k
        strategy = strategy or self.cfg.merge
        weights = dict(weights if weights is not None else self.cfg.weights)
        for name in weights:
            if name not in self.list_tasks:
                raise MtrsUserError(
                    f"merge weights: '{name}' is not a task with a list "
                    f"(tasks: {', '.join(self.list_tasks)})"
                )
        try:
            check_weights(weights)
        except ValueError as err:
            raise MtrsUserError(f"merge weights: {err}") from None
        if not weights:
            weights = {t: 1.0 for t in self.list_tasks if self.tasks.is_probability(t)}
        row = self.catalog.user_row(user_id)
        cand = self._candidates(row, candidates)
        if row is None:
            # Unknown user: popularity, as shares of the training positives, not task scores.
            scores = {t: self.catalog.popularity_share(t)[cand] for t in self.list_tasks}
            merged_scores = self.catalog.popularity_share()[cand]
            profile: dict[str, Any] = {}
            strategy, weights = POPULARITY, {}
        else:
            scores, profile = self.score(row, cand)
            try:
                merged_scores = merge(strategy, scores, weights, rrf_k=self.cfg.rrf_k)
            except ValueError as err:
                raise MtrsUserError(f"merge: {err}") from None
        fallback = row is None

        def ranked(s: np.ndarray) -> list[RecommendedItem]:
            return [self.item(int(cand[i]), float(s[i]), fallback) for i in top_k(s, k)]

        lists = {t: ranked(s) for t, s in scores.items()}
        return Recommendation(
            str(user_id), not fallback, lists, ranked(merged_scores), strategy, weights, profile
        )

    def item(self, position: int, value: float, popularity: bool = False) -> RecommendedItem:
        """The list entry of a catalog position: ``value`` as its score (or its popularity)."""
        cat = self.catalog
        return RecommendedItem(
            cat.item_ids[position],
            score=None if popularity else value,
            popularity=value if popularity else None,
            title=cat.titles[position] if cat.titles is not None else None,
            display={c: v[position] for c, v in cat.display.items()},
        )

    def _candidates(self, row: int | None, candidates: list[str] | None) -> np.ndarray:
        n_items = len(self.catalog.item_ids)
        if candidates is not None:
            pos = self.catalog.item_positions(candidates)
            if (pos < 0).any():
                bad = candidates[int(np.argmax(pos < 0))]
                raise MtrsUserError(f"candidates: unknown item id '{bad}'")
            return pos
        keep = np.ones(n_items, dtype=bool)
        if row is not None and self.cfg.exclude_seen:
            keep[self.catalog.seen(row)] = False
        return np.flatnonzero(keep)
