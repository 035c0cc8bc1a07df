"""Tests for mtrs.data.split: random, temporal and leave_last splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtrs.config.models import SplitConfig
from mtrs.data.split import TEST, TRAIN, VALID, SplitInput, assign_split


def _log(seed: int, n_users: int = 300, max_units: int = 12) -> SplitInput:
    """Users with 1..max_units units each; a unit is 1..3 rows at the same timestamp."""
    rng = np.random.default_rng(seed)
    user, time, unit = [], [], []
    u_id = 0
    for u in range(n_users):
        for _ in range(int(rng.integers(1, max_units + 1))):
            t = int(rng.integers(0, 10_000))
            for _ in range(int(rng.integers(1, 4))):
                user.append(u)
                time.append(t)
                unit.append(u_id)
            u_id += 1
    order = rng.permutation(len(user))
    return SplitInput(np.array(user)[order], np.array(time)[order], np.array(unit)[order])


def _units_together(x: SplitInput, part: np.ndarray) -> bool:
    per_unit = pd.Series(part).groupby(x.unit).nunique()
    return bool((per_unit == 1).all())


# ----- random -------------------------------------------------------------------------------
def test_random_fractions_and_units() -> None:
    x = _log(0, n_users=2000)
    cfg = SplitConfig(method="random", valid_fraction=0.2, test_fraction=0.1, seed=3)
    part = assign_split(x, cfg)
    assert part.dtype == np.int8 and set(np.unique(part)) == {TRAIN, VALID, TEST}
    assert _units_together(x, part)
    unit_part = pd.Series(part).groupby(x.unit).first()
    n = len(unit_part)  # ≈ 13,000 units: a 3-sigma band is about ±0.008
    assert abs((unit_part == TEST).sum() / n - 0.1) < 0.015
    assert abs((unit_part == VALID).sum() / n - 0.2) < 0.015
    assert abs((unit_part == TRAIN).sum() / n - 0.7) < 0.015


def test_random_rows_are_their_own_units_by_default() -> None:
    n = 20_000
    x = SplitInput(np.zeros(n, np.int64), np.arange(n), np.arange(n))
    part = assign_split(x, SplitConfig(method="random", valid_fraction=0.1, test_fraction=0.3))
    assert abs((part == TEST).mean() - 0.3) < 0.02
    assert abs((part == VALID).mean() - 0.1) < 0.02


def test_random_zero_fractions_keep_everything_in_train() -> None:
    x = _log(1, n_users=50)
    part = assign_split(x, SplitConfig(method="random", valid_fraction=0.0, test_fraction=0.0))
    assert (part == TRAIN).all()


def test_random_is_deterministic_by_seed() -> None:
    x = _log(2)
    a = assign_split(x, SplitConfig(method="random", seed=5))
    b = assign_split(x, SplitConfig(method="random", seed=5))
    c = assign_split(x, SplitConfig(method="random", seed=6))
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


# ----- temporal -----------------------------------------------------------------------------
def test_temporal_orders_the_splits_in_time() -> None:
    x = _log(3)
    part = assign_split(x, SplitConfig(method="temporal", valid_fraction=0.1, test_fraction=0.2))
    t = x.time
    assert t[part == TRAIN].max() <= t[part == VALID].min()
    assert t[part == VALID].max() <= t[part == TEST].min()
    assert abs((part == TEST).mean() - 0.2) < 0.02
    assert abs((part == VALID).mean() - 0.1) < 0.02
    # Rows at one instant (here: every unit) never straddle a cut.
    assert _units_together(x, part)


def test_temporal_hand_computed() -> None:
    # Times 1..10; cuts at the 0.7 and 0.9 quantiles (7.3 and 9.1).
    x = SplitInput(np.zeros(10, np.int64), np.arange(1, 11), np.arange(10))
    part = assign_split(x, SplitConfig(method="temporal", valid_fraction=0.2, test_fraction=0.1))
    np.testing.assert_array_equal(part, [0, 0, 0, 0, 0, 0, 0, 1, 1, 2])


@settings(max_examples=60, deadline=None)
@given(
    times=st.lists(st.integers(0, 20), min_size=2, max_size=60),
    valid=st.sampled_from([0.0, 0.1, 0.25]),
    test=st.sampled_from([0.0, 0.1, 0.3]),
)
def test_temporal_never_puts_a_later_event_before_an_earlier_one(
    times: list[int], valid: float, test: float
) -> None:
    t = np.array(times)
    x = SplitInput(np.zeros(len(t), np.int64), t, np.arange(len(t)))
    part = assign_split(x, SplitConfig(method="temporal", valid_fraction=valid, test_fraction=test))
    # A row in a later split is never earlier than a row in an earlier split.
    for a in range(3):
        for b in range(a + 1, 3):
            if (part == a).any() and (part == b).any():
                assert t[part == a].max() <= t[part == b].min()
    if test == 0.0:
        assert not (part == TEST).any()
    if valid == 0.0 and test == 0.0:
        assert (part == TRAIN).all()


# ----- leave_last ---------------------------------------------------------------------------
def test_leave_last_takes_each_users_latest_units() -> None:
    x = _log(4, n_users=400)
    part = assign_split(x, SplitConfig(method="leave_last", valid_fraction=0.1, test_fraction=0.2))
    assert _units_together(x, part)
    frame = pd.DataFrame({"u": x.user, "t": x.time, "unit": x.unit, "p": part})
    for _, g in frame.groupby("u"):
        n_units = g["unit"].nunique()
        test_t, valid_t, train_t = (g.loc[g["p"] == s, "t"] for s in (TEST, VALID, TRAIN))
        # A user keeps at least one training unit.
        assert len(train_t) > 0
        if n_units >= 2:
            assert len(test_t) > 0, "a user with two or more units gets a test unit"
        else:
            assert len(test_t) == 0 and len(valid_t) == 0
        if len(test_t):
            assert test_t.min() >= max(train_t.max(), valid_t.max() if len(valid_t) else -1)
        if len(valid_t):
            assert valid_t.min() >= train_t.max()


def test_leave_last_hand_computed() -> None:
    # One user, 10 single-row units at times 10..1 (given in reverse), 20 % test, 10 % valid.
    x = SplitInput(np.zeros(10, np.int64), np.arange(10, 0, -1), np.arange(10))
    part = assign_split(x, SplitConfig(method="leave_last", valid_fraction=0.1, test_fraction=0.2))
    # Times 10, 9 → test; 8 → valid; the rest train.
    np.testing.assert_array_equal(part, [2, 2, 1, 0, 0, 0, 0, 0, 0, 0])


def test_leave_last_two_units_gives_one_test_and_no_valid() -> None:
    # Two units per user: one test, and the other must stay in train.
    x = SplitInput(np.array([0, 0, 0, 1, 1]), np.array([5, 5, 1, 2, 3]), np.array([7, 7, 3, 4, 9]))
    part = assign_split(x, SplitConfig(method="leave_last", valid_fraction=0.3, test_fraction=0.3))
    np.testing.assert_array_equal(part, [TEST, TEST, TRAIN, TRAIN, TEST])


def test_leave_last_is_deterministic() -> None:
    x = _log(5)
    cfg = SplitConfig(method="leave_last", valid_fraction=0.1, test_fraction=0.1, seed=0)
    np.testing.assert_array_equal(assign_split(x, cfg), assign_split(x, cfg))


@pytest.mark.parametrize("method", ["random", "temporal", "leave_last"])
def test_every_method_returns_one_label_per_row(method: str) -> None:
    x = _log(6, n_users=30)
    part = assign_split(x, SplitConfig(method=method))  # type: ignore[arg-type]
    assert part.shape == x.user.shape
    assert set(np.unique(part)) <= {TRAIN, VALID, TEST}
