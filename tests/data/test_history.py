"""Tests for mtrs.data.history: each event's earlier interactions, without leaking the future."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtrs.config.load import config_from_dict
from mtrs.data.history import history_indices, latest_history
from mtrs.data.processor import FittedProcessor
from mtrs.errors import MtrsUserError

# A hand-built log (row: user, time, is a source event):
#   0: u0 t1 src   1: u1 t1 src   2: u0 t2 src   3: u0 t2 src (same instant as row 2)
#   4: u0 t3 -     5: u0 t4 src   6: u1 t5 src   7: u0 t5 src
USER = np.array([0, 1, 0, 0, 0, 0, 1, 0])
TIME = np.array([1, 1, 2, 2, 3, 4, 5, 5])
SRC = np.array([True, True, True, True, False, True, True, True])


def test_hand_built_log_last_three() -> None:
    rows, valid = history_indices(USER, TIME, SRC, 3)
    # Expected rows (oldest → newest, left-padded; -1 marks padding).
    expected = np.array(
        [
            [-1, -1, -1],  # first event of u0: nothing earlier
            [-1, -1, -1],  # first event of u1
            [-1, -1, 0],  # rows 2 and 3 share t2: they never see each other
            [-1, -1, 0],
            [0, 2, 3],  # t3: both t2 events are strictly earlier
            [0, 2, 3],  # t4: row 4 is not a source event
            [-1, -1, 1],  # u1 only sees its own events
            [2, 3, 5],  # last 3 of u0's four earlier source events
        ]
    )
    np.testing.assert_array_equal(valid, expected >= 0)
    np.testing.assert_array_equal(rows[valid], expected[expected >= 0])
    # Padding entries index row 0 but are marked invalid.
    np.testing.assert_array_equal(rows[~valid], 0)
    assert rows.dtype == np.int64 and valid.dtype == bool


def test_row_order_of_the_input_does_not_matter() -> None:
    # Rows 2 and 3 share a timestamp; among equal times the earlier input row comes first,
    # so the permutation keeps their relative order.
    perm = np.array([7, 2, 5, 0, 6, 3, 1, 4])
    rows, valid = history_indices(USER[perm], TIME[perm], SRC[perm], 3)
    ref_rows, ref_valid = history_indices(USER, TIME, SRC, 3)
    # Map back: permuted row i is original row perm[i].
    np.testing.assert_array_equal(valid, ref_valid[perm])
    np.testing.assert_array_equal(perm[rows[valid]], ref_rows[perm][ref_valid[perm]])


def test_max_length_one_keeps_the_latest() -> None:
    rows, valid = history_indices(USER, TIME, SRC, 1)
    np.testing.assert_array_equal(valid[:, 0], [False, False, True, True, True, True, True, True])
    np.testing.assert_array_equal(rows[valid[:, 0], 0], [0, 0, 3, 3, 1, 5])


def test_no_source_events_gives_empty_histories() -> None:
    rows, valid = history_indices(USER, TIME, np.zeros(len(USER), dtype=bool), 4)
    assert rows.shape == (8, 4) and valid.shape == (8, 4)
    assert not valid.any()
    assert (rows == 0).all()


def test_latest_history_hand_built() -> None:
    users, rows, valid = latest_history(USER, TIME, SRC, 3)
    np.testing.assert_array_equal(users, [0, 1])
    np.testing.assert_array_equal(valid, [[True, True, True], [False, True, True]])
    # u0's source events in time order: 0, 2, 3, 5, 7 → last three; u1: 1, 6.
    np.testing.assert_array_equal(rows[0], [3, 5, 7])
    np.testing.assert_array_equal(rows[1][valid[1]], [1, 6])


# ----- the processor applies history_filter ---------------------------------------------------
def _history_config(history_filter: str | None) -> Any:
    hist: dict[str, Any] = {
        "name": "hist",
        "kind": "history",
        "group": "behaviour",
        "item_feature": "item_id",
        "max_length": 3,
    }
    if history_filter:
        hist["history_filter"] = history_filter
    return config_from_dict(
        {
            "data": {"interactions": "/x.csv"},
            "features": [{"name": "item_id", "kind": "categorical", "group": "item"}, hist],
            "tasks": [{"name": "buy", "type": "binary", "label": "buy"}],
        }
    )


LOG = pd.DataFrame(
    {
        "user_id": ["u1", "u1", "u1", "u1", "u2"],
        "timestamp": [1, 2, 3, 4, 2],
        "item_id": ["A", "B", "C", "D", "E"],
        "click": [1, 0, 1, 0, 1],
        "buy": [0, 0, 1, 0, 0],
    }
)


def test_history_filter_keeps_only_clicked_items() -> None:
    cfg = _history_config("click")
    proc = FittedProcessor.fit(LOG, cfg)
    # Each item seen once → vocabulary in value order: A=2, B=3, C=4, D=5, E=6.
    assert proc.vocabs["item_id"].values == ["A", "B", "C", "D", "E"]
    hist = proc.encode(LOG).hist["hist"].numpy()
    np.testing.assert_array_equal(
        hist,
        [
            [0, 0, 0],
            [0, 0, 2],  # A clicked
            [0, 0, 2],  # B was not clicked
            [0, 2, 4],  # A, C
            [0, 0, 0],  # u2 has nothing earlier
        ],
    )


def test_without_filter_every_event_counts() -> None:
    proc = FittedProcessor.fit(LOG, _history_config(None))
    hist = proc.encode(LOG).hist["hist"].numpy()
    np.testing.assert_array_equal(hist[3], [2, 3, 4])
    np.testing.assert_array_equal(hist[2], [0, 2, 3])


def test_log_without_any_click_encodes_empty_histories() -> None:
    proc = FittedProcessor.fit(LOG, _history_config("click"))
    hist = proc.encode(LOG.assign(click=0)).hist["hist"].numpy()
    assert (hist == 0).all()


def test_missing_history_filter_column_is_a_user_error() -> None:
    proc = FittedProcessor.fit(LOG, _history_config("click"))
    with pytest.raises(MtrsUserError, match="'click'"):
        proc.encode(LOG.drop(columns=["click"]))


# ----- properties on random logs --------------------------------------------------------------
@st.composite
def logs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    n = draw(st.integers(1, 40))
    user = np.array(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    time = np.array(draw(st.lists(st.integers(0, 8), min_size=n, max_size=n)), dtype=np.float64)
    src = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    return user, time, src, draw(st.integers(1, 5))


def _brute_earlier(user: np.ndarray, time: np.ndarray, src: np.ndarray, i: int) -> list[int]:
    """Source rows of row i's user strictly before it, ordered by (time, row)."""
    rows = [j for j in range(len(user)) if user[j] == user[i] and time[j] < time[i] and src[j]]
    return sorted(rows, key=lambda j: (time[j], j))


