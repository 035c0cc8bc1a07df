"""Behaviour history: each event's last N earlier interactions of the same user, without leaks.

One builder serves every path: training rows in memory (the log as one chunk), a streamed log
(chunk after chunk, carrying each user's last events across chunk boundaries) and serving
(each user's latest history).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from mtrs.config.models import FeatureConfig, JobConfig
from mtrs.data.encoders import Scaler
from mtrs.data.negatives import sampled_rows
from mtrs.errors import MtrsUserError

GAP_SCALE_SECONDS = 3600.0


def history_indices(
    user: np.ndarray,
    time: np.ndarray,
    is_source: np.ndarray,
    max_length: int,
    first: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """For every event from row ``first`` on, the rows of the same user's source events
    strictly before it.

    An event's history holds only events with a strictly smaller timestamp, so events at the
    same instant (e.g. a rating and its sampled negatives) never see each other.

    Args:
        user: Integer user codes, shape [n].
        time: Timestamps, shape [n] (any numeric type).
        is_source: Which rows count as interactions for the history, bool [n].
        max_length: N, the number of most recent source events kept.
        first: The first row whose history is wanted (the rows before it are earlier
            events that only feed the histories: a streamed chunk's carried prefix).

    Returns:
        ``(rows, valid)``: ``rows`` int64 [n - first, N] indexes into the input rows (oldest
        first, most recent last, left-padded), ``valid`` bool [n - first, N] marks real
        entries.
    """
    n = len(user) - first
    src = np.flatnonzero(is_source)
    if len(src) == 0:
        # No source events at all (e.g. no click in these rows): every history is empty.
        return np.zeros((n, max_length), np.int64), np.zeros((n, max_length), bool)
    # Rank timestamps so that (user, time) packs into one sortable int64 key.
    _, t_rank = np.unique(time, return_inverse=True)
    t_rank = t_rank.astype(np.int64)
    span = np.int64(t_rank.max() + 2)
    key_all = user.astype(np.int64) * span + t_rank
    order = np.argsort(key_all[src], kind="stable")
    src_sorted = src[order]
    key_src = key_all[src_sorted]
    end = np.searchsorted(key_src, key_all[first:], side="left")
    start = np.searchsorted(key_src, user[first:].astype(np.int64) * span, side="left")
    pos = end[:, None] - max_length + np.arange(max_length)[None, :]
    valid = pos >= start[:, None]
    rows = np.where(valid, src_sorted[np.clip(pos, 0, len(src_sorted) - 1)], 0)
    return rows.astype(np.int64), valid


def latest_history(
    user: np.ndarray, time: np.ndarray, is_source: np.ndarray, max_length: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each user's last N source events over the whole log (the history used when serving).

    Returns:
        ``(users, rows, valid)``: the distinct user codes [u], rows [u, N] and valid [u, N].
    """
    src = np.flatnonzero(is_source)
    order = np.lexsort((time[src], user[src]))
    s = src[order]
    users, first, counts = np.unique(user[s], return_index=True, return_counts=True)
    end = first + counts
    pos = end[:, None] - max_length + np.arange(max_length)[None, :]
    valid = pos >= first[:, None]
    rows = np.where(valid, s[np.clip(pos, 0, max(len(s) - 1, 0))], 0)
    return users, rows.astype(np.int64), valid


def time_gaps(now: np.ndarray, then: np.ndarray) -> np.ndarray:
    """The history's time-gap feature: log(1 + hours between an event and a past event).

    Shape:
        now [n, 1] or [n, N], then [n, N] → float64 [n, N].
    """
    return np.log1p(np.clip(now - then, 0, None) / GAP_SCALE_SECONDS)


@dataclass
class HistoryInput:
    """Encoded histories for rows, by history feature name.

    Shape:
        items[name]: int64 [n, N] item codes (0 = padding); values[name], gaps[name]: float32
        [n, N] side values and time gaps (present where the feature asks for them).
    """

    items: dict[str, np.ndarray]
    values: dict[str, np.ndarray]
    gaps: dict[str, np.ndarray]

    @classmethod
    def empty(cls, features: list[FeatureConfig], n: int) -> HistoryInput:
        """All-padding histories for ``n`` rows (item and context rows have none)."""
        return cls({f.name: np.zeros((n, f.max_length), np.int64) for f in features}, {}, {})


class HistorySource(Protocol):
    """What the builder needs from the fitted processor."""

    cfg: JobConfig
    scalers: dict[str, Scaler]

    @property
    def histories(self) -> list[FeatureConfig]:
        """The behaviour-history features."""
        ...

    def history_item_codes(self, df: pd.DataFrame, history: FeatureConfig) -> np.ndarray:
        """Codes of each row's item in the history's item feature."""
        ...


def source_mask(df: pd.DataFrame, feature: FeatureConfig | None, cfg: JobConfig) -> np.ndarray:
    """Rows that count as interactions: ``history_filter`` = 1 (all rows without a filter or
    feature), never a row sampled by ``[data.negatives]``.

    Histories, the catalog's seen items and its popularity all read this, so a sampled
    negative is never an interaction, whatever the filter.

    Raises:
        MtrsUserError: The filter column is not in the rows.
    """
    mask = ~sampled_rows(df, cfg)
    if feature is None or not feature.history_filter:
        return mask
    if feature.history_filter not in df.columns:
        raise MtrsUserError(
            f"feature '{feature.name}': history_filter column '{feature.history_filter}' is "
            "not in the rows to encode (pass precomputed histories instead)"
        )
    return mask & (df[feature.history_filter].to_numpy(dtype=np.float64) == 1.0)


class HistoryBuilder:
    """Histories of events in time order, fed chunk by chunk; each user's latest history.

    Per history feature it keeps, for every user, the last ``max_length`` source events and
    the last ``max_length`` strictly before the user's latest instant, so a chunk boundary
    that splits events at one instant still yields the histories of the whole log at once.

    Args:
        source: The fitted processor (history features, item codes, value scalers).
    """

    def __init__(self, source: HistorySource) -> None:
        self.source = source
        self.state: dict[str, pd.DataFrame] = {}

    def add(self, df: pd.DataFrame, user: np.ndarray, start: int = 0) -> HistoryInput:
        """Histories of a chunk's rows (``user``: global user codes), then the state moves on.

        Args:
            df: The chunk's merged rows, in time order, after every earlier chunk.
            user: Each row's user code, consistent across chunks.
            start: The global row number of the chunk's first row.
        """
        d = self.source.cfg.data
        with_gaps = self.source.cfg.model.sequence.time_gaps
        items: dict[str, np.ndarray] = {}
        values: dict[str, np.ndarray] = {}
        gaps: dict[str, np.ndarray] = {}
        n = len(df)
        time = pd.to_numeric(df[d.time_key]).to_numpy(dtype=np.float64)
        for f in self.source.histories:
            rows_here = pd.DataFrame(
                {
                    "user": user,
                    "time": time,
                    "code": self.source.history_item_codes(df, f),
                    "value": (
                        df[f.history_value].to_numpy(dtype=np.float64)
                        if f.history_value
                        else np.zeros(n)
                    ),
                    "row": np.arange(start, start + n, dtype=np.int64),
                    "src": source_mask(df, f, self.source.cfg),
                }
            )
            old = self.state.get(f.name)
            in_chunk = _present(old["user"].to_numpy(), user) if old is not None else None
            prefix = old[in_chunk] if old is not None and in_chunk is not None else None
            both = rows_here if prefix is None else pd.concat([prefix, rows_here])
            both = both.reset_index(drop=True)
            u = both["user"].to_numpy()
            t = both["time"].to_numpy()
            src = both["src"].to_numpy()
            rows, valid = history_indices(u, t, src, f.max_length, first=len(both) - n)
            items[f.name] = np.where(valid, both["code"].to_numpy()[rows], 0)
            if f.history_value:
                v = self.source.scalers[f.name].transform(both["value"].to_numpy())
                values[f.name] = np.where(valid, v[rows], 0.0).astype(np.float32)
            if with_gaps:
                g = time_gaps(time[:, None], t[rows])
                gaps[f.name] = np.where(valid, g, 0.0).astype(np.float32)
            keep = _keep_rows(u, t, src, f.max_length)
            kept = both.iloc[keep]
            rest = old[~in_chunk] if old is not None and in_chunk is not None else None
            new = kept if rest is None else pd.concat([rest, kept], ignore_index=True)
            self.state[f.name] = new.sort_values("row", kind="stable").reset_index(drop=True)
        return HistoryInput(items, values, gaps)

    def latest(self, num_users: int) -> HistoryInput:
        """Every user's serving history (last N source events), rows in user-code order.

        At serving time the gap is measured from the user's latest event.
        """
        items: dict[str, np.ndarray] = {}
        values: dict[str, np.ndarray] = {}
        gaps: dict[str, np.ndarray] = {}
        for f in self.source.histories:
            st = self.state.get(f.name)
            mat = np.zeros((num_users, f.max_length), np.int64)
            vm = np.zeros((num_users, f.max_length), np.float32)
            gm = np.zeros((num_users, f.max_length), np.float32)
            if st is not None and len(st):
                u = st["user"].to_numpy()
                t = st["time"].to_numpy()
                users, rows, valid = latest_history(u, t, np.ones(len(st), bool), f.max_length)
                mat[users] = np.where(valid, st["code"].to_numpy()[rows], 0)
                if f.history_value:
                    v = self.source.scalers[f.name].transform(st["value"].to_numpy())
                    vm[users] = np.where(valid, v[rows], 0.0)
                g = time_gaps(t[rows[:, -1]][:, None], t[rows])
                gm[users] = np.where(valid, g, 0.0)
            items[f.name] = mat
            if f.history_value:
                values[f.name] = vm
            if self.source.cfg.model.sequence.time_gaps:
                gaps[f.name] = gm
        return HistoryInput(items, values, gaps)


def _keep_rows(u: np.ndarray, t: np.ndarray, src: np.ndarray, n: int) -> np.ndarray:
    """Rows to carry: each user's last ``n`` source events and last ``n`` before its last time."""
    if not src.any():
        return np.zeros(0, dtype=np.int64)
    last_t = pd.Series(t[src]).groupby(u[src]).max()
    user_last = last_t.reindex(u).to_numpy()
    _, rows_a, valid_a = latest_history(u, t, src, n)
    earlier = src & (t < user_last)
    keep = np.zeros(len(u), dtype=bool)
    keep[rows_a[valid_a]] = True
    if earlier.any():
        _, rows_b, valid_b = latest_history(u, t, earlier, n)
        keep[rows_b[valid_b]] = True
    return np.flatnonzero(keep)


def _present(codes: np.ndarray, among: np.ndarray) -> np.ndarray:
    """Which of ``codes`` occur in ``among`` (non-negative dense codes: a lookup table)."""
    if not len(codes) or not len(among):
        return np.zeros(len(codes), dtype=bool)
    table = np.zeros(int(max(codes.max(), among.max())) + 1, dtype=bool)
    table[among] = True
    return table[codes]
