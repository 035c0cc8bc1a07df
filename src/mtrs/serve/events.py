"""Events posted to the service: kept per user, in memory, and folded into the user's input.

The catalog holds each user's latest encoded history as of training. An event posted to
``/v1/events`` is kept raw (item id, time, labels) in an :class:`EventStore`, bounded per
user and in the number of users; every request folds the user's events into the model's
input afresh (:func:`serving_input`), so a reloaded model reads the same events with its own
item codes.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from mtrs.config.models import FeatureConfig
from mtrs.data.history import GAP_SCALE_SECONDS
from mtrs.recommend.recommender import Recommender, UserInput

EVENTS_PER_USER = 1000
MAX_USERS = 100_000


@dataclass(frozen=True)
class Event:
    """One interaction posted to the service.

    Attributes:
        item_id: The raw item id.
        timestamp: Seconds (the log's time unit), or None when the client gave none.
        labels: Data columns of the event, e.g. ``{"click": 1}``: a history with a
            ``history_filter`` counts the event only when that column is 1 (an event without
            the column counts); ``history_value`` columns give the history's side value.
    """

    item_id: str
    timestamp: float | None = None
    labels: Mapping[str, float] = field(default_factory=dict)


class EventStore:
    """Events by user: at most ``per_user`` each (oldest dropped), at most ``max_users``
    users (the least recently active dropped). Thread-safe.

    Args:
        per_user: Events kept per user.
        max_users: Users kept.
    """

    def __init__(self, per_user: int = EVENTS_PER_USER, max_users: int = MAX_USERS) -> None:
        self.per_user = per_user
        self.max_users = max_users
        self._events: OrderedDict[str, deque[Event]] = OrderedDict()
        self._lock = threading.Lock()

    def append(self, user_id: str, event: Event) -> int:
        """Add an event; returns the number of events now kept for the user."""
        with self._lock:
            kept = self._events.get(user_id)
            if kept is None:
                kept = self._events[user_id] = deque(maxlen=self.per_user)
            self._events.move_to_end(user_id)
            kept.append(event)
            while len(self._events) > self.max_users:
                self._events.popitem(last=False)
            return len(kept)

    def events(self, user_id: str) -> tuple[Event, ...]:
        """A snapshot of the user's events, oldest first (empty for a user without any)."""
        with self._lock:
            kept = self._events.get(user_id)
            return tuple(kept) if kept is not None else ()

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)


def enters_history(feature: FeatureConfig, event: Event) -> bool:
    """Whether the event counts as an interaction of a history (its ``history_filter``)."""
    if not feature.history_filter:
        return True
    value = event.labels.get(feature.history_filter)
    return value is None or value == 1.0


def serving_input(scorer: Recommender, user_id: str, events: tuple[Event, ...]) -> UserInput | None:
    """The user's input with the served events folded in.

    A known user starts from the catalog's row; a user the catalog lacks and who has events
    starts from :meth:`~mtrs.recommend.recommender.Recommender.blank_user` (out-of-vocabulary
    user features, empty history), so the model scores them rather than the popularity
    fallback. Each event whose item the model knows is seen; it enters each history it
    counts for, at the end (most recent), shifting the oldest entry out. With time gaps, the
    gaps of earlier entries grow by the time between consecutive served events.

    Returns:
        The input, or None for a user neither in the catalog nor with events.
    """
    base = scorer.user_input(user_id)
    if not events:
        return base
    if base is None:
        base = scorer.blank_user()
    proc, items = scorer.proc, scorer.catalog.items
    positions = scorer.catalog.item_positions([e.item_id for e in events])
    known = [(int(p), e) for p, e in zip(positions, events, strict=True) if p >= 0]
    cat_col = {f.name: j for j, f in enumerate(proc.categorical)}
    feats = base.features
    hist, values, gaps = dict(feats.hist), dict(feats.hist_value), dict(feats.hist_gap)
    for f in proc.histories:
        assert f.item_feature is not None
        codes = hist[f.name][0].numpy().copy()
        vals = values[f.name][0].numpy().copy() if f.name in values else None
        gap = gaps[f.name][0].numpy().astype(np.float64) if f.name in gaps else None
        last: float | None = None
        for pos, event in known:
            if gap is not None and event.timestamp is not None:
                if last is not None and event.timestamp > last:
                    hours = (event.timestamp - last) / GAP_SCALE_SECONDS
                    gap = np.where(codes > 0, np.log1p(np.expm1(gap) + hours), 0.0)
                last = event.timestamp
            if not enters_history(f, event):
                continue
            codes = np.roll(codes, -1)
            codes[-1] = int(items.cat[pos, cat_col[f.item_feature]])
            if vals is not None:
                raw = event.labels.get(f.history_value or "", math.nan)
                vals = np.roll(vals, -1)
                vals[-1] = proc.scalers[f.name].transform(np.array([raw]))[0]
            if gap is not None:
                gap = np.roll(gap, -1)
                gap[-1] = 0.0
        hist[f.name] = torch.from_numpy(codes).reshape(1, -1)
        if vals is not None:
            values[f.name] = torch.from_numpy(vals.astype(np.float32)).reshape(1, -1)
        if gap is not None:
            gaps[f.name] = torch.from_numpy(gap.astype(np.float32)).reshape(1, -1)
    seen = np.union1d(base.seen, np.array([p for p, _ in known], dtype=np.int64))
    features = replace(feats, hist=hist, hist_value=values, hist_gap=gaps)
    return UserInput(features, seen)
