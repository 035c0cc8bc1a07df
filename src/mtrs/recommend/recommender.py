"""Recommendation: candidates → per-task scores → one top-K list per task → merged list."""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from mtrs.config.models import FeatureConfig, RecommendConfig
from mtrs.data.batch import Batch
from mtrs.data.encoders import OOV, as_keys, encode_multi_hot
from mtrs.data.processor import FittedProcessor
from mtrs.errors import MtrsUserError
from mtrs.layers.embedding import USER_SIDE
from mtrs.recommend.catalog import Catalog
from mtrs.recommend.merge import check_weights, merge, top_k
from mtrs.recommend.split import (
    BatchedSplitPredictor,
    SplitPredictor,
    SplitScorer,
    supports_split,
)
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


@dataclass(frozen=True)
class UserInput:
    """What the model reads of one user, and the items that user already interacted with.

    Attributes:
        features: A one-row batch: the user-side features and the behaviour histories.
        seen: Catalog positions of the items the user interacted with (left out of the
            default candidates when ``exclude_seen``).
    """

    features: Batch
    seen: np.ndarray


@dataclass
class Recommendation:
    """Lists for one user: per task, merged, and the predicted profile.

    An unknown user gets the popularity fallback: every list ranks by training popularity
    (``RecommendedItem.popularity``, no scores), ``strategy`` is ``"popularity"`` and the
    profile is empty. ``known_user`` is True whenever the model scored the lists — for a user
    the catalog lacks too, when the caller gave their input (``Recommender.recommend(user=)``).
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


@dataclass(frozen=True)
class RecommendRequest:
    """The arguments of one :meth:`Recommender.recommend` call (see there)."""

    user_id: str
    k: int | None = None
    strategy: str | None = None
    weights: dict[str, float] | None = None
    candidates: list[str] | None = None
    exclude_seen: bool | None = None
    user: UserInput | None = None
    context: Batch | None = None


@dataclass
class _Prepared:
    """A checked request: its settings resolved, its candidates, later its scores."""

    request: RecommendRequest
    k: int
    strategy: str
    weights: dict[str, float]
    given: UserInput | None
    cand: np.ndarray
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)


def _chunks(spans: list[int], size: int, together: bool) -> list[list[tuple[int, int, int]]]:
    """Rows of users laid back to back (``spans[u]`` rows each), cut into chunks of at most
    ``size`` rows: each chunk a list of ``(user, lo, hi)`` pieces of the concatenation. A chunk
    holds several users' pieces only when ``together`` (a backend that scores users jointly).
    """
    chunks: list[list[tuple[int, int, int]]] = []
    current: list[tuple[int, int, int]] = []
    filled = end = 0
    for user, span in enumerate(spans):
        lo, end = end, end + span
        while lo < end:
            hi = min(end, lo + size - filled)
            current.append((user, lo, hi))
            filled += hi - lo
            lo = hi
            if filled == size or not together:
                chunks.append(current)
                current, filled = [], 0
    if current:
        chunks.append(current)
    return chunks


# Candidate lists at least this long are scored in catalogue order (see predict_many).
SORT_CANDIDATES_FROM = 1024


def _ascending_order(cand: Tensor) -> Tensor | None:
    """The order that sorts a long candidate list, None when short or already sorted."""
    if len(cand) < SORT_CANDIDATES_FROM or bool((cand.diff() >= 0).all()):
        return None
    return torch.argsort(cand, stable=True)


def _unsorted(values: np.ndarray, order: Tensor | None) -> np.ndarray:
    """Values computed for ``cand[order]`` back in the order of ``cand``."""
    if order is None:
        return values
    out = np.empty_like(values)
    out[order.numpy()] = values
    return out


def _rows_of(side: Mapping[str, Tensor], rows: Tensor) -> dict[str, Tensor]:
    """The item side's ``rows`` (views when they are one ascending run, as when a whole
    catalogue is ranked, else gathered copies)."""
    n = len(rows)
    if n and int(rows[-1]) - int(rows[0]) == n - 1 and bool((rows.diff() == 1).all()):
        lo = int(rows[0])
        return {k: v[lo : lo + n] for k, v in side.items()}
    return {k: v.index_select(0, rows) for k, v in side.items()}


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

    Candidates are scored split (:mod:`mtrs.recommend.split`) when the backend can: the
    item side of the whole catalog is computed once and cached (rebuilt when ``catalog``,
    its items or the model's weights change), the user side once per request, and per
    candidate only the layers that mix the two. ``split = None`` scores the assembled rows
    with ``predictor`` instead (the same values).
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
        self.predictor: Predictor = predictor or self._torch_predict
        self._torch = predictor is None
        self.split: SplitPredictor | None = None
        if isinstance(predictor, SplitPredictor):
            self.split = predictor
        elif predictor is None and supports_split(model):
            self.split = SplitScorer(model, tasks).eval()
        # A Protocol isinstance check walks the protocol's members: once, not per request.
        self._many = self.split if isinstance(self.split, BatchedSplitPredictor) else None
        self._item_cache: (
            tuple[tuple[tuple[object, ...], tuple[int, ...]], dict[str, Tensor]] | None
        ) = None
        self._cache_lock = threading.Lock()
        self._params: tuple[nn.Module, list[nn.Parameter]] | None = None
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

    def user_input(self, user_id: str) -> UserInput | None:
        """The catalog's input of a known user (latest row, history, seen items); else None."""
        row = self.catalog.user_row(user_id)
        if row is None:
            return None
        return UserInput(self.catalog.users.take(slice(row, row + 1)), self.catalog.seen(row))

    def blank_user(self) -> UserInput:
        """The input of a user the catalog lacks: out-of-vocabulary user codes, the numeric
        features at their training mean (0 once standardised), no history, nothing seen."""
        users = self.catalog.users.take(slice(0, 1))
        blank = Batch(
            cat=torch.full_like(users.cat, OOV),
            num=torch.zeros_like(users.num),
            labels=users.labels,
            mask=users.mask,
            user=users.user,
            multi={k: torch.zeros_like(v) for k, v in users.multi.items()},
            hist={k: torch.zeros_like(v) for k, v in users.hist.items()},
            hist_value={k: torch.zeros_like(v) for k, v in users.hist_value.items()},
            hist_gap={k: torch.zeros_like(v) for k, v in users.hist_gap.items()},
        )
        return UserInput(blank, np.zeros(0, np.int64))

    def context_features(self) -> dict[str, FeatureConfig]:
        """The model's context features (what a request's context may set), by name."""
        return {
            f.name: f
            for f in self.proc.cfg.features
            if f.group == "context" and f.kind != "history"
        }

    def context_row(self, values: Mapping[str, Any]) -> Batch:
        """The default context row with some features set to raw values (encoded here).

        Args:
            values: Context feature name → raw value (a category, a number, or for a
                multi-hot feature a list of tokens or a separator-joined string).

        Raises:
            MtrsUserError: Naming ``context.<name>``: not a context feature, or a value of
                the wrong kind (a numeric feature needs a finite number).
        """
        ctx = self.catalog.context.take(slice(0, 1))
        if not values:
            return ctx
        features = self.context_features()
        cat_pos = {f.name: j for j, f in enumerate(self.proc.categorical)}
        num_pos = {f.name: j for j, f in enumerate(self.proc.numeric)}
        cat, num, multi = ctx.cat.clone(), ctx.num.clone(), dict(ctx.multi)
        for name, value in values.items():
            f = features.get(name)
            if f is None:
                known = ", ".join(features) or "none"
                raise MtrsUserError(
                    f"context.{name}: not a context feature of this model (context features: "
                    f"{known})"
                )
            if f.kind == "numeric":
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise MtrsUserError(f"context.{name}: a numeric feature needs a number")
                if not math.isfinite(value):
                    raise MtrsUserError(f"context.{name}: {value} is not a finite number")
                scaled = self.proc.scalers[name].transform(np.array([float(value)]))
                num[0, num_pos[name]] = float(scaled[0])
            elif f.kind == "categorical":
                if not isinstance(value, str | int | float) or isinstance(value, bool):
                    raise MtrsUserError(f"context.{name}: a categorical feature needs a value")
                key = pd.Series([value])
                cat[0, cat_pos[name]] = int(self.proc.vocabs[name].encode(as_keys(key))[0])
            else:
                if isinstance(value, list) and all(isinstance(v, str) for v in value):
                    value = f.separator.join(value)
                if not isinstance(value, str):
                    raise MtrsUserError(
                        f"context.{name}: a multi-hot feature needs a list of tokens or text"
                    )
                codes = encode_multi_hot(
                    pd.Series([value]), self.proc.vocabs[name], f.separator, f.max_length
                )
                multi[name] = torch.from_numpy(codes)
        return replace(ctx, cat=cat, num=num, multi=multi)

    def _assemble(self, user: Batch, context: Batch, cand: Tensor) -> Batch:
        items = self.catalog.items
        n = len(cand)
        cat = items.cat[cand].clone()
        num = items.num[cand].clone()
        for mat, src, cols in (
            (cat, user.cat[0], self._cat_cols["user"]),
            (cat, context.cat[0], self._cat_cols["context"]),
            (num, user.num[0], self._num_cols["user"]),
            (num, context.num[0], self._num_cols["context"]),
        ):
            if cols:
                mat[:, cols] = src[cols]
        multi = {}
        for name, g in self._multi_groups.items():
            if g in USER_SIDE:
                multi[name] = user.multi[name][0].expand(n, -1)
            elif g == "context":
                multi[name] = context.multi[name][0].expand(n, -1)
            else:
                multi[name] = items.multi[name][cand]
        expand = lambda d: {k: v[0].expand(n, -1) for k, v in d.items()}  # noqa: E731
        return Batch(
            cat=cat,
            num=num,
            labels=torch.zeros(n, 0),
            mask=torch.zeros(n, 0, dtype=torch.bool),
            user=torch.zeros(n, dtype=torch.long),
            multi=multi,
            hist=expand(user.hist),
            hist_value=expand(user.hist_value),
            hist_gap=expand(user.hist_gap),
        )

    def _user(self, user: int | UserInput) -> Batch:
        """A catalog row, or a given input, as a one-row user batch."""
        if isinstance(user, UserInput):
            return user.features
        return self.catalog.users.take(slice(user, user + 1))

    def predict(
        self,
        user: int | UserInput,
        candidates: np.ndarray,
        context: Batch | None = None,
        tasks: list[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Event-task predictions of candidate item positions, on each label's own scale.

        Args:
            user: A catalog user row, or a user's input (e.g. with served events).
            candidates: Item positions in the catalog.
            context: A one-row context batch (default: the catalog's default context).
            tasks: The tasks and relations wanted (default: every list task); a multiclass
                task gives class probabilities [n, C].

        Returns:
            Predictions per task, in candidate order.
        """
        return self.predict_many([user], [candidates], [context], tasks)[0]

    @torch.no_grad()
    def predict_many(
        self,
        users: Sequence[int | UserInput],
        candidates: Sequence[np.ndarray],
        contexts: Sequence[Batch | None] | None = None,
        tasks: list[str] | None = None,
    ) -> list[dict[str, np.ndarray]]:
        """:meth:`predict` for several users, their candidates scored in shared passes.

        The candidate rows of all users go back to back through the layers in chunks of
        ``recommend.chunk_size`` rows, so a chunk may hold several users' rows (the split
        scorer's :meth:`~mtrs.recommend.split.SplitScorer.candidates_many`): the per-pass
        work is shared. Each user's values are those :meth:`predict` gives it alone.

        Args:
            users: Catalog user rows or users' inputs.
            candidates: Each user's candidate item positions.
            contexts: Each user's one-row context batch (None: the catalog's default).
            tasks: The tasks and relations wanted (default: every list task).

        Returns:
            One dict of predictions per user, in candidate order.
        """
        names = self.list_tasks if tasks is None else tasks
        ctxs = list(contexts) if contexts is not None else [None] * len(users)
        cands = [torch.from_numpy(np.asarray(c).astype(np.int64)) for c in candidates]
        # Long lists are scored in catalogue order: the item side is then read in one
        # sweep (or as one slice) instead of at random rows; the scores are put back.
        orders = [_ascending_order(c) for c in cands]
        cands = [c if o is None else c[o] for c, o in zip(cands, orders, strict=True)]
        feats = [self._user(u) for u in users]
        ctx = [self.catalog.context if c is None else c for c in ctxs]
        spans = [len(c) for c in cands]
        bounds = [0, *itertools.accumulate(spans)]
        rows = torch.cat(cands) if cands else torch.zeros(0, dtype=torch.long)
        parts: dict[str, list[np.ndarray]] = {t: [] for t in names}
        split = self.split
        many = self._many
        if split is not None and len(rows):
            items = self.item_side()
            scored = [u for u, r in enumerate(cands) if len(r)]
            assembled = [self._assemble(feats[u], ctx[u], cands[u][:1]) for u in scored]
            user_rows = assembled[0] if len(assembled) == 1 else Batch.concat(assembled)
            sides: list[dict[str, Tensor]] = [{} for _ in cands]
            for u, side in zip(scored, split.user_sides(user_rows), strict=True):
                sides[u] = side
        for pieces in _chunks(spans, self.cfg.chunk_size, together=many is not None):
            u = pieces[0][0]
            chunk_rows = rows[pieces[0][1] : pieces[-1][2]]
            if split is None:
                preds = self.predictor(self._assemble(feats[u], ctx[u], chunk_rows), False)
            else:
                selected = _rows_of(items, chunk_rows)
                if many is not None and len(pieces) > 1:
                    preds = many.candidates_many(
                        selected,
                        [sides[o] for o, _, _ in pieces],
                        [hi - lo for _, lo, hi in pieces],
                    )
                else:
                    preds = split.candidates(selected, sides[u])
            for name in names:
                parts[name].append(self.tasks.to_output(name, preds[name].numpy()))
        whole = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
        return [
            {k: _unsorted(v[lo:hi], order) for k, v in whole.items()}
            for (lo, hi), order in zip(itertools.pairwise(bounds), orders, strict=True)
        ]

    def _cache_key(self) -> tuple[tuple[object, ...], tuple[int, ...]]:
        # The objects themselves (compared by identity, and kept alive by the cache, so a
        # new catalog can never reuse a cached one's id); in-place weight updates
        # (load_state_dict, an optimizer step) bump each parameter's version counter.
        # The parameter list is kept per model object (walking the modules each request
        # cost more than reading the versions).
        params = self._params
        if params is None or params[0] is not self.model:
            params = self._params = (self.model, list(self.model.parameters()))
        versions = tuple(p._version for p in params[1])
        return (self.split, self.catalog, self.catalog.items), versions

    @torch.no_grad()
    def item_side(self) -> dict[str, Tensor]:
        """The split scorer's item side of every catalog item, computed once and cached.

        Rebuilt when the catalog, its items or the model's weights change.

        Raises:
            RuntimeError: The recommender has no split scorer (``split`` is None).
        """
        if self.split is None:
            raise RuntimeError("this recommender scores without a split scorer")
        key = self._cache_key()
        with self._cache_lock:
            cached = self._item_cache
            if cached is not None:
                (objects, versions), side = cached
                if versions == key[1] and all(a is b for a, b in zip(objects, key[0], strict=True)):
                    return side
            items = self.catalog.items
            step = max(self.cfg.chunk_size, 65536)
            chunks = [
                self.split.item_side(items.take(slice(i, i + step)), len(items))
                for i in range(0, len(items), step)
            ]
            side = {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]} if chunks else {}
            self._item_cache = (key, side)
            return side

    def score(
        self, user: int | UserInput, candidates: np.ndarray, context: Batch | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Per-task scores of the candidate item positions for a user with an input.

        Args:
            user: A catalog user row, or a user's input (e.g. with served events).
            candidates: Item positions in the catalog.
            context: A one-row context batch (default: the catalog's default context).

        Returns:
            ``(scores, profile)``: scores per list task [n]; the user-scoped predictions.
        """
        return self.predict(user, candidates, context), self.profile(user, context)

    def profile(self, user: int | UserInput, context: Batch | None = None) -> dict[str, Any]:
        """The user-scoped tasks' predictions (the user's predicted profile)."""
        return self.profile_many([user], [context])[0]

    @torch.no_grad()
    def profile_many(
        self, users: Sequence[int | UserInput], contexts: Sequence[Batch | None] | None = None
    ) -> list[dict[str, Any]]:
        """:meth:`profile` of several users in one pass (one row each)."""
        if not self.tasks.user_tasks or not users:
            return [{} for _ in users]
        ctxs = list(contexts) if contexts is not None else [None] * len(users)
        zero = torch.zeros(1, dtype=torch.long)
        rows = [
            self._assemble(self._user(u), self.catalog.context if c is None else c, zero)
            for u, c in zip(users, ctxs, strict=True)
        ]
        batch = rows[0] if len(rows) == 1 else Batch.concat(rows)
        if self._torch:  # the user-side pass only (the event tasks' pass is not read here)
            probs = self.tasks.predict(self.model(batch, event_tasks=False).logits)
        else:
            probs = self.predictor(batch, True)
        return [self._profile(probs, i) for i in range(len(rows))]

    def _profile(self, probs: dict[str, Tensor], row: int = 0) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for t in self.tasks.user_tasks:
            p = probs[t.name][row]
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
        exclude_seen: bool | None = None,
        user: UserInput | None = None,
        context: Batch | None = None,
    ) -> Recommendation:
        """Top-K lists per task and the merged list for one user.

        Args:
            user_id: The raw user id.
            k: List length (default ``recommend.k``).
            strategy: ``weighted_sum``, ``weighted_product`` or ``rrf``.
            weights: Task weights for the merge (default from the config; else 1 per task).
            candidates: Raw item ids to rank (default: every known item not yet interacted).
            exclude_seen: Whether the default candidates leave out the items the user
                interacted with (default ``recommend.exclude_seen``).
            user: The user's input, instead of the catalog's (the service passes a user's
                input with the events served since training; a user the catalog lacks is
                then scored by the model too). None: the catalog's row, or the popularity
                fallback for a user it lacks.
            context: A one-row context batch (:meth:`context_row`), instead of the default.

        Raises:
            MtrsUserError: Unknown task in weights, unknown candidate item or strategy.
        """
        request = RecommendRequest(
            user_id, k, strategy, weights, candidates, exclude_seen, user, context
        )
        out = self.recommend_many([request])[0]
        if isinstance(out, MtrsUserError):
            raise out
        return out

    def recommend_many(
        self, requests: Sequence[RecommendRequest]
    ) -> list[Recommendation | MtrsUserError]:
        """:meth:`recommend` for several requests, the known users scored together.

        The model work of all requests is shared (:meth:`predict_many`,
        :meth:`profile_many`); each answer is the one :meth:`recommend` gives alone.

        Returns:
            Per request, in order, its recommendation, or the user error that
            :meth:`recommend` would raise for it (a bad request does not fail the others).
        """
        prepared: list[_Prepared | MtrsUserError] = []
        for r in requests:
            try:
                prepared.append(self._prepare(r))
            except MtrsUserError as err:
                prepared.append(err)
        scored = [p for p in prepared if isinstance(p, _Prepared) and p.given is not None]
        givens = [p.given for p in scored if p.given is not None]  # all of them (for mypy)
        contexts = [p.request.context for p in scored]
        preds = self.predict_many(givens, [p.cand for p in scored], contexts)
        profiles = self.profile_many(givens, contexts)
        for p, scores, prof in zip(scored, preds, profiles, strict=True):
            p.scores, p.profile = scores, prof
        out: list[Recommendation | MtrsUserError] = []
        for q in prepared:
            try:
                out.append(q if isinstance(q, MtrsUserError) else self._finish(q))
            except MtrsUserError as err:
                out.append(err)
        return out

    def _prepare(self, r: RecommendRequest) -> _Prepared:
        """A request's checked settings and candidates (before any scoring)."""
        weights = dict(r.weights if r.weights is not None else self.cfg.weights)
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
        given = r.user if r.user is not None else self.user_input(r.user_id)
        exclude = self.cfg.exclude_seen if r.exclude_seen is None else r.exclude_seen
        cand = self._candidates(given, r.candidates, exclude)
        return _Prepared(r, r.k or self.cfg.k, r.strategy or self.cfg.merge, weights, given, cand)

    def _finish(self, p: _Prepared) -> Recommendation:
        """The lists of a prepared (and, for a known user, scored) request."""
        cand, strategy, weights = p.cand, p.strategy, p.weights
        if p.given is None:
            # Unknown user: popularity, as shares of the training positives, not task scores.
            scores = {t: self.catalog.popularity_share(t)[cand] for t in self.list_tasks}
            merged_scores = self.catalog.popularity_share()[cand]
            profile: dict[str, Any] = {}
            strategy, weights = POPULARITY, {}
        else:
            scores, profile = p.scores, p.profile
            try:
                merged_scores = merge(strategy, scores, weights, rrf_k=self.cfg.rrf_k)
            except ValueError as err:
                raise MtrsUserError(f"merge: {err}") from None
        fallback = p.given is None

        def ranked(s: np.ndarray) -> list[RecommendedItem]:
            return [self.item(int(cand[i]), float(s[i]), fallback) for i in top_k(s, p.k)]

        lists = {t: ranked(s) for t, s in scores.items()}
        return Recommendation(
            str(p.request.user_id),
            not fallback,
            lists,
            ranked(merged_scores),
            strategy,
            weights,
            profile,
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

    def _candidates(
        self, user: UserInput | None, candidates: list[str] | None, exclude_seen: bool
    ) -> np.ndarray:
        n_items = len(self.catalog.item_ids)
        if candidates is not None:
            pos = self.catalog.item_positions(candidates)
            if (pos < 0).any():
                bad = candidates[int(np.argmax(pos < 0))]
                raise MtrsUserError(f"candidates: unknown item id '{bad}'")
            return pos
        keep = np.ones(n_items, dtype=bool)
        if user is not None and exclude_seen:
            keep[user.seen] = False
        return np.flatnonzero(keep)