@settings(max_examples=150, deadline=None)
@given(logs())
def test_history_never_leaks_and_keeps_the_last_n(
    log: tuple[np.ndarray, np.ndarray, np.ndarray, int],
) -> None:
    user, time, src, n_max = log
    rows, valid = history_indices(user, time, src, n_max)
    assert rows.shape == valid.shape == (len(user), n_max)
    for i in range(len(user)):
        got = rows[i][valid[i]]
        earlier = _brute_earlier(user, time, src, i)
        # Padding is on the left: the valid entries are a suffix.
        k = int(valid[i].sum())
        assert valid[i][n_max - k :].all()
        assert k == min(n_max, len(earlier))
        for j in got:
            assert user[j] == user[i]
            assert time[j] < time[i]
            assert src[j]
        # Oldest → newest, the most recent N.
        assert list(got) == earlier[len(earlier) - k :]


@settings(max_examples=150, deadline=None)
@given(logs())
def test_latest_history_is_the_last_n_per_user(
    log: tuple[np.ndarray, np.ndarray, np.ndarray, int],
) -> None:
    user, time, src, n_max = log
    users, rows, valid = latest_history(user, time, src, n_max)
    assert sorted(set(user[src].tolist())) == users.tolist()
    for r, u in enumerate(users):
        mine = sorted(
            (j for j in range(len(user)) if user[j] == u and src[j]), key=lambda j: (time[j], j)
        )
        k = min(n_max, len(mine))
        assert int(valid[r].sum()) == k
        assert valid[r][n_max - k :].all()
        assert rows[r][valid[r]].tolist() == mine[len(mine) - k :]
