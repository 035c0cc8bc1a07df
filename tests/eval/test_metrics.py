"""Tests for mtrs.eval.metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from mtrs.eval.metrics import (
    HIGHER_IS_BETTER,
    accuracy,
    auc,
    gauc,
    hit_rate_at_k,
    hits_from_ranked,
    is_higher_better,
    logloss,
    macro_f1,
    mae,
    ndcg_at_k,
    ranking_metrics,
    recall_at_k,
    rmse,
    task_metrics,
)


def test_auc_with_tie() -> None:
    # Positive/negative pairs: 0.4 vs 0.1 -> 1, 0.4 vs 0.4 (tie) -> 0.5, 0.8 vs both -> 2.
    # AUC = 3.5 / 4 = 0.875.
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.4, 0.8])
    assert auc(y, p) == pytest.approx(0.875)


def test_auc_single_class_is_nan() -> None:
    assert math.isnan(auc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_gauc_weights_by_rows_and_skips_single_class_groups() -> None:
    # Group "a" (4 rows): the tie example above, AUC 0.875.
    # Group "b" (3 rows): y=[1,0,0], p=[0.2,0.3,0.1]; the positive beats 0.1, loses to 0.3 -> 0.5.
    # Group "c" (2 rows): positives only, excluded from values and weights.
    # gAUC = (4 * 0.875 + 3 * 0.5) / 7 = 5 / 7 (an unweighted mean would be 0.6875).
    groups = np.array(["b", "a", "c", "a", "b", "a", "c", "a", "b"])
    y = np.array([1, 0, 1, 0, 0, 1, 1, 1, 0])
    p = np.array([0.2, 0.1, 0.9, 0.4, 0.3, 0.4, 0.5, 0.8, 0.1])
    assert gauc(y, p, groups) == pytest.approx(5 / 7)


def test_gauc_nan_when_no_group_qualifies() -> None:
    assert math.isnan(gauc(np.array([1, 0]), np.array([0.5, 0.5]), np.array([1, 2])))
    assert math.isnan(gauc(np.array([]), np.array([]), np.array([])))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 4)), min_size=1, max_size=30))
def test_gauc_single_group_equals_auc(rows: list[tuple[int, int]]) -> None:
    y = np.array([r[0] for r in rows])
    p = np.array([r[1] / 4 for r in rows])  # few distinct values, so ties are common
    expected = auc(y, p)
    got = gauc(y, p, np.zeros(len(rows), dtype=int))
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected)
        assert got == pytest.approx(roc_auc_score(y, p))


def test_logloss_three_points() -> None:
    # -(ln 0.8 + ln(1 - 0.4) + ln 0.5) / 3 = -ln(0.8 * 0.6 * 0.5) / 3 = -ln(0.24) / 3 ≈ 0.475706
    y = np.array([1, 0, 1])
    p = np.array([0.8, 0.4, 0.5])
    assert logloss(y, p) == pytest.approx(-math.log(0.24) / 3)


def test_logloss_clips_certain_mistakes() -> None:
    # p = 0 for a positive is clipped to 1e-7: loss = -ln(1e-7) = 7 ln 10.
    assert logloss(np.array([1]), np.array([0.0])) == pytest.approx(7 * math.log(10), rel=1e-6)


def test_rmse_and_mae() -> None:
    # errors 1, 0, 2: MSE = 5/3 -> RMSE = sqrt(5/3); MAE = 3/3 = 1.
    y = np.array([1.0, 2.0, 3.0])
    yhat = np.array([2.0, 2.0, 5.0])
    assert rmse(y, yhat) == pytest.approx(math.sqrt(5 / 3))
    assert mae(y, yhat) == pytest.approx(1.0)


def test_accuracy_and_macro_f1() -> None:
    # argmax predictions [0, 1, 1, 1, 0] vs labels [0, 0, 1, 1, 2]; 3 of 5 right -> 0.6.
    # class 0: TP 1, FP 1, FN 1 -> F1 0.5;  class 1: TP 2, FP 1, FN 0 -> P 2/3, R 1, F1 0.8;
    # class 2: TP 0 -> 0;  class 3 never seen -> 0 (zero_division=0).
    # macro F1 over 4 classes = (0.5 + 0.8 + 0 + 0) / 4 = 0.325.
    y = np.array([0, 0, 1, 1, 2])
    proba = np.eye(4)[[0, 1, 1, 1, 0]] * 0.7 + 0.075
    assert accuracy(y, proba) == pytest.approx(0.6)
    assert macro_f1(y, proba, 4) == pytest.approx(0.325)


def test_task_metrics_dispatch() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.4, 0.8])
    out = task_metrics("binary", y, p, groups=np.zeros(4))
    assert set(out) == {"auc", "gauc", "logloss"}
    assert out["auc"] == pytest.approx(0.875)
    assert out["gauc"] == pytest.approx(0.875)
    assert set(task_metrics("binary", y, p, None)) == {"auc", "logloss"}
    reg = task_metrics("regression", np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 5.0]), None)
    assert reg == pytest.approx({"rmse": math.sqrt(5 / 3), "mae": 1.0})
    multi = task_metrics("multiclass", np.array([0, 1]), np.array([[0.9, 0.1], [0.8, 0.2]]), None)
    # predictions [0, 0]: accuracy 1/2; F1 class 0 = 2/3 (P 1/2, R 1), class 1 = 0 -> 1/3.
    assert multi == pytest.approx({"accuracy": 0.5, "macro_f1": 1 / 3})


def test_task_metrics_empty_and_unknown() -> None:
    assert task_metrics("binary", np.array([]), np.array([]), None) == {}
    with pytest.raises(ValueError, match="ordinal"):
        task_metrics("ordinal", np.array([1]), np.array([1.0]), None)


def test_higher_is_better() -> None:
    assert HIGHER_IS_BETTER["auc"] and not HIGHER_IS_BETTER["logloss"]
    assert is_higher_better("ctr/gauc")
    assert not is_higher_better("rating/rmse")
    assert is_higher_better("ndcg@10")
    assert is_higher_better("click/recall@50")
    with pytest.raises(ValueError, match="bogus"):
        is_higher_better("bogus")


# Users: u0 hits at ranks 1 and 3, 2 relevant; u1 no hits, 1 relevant;
# u2 nothing relevant (excluded everywhere); u3 hit at rank 2, 4 relevant.
HITS = np.array(
    [
        [True, False, True],
        [False, False, False],
        [False, False, False],
        [False, True, False],
    ]
)
NUM_RELEVANT = np.array([2, 1, 0, 4])


def test_hit_rate() -> None:
    # @1: only u0 -> 1/3.  @2 and @3: u0 and u3 -> 2/3.
    assert hit_rate_at_k(HITS, 1, NUM_RELEVANT) == pytest.approx(1 / 3)
    assert hit_rate_at_k(HITS, 2, NUM_RELEVANT) == pytest.approx(2 / 3)
    assert hit_rate_at_k(HITS, 3, NUM_RELEVANT) == pytest.approx(2 / 3)
    # Without num_relevant every row counts: 2 of 4 users hit.
    assert hit_rate_at_k(HITS, 3) == pytest.approx(0.5)


def test_ndcg() -> None:
    # u0: DCG = 1/log2(2) + 1/log2(4) = 1.5; IDCG over min(2, 3) = 2: 1 + 1/log2(3).
    # u1: 0.  u3: DCG = 1/log2(3); IDCG over min(4, 3) = 3: 1 + 1/log2(3) + 1/log2(4).
    u0 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    u3 = (1 / math.log2(3)) / (1 + 1 / math.log2(3) + 0.5)
    assert ndcg_at_k(HITS, NUM_RELEVANT, 3) == pytest.approx((u0 + 0 + u3) / 3)
    # @1: u0 has its hit at rank 1 and IDCG = 1 -> 1; others 0.
    assert ndcg_at_k(HITS, NUM_RELEVANT, 1) == pytest.approx(1 / 3)
    assert ndcg_at_k(HITS[:1], NUM_RELEVANT[:1], 3) == pytest.approx(u0)


def test_recall() -> None:
    # @3: u0 2/2, u1 0/1, u3 1/4 -> (1 + 0 + 0.25) / 3 = 5/12.   @1: u0 1/2 -> 1/6.
    assert recall_at_k(HITS, NUM_RELEVANT, 3) == pytest.approx(5 / 12)
    assert recall_at_k(HITS, NUM_RELEVANT, 1) == pytest.approx(1 / 6)


def test_ranking_metrics_keys_and_errors() -> None:
    out = ranking_metrics(HITS, NUM_RELEVANT, ks=[1, 3])
    assert set(out) == {f"{m}@{k}" for m in ("hit_rate", "ndcg", "recall") for k in (1, 3)}
    assert out["recall@3"] == pytest.approx(5 / 12)
    with pytest.raises(ValueError, match="k=4"):
        ndcg_at_k(HITS, NUM_RELEVANT, 4)
    assert math.isnan(recall_at_k(HITS[2:3], NUM_RELEVANT[2:3], 3))


def test_hits_from_ranked_lists_and_sparse() -> None:
    ranked = np.array([[5, 2, 7], [1, 3, -1], [0, 4, 6]])
    relevant = [np.array([7, 5, 5]), np.array([9]), np.array([], dtype=np.int64)]
    hits, n_rel = hits_from_ranked(ranked, relevant)
    expected = np.array([[True, False, True], [False, False, False], [False, False, False]])
    np.testing.assert_array_equal(hits, expected)
    np.testing.assert_array_equal(n_rel, [2, 1, 0])  # the duplicate 5 counts once

    matrix = sp.csr_matrix(([1, 1, 1], ([0, 0, 1], [7, 5, 9])), shape=(3, 10))
    hits_sp, n_rel_sp = hits_from_ranked(ranked, matrix)
    np.testing.assert_array_equal(hits_sp, expected)
    np.testing.assert_array_equal(n_rel_sp, [2, 1, 0])
