"""Tests for mtrs.recommend.merge: fusion strategies, ranks and top-K selection."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtrs.recommend.merge import (
    MERGERS,
    ScoreFusion,
    merge,
    ranks,
    reciprocal_rank_fusion,
    top_k,
    weighted_product,
    weighted_sum,
)

# Three candidates, two tasks.
PROBS = {"click": np.array([0.5, 0.2, 0.9]), "buy": np.array([0.1, 0.5, 0.2])}
WEIGHTS = {"click": 1.0, "buy": 2.0}


def test_weighted_sum() -> None:
    # [0.5 + 2*0.1, 0.2 + 2*0.5, 0.9 + 2*0.2] = [0.7, 1.2, 1.3] -> order [2, 1, 0].
    out = weighted_sum(PROBS, WEIGHTS)
    np.testing.assert_allclose(out, [0.7, 1.2, 1.3])
    np.testing.assert_array_equal(top_k(out, 3), [2, 1, 0])


def test_weighted_product() -> None:
    # p(click) * p(buy)^2 = [0.5*0.01, 0.2*0.25, 0.9*0.04] = [0.005, 0.05, 0.036] -> [1, 2, 0].
    out = weighted_product(PROBS, WEIGHTS)
    np.testing.assert_allclose(out, [0.005, 0.05, 0.036])
    np.testing.assert_array_equal(top_k(out, 3), [1, 2, 0])


def test_weighted_product_clips_zero() -> None:
    # p = 0 is clipped to 1e-12 so the candidate stays comparable rather than exactly zero.
    out = weighted_product({"a": np.array([0.0, 0.5])}, {"a": 1.0})
    np.testing.assert_allclose(out, [1e-12, 0.5])


def test_rrf() -> None:
    # click ranks [2, 3, 1], buy ranks [3, 1, 2]; k = 60.
    # equal weights: [1/62 + 1/63, 1/63 + 1/61, 1/61 + 1/62] -> order [2, 1, 0].
    out = reciprocal_rank_fusion(PROBS, {})
    np.testing.assert_allclose(out, [1 / 62 + 1 / 63, 1 / 63 + 1 / 61, 1 / 61 + 1 / 62])
    np.testing.assert_array_equal(top_k(out, 3), [2, 1, 0])
    # buy weighted 2: [1/62 + 2/63, 1/63 + 2/61, 1/61 + 2/62] ≈ [0.04788, 0.04866, 0.04865]
    # -> order [1, 2, 0].
    out = reciprocal_rank_fusion(PROBS, WEIGHTS)
    np.testing.assert_allclose(out, [1 / 62 + 2 / 63, 1 / 63 + 2 / 61, 1 / 61 + 2 / 62])
    np.testing.assert_array_equal(top_k(out, 3), [1, 2, 0])
    # k = 0: [1/2 + 2/3, 1/3 + 2/1, 1/1 + 2/2] = [7/6, 7/3, 2].
    np.testing.assert_allclose(reciprocal_rank_fusion(PROBS, WEIGHTS, k=0.0), [7 / 6, 7 / 3, 2.0])


def test_rrf_batched_over_users() -> None:
    scores = {"a": np.array([[0.1, 0.9], [0.8, 0.3]])}
    # rows rank independently: row 0 ranks [2, 1], row 1 ranks [1, 2].
    np.testing.assert_allclose(reciprocal_rank_fusion(scores, {}, k=0.0), [[0.5, 1.0], [1.0, 0.5]])


def test_score_fusion_reuses_ranks_and_logs_exactly() -> None:
    # Ranks of click [0.5, 0.2, 0.9] are [2, 3, 1], of buy [0.1, 0.5, 0.2] are [3, 1, 2]:
    # RRF with k = 1 and weights 1, 2 is [1/3 + 2/4, 1/4 + 2/2, 1/2 + 2/3].
    fusion = ScoreFusion(PROBS)
    np.testing.assert_allclose(fusion.rrf(WEIGHTS, 1.0), [1 / 3 + 0.5, 0.25 + 1.0, 0.5 + 2 / 3])
    rng = np.random.default_rng(0)
    scores = {t: rng.random((4, 9)) for t in ("a", "b", "c")}
    scores["a"][0, 3] = np.nan
    fusion = ScoreFusion(scores)
    for weights in ({"a": 1.0}, {"a": 1.0, "b": 0.25}, {"a": 0.5, "b": 4.0, "c": 1.0}):
        for strategy in MERGERS:
            # The same operations as the one-shot functions: bit-for-bit equal, cache or not.
            np.testing.assert_array_equal(
                fusion.merge(strategy, weights, 5.0), merge(strategy, scores, weights, 5.0)
            )
    assert set(fusion._ranks) == {"a", "b", "c"} and set(fusion._logs) == {"a", "b", "c"}
    with pytest.raises(ValueError, match="Unknown merge strategy"):
        fusion.merge("max", {"a": 1.0})


def test_merge_registry_and_weights() -> None:
    assert set(MERGERS) == {"weighted_sum", "weighted_product", "rrf"}
    np.testing.assert_allclose(merge("weighted_sum", PROBS, WEIGHTS), [0.7, 1.2, 1.3])
    np.testing.assert_allclose(merge("weighted_product", PROBS, WEIGHTS), [0.005, 0.05, 0.036])
    np.testing.assert_allclose(merge("rrf", PROBS, WEIGHTS, rrf_k=0.0), [7 / 6, 7 / 3, 2.0])
    # Weight 0 or absent switches a task off; an empty mapping weighs every task 1.
    np.testing.assert_allclose(
        merge("weighted_sum", PROBS, {"click": 1.0, "buy": 0.0}), [0.5, 0.2, 0.9]
    )
    np.testing.assert_allclose(merge("weighted_sum", PROBS, {"buy": 1.0}), [0.1, 0.5, 0.2])
    np.testing.assert_allclose(merge("weighted_sum", PROBS, {}), [0.6, 0.7, 1.1])


def test_merge_errors() -> None:
    with pytest.raises(ValueError, match=r"'max'.*weighted_sum, weighted_product, rrf"):
        merge("max", PROBS, WEIGHTS)
    with pytest.raises(ValueError, match="'like'"):
        weighted_sum(PROBS, {"like": 1.0})
    with pytest.raises(ValueError, match="weight 0"):
        weighted_sum(PROBS, {"click": 0.0})
    with pytest.raises(ValueError, match="shape"):
        weighted_sum({"a": np.zeros(2), "b": np.zeros(3)}, {})


SCORES = np.array([0.3, 0.9, 0.3, 0.9, 0.1, 0.3])


def test_top_k_ties_and_exclusion() -> None:
    # Ties at 0.9 (indices 1, 3) and 0.3 (0, 2, 5) go to the lower index first.
    np.testing.assert_array_equal(top_k(SCORES, 3), [1, 3, 0])
    np.testing.assert_array_equal(top_k(SCORES, 4), [1, 3, 0, 2])
    exclude = np.array([False, True, False, False, False, False])
    np.testing.assert_array_equal(top_k(SCORES, 3, exclude), [3, 0, 2])
    # k beyond what is available returns every non-excluded index.
    np.testing.assert_array_equal(top_k(SCORES, 10, exclude), [3, 0, 2, 5, 4])
    assert top_k(SCORES, 0).size == 0
    assert top_k(SCORES, 2, np.ones(6, dtype=bool)).size == 0


def test_top_k_nan_last_and_bad_shape() -> None:
    np.testing.assert_array_equal(top_k(np.array([np.nan, 0.1, 0.5]), 3), [2, 1, 0])
    with pytest.raises(ValueError, match="1-D"):
        top_k(np.zeros((2, 2)), 1)


def test_ranks() -> None:
    # Order by score then index: 1 (0.9), 3 (0.9), 0, 2, 5 (0.3), 4 (0.1).
    np.testing.assert_array_equal(ranks(SCORES), [3, 1, 4, 2, 6, 5])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-5, 5), min_size=0, max_size=40), st.integers(0, 45))
def test_top_k_matches_stable_sort(values: list[int], k: int) -> None:
    scores = np.array(values, dtype=np.float64)
    expected = np.argsort(-scores, kind="stable")[:k]
    np.testing.assert_array_equal(top_k(scores, k), expected)
    if scores.size:
        np.testing.assert_array_equal(np.argsort(ranks(scores)), np.argsort(-scores, kind="stable"))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=30))
def test_weighted_product_single_task_preserves_order(values: list[float]) -> None:
    p = np.array(values)
    out = weighted_product({"a": p, "b": np.full_like(p, 0.3)}, {"a": 1.0})
    order = np.argsort(p, kind="stable")
    # Non-decreasing along p's order: clipping may merge values below 1e-12, never reorder.
    assert np.all(np.diff(out[order]) >= 0)
    np.testing.assert_allclose(out, np.clip(p, 1e-12, 1.0), rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-20, 20), st.integers(-20, 20)), min_size=1, max_size=30),
    st.floats(0.5, 3.0),
)
def test_rrf_invariant_to_monotone_transforms(pairs: list[tuple[int, int]], w: float) -> None:
    a = np.array([x for x, _ in pairs], dtype=np.float64)
    b = np.array([y for _, y in pairs], dtype=np.float64)
    weights = {"a": 1.0, "b": w}
    base = reciprocal_rank_fusion({"a": a, "b": b}, weights)
    # Strictly increasing maps (exact on these small integers) keep every rank and tie.
    moved = reciprocal_rank_fusion({"a": a**3 + 7.0, "b": np.exp(b / 10.0)}, weights)
    np.testing.assert_array_equal(base, moved)
