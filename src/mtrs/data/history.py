"""Behaviour history: each event's last N earlier interactions of the same user, without leaks."""

from __future__ import annotations

import numpy as np


def history_indices(
    user: np.ndarray,
    time: np.ndarray,
    is_source: np.ndarray,
    max_length: int,
) -> tuple[np.ndarray, np.ndarray]:
    """For every event, the rows of the same user's source events strictly before it.

    An event's history holds only events with a strictly smaller timestamp, so events at the
    same instant (e.g. a rating and its sampled negatives) never see each other.

    Args:
        user: Integer user codes, shape [n].
        time: Timestamps, shape [n] (any numeric type).
        is_source: Which rows count as interactions for the history, bool [n].
        max_length: N, the number of most recent source events kept.

    Returns:
        ``(rows, valid)``: ``rows`` int64 [n, N] indexes into the input rows (oldest first,
        most recent last, left-padded), ``valid`` bool [n, N] marks real entries.
    """
    n = len(user)
    src = np.flatnonzero(is_source)
    if len(src) == 0:
        # No source events at all (e.g. no click in these rows): every history is empty.
        return np.zeros((n, max_length), np.int64), np.zeros((n, max_length), bool)
    # Rank timestamps so that (user, time) packs into one sortable int64 key.
    _, t_rank = np.unique(time, return_inverse=True)
    t_rank = t_rank.astype(np.int64)
    span = np.int64(t_rank.max() + 2) if n else np.int64(2)
    key_all = user.astype(np.int64) * span + t_rank
    order = np.argsort(key_all[src], kind="stable")
    src_sorted = src[order]
    key_src = key_all[src_sorted]
    end = np.searchsorted(key_src, key_all, side="left")
    start = np.searchsorted(key_src, user.astype(np.int64) * span, side="left")
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
