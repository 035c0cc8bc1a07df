"""Tests for item-kNN: cosine similarities, shrinkage and top-k truncation by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtrs.baselines.item_knn import ItemKNN, cosine_similarity

# Items' users: item 0 {0, 1}, item 1 {1, 2}, item 2 {0, 1, 3}.
X = np.array([[1, 0, 1], [1, 1, 1], [0, 1, 0], [0, 0, 1]], dtype=float)
# cos(0,1) = 1 / (√2 √2) = 0.5; cos(0,2) = 2 / (√2 √3); cos(1,2) = 1 / (√2 √3).
C01, C02, C12 = 0.5, 2 / math.sqrt(6), 1 / math.sqrt(6)


def test_cosine_by_hand() -> None:
    sim = cosine_similarity(X)
    expected = np.array([[0, C01, C02], [C01, 0, C12], [C02, C12, 0]])
    np.testing.assert_allclose(sim, expected, atol=1e-12)


def test_shrinkage_in_denominator() -> None:
    # cos(0,1) = 1 / (2 + 10); cos(0,2) = 2 / (√6 + 10).
    sim = cosine_similarity(X, shrink=10.0)
    assert sim[0, 1] == pytest.approx(1 / 12)
    assert sim[0, 2] == pytest.approx(2 / (math.sqrt(6) + 10))
    # Shrinkage hits the pair resting on one co-occurrence harder than the one with two.
    plain = cosine_similarity(X)
    assert sim[0, 1] / plain[0, 1] < sim[0, 2] / plain[0, 2]


def test_top_one_neighbour_per_item() -> None:
    s = ItemKNN(neighbours=1).fit(X).similarity
    assert s is not None
    # Column j keeps its single most similar item: 0 → 2, 1 → 0, 2 → 0.
    expected = np.zeros((3, 3))
    expected[2, 0], expected[0, 1], expected[0, 2] = C02, C01, C02
    np.testing.assert_allclose(s.toarray(), expected, atol=1e-7)
    assert s.nnz == 3


def test_scores_are_r_times_s() -> None:
    # User 3 holds item 2 only, so its scores are row 2 of S.
    one = ItemKNN(neighbours=1).fit(X).scores(np.array([3]))
    np.testing.assert_allclose(one, [[C02, 0.0, 0.0]], atol=1e-7)
    # With two neighbours item 1 also keeps item 2 as a neighbour.
    two = ItemKNN(neighbours=2).fit(X).scores(np.array([3]))
    np.testing.assert_allclose(two, [[C02, C12, 0.0]], atol=1e-7)
    # User 1 holds every item: scores are the column sums of S.
    full = ItemKNN(neighbours=2).fit(X).scores(np.array([1]))
    np.testing.assert_allclose(full, [[C01 + C02, C01 + C12, C02 + C12]], atol=1e-7)


def test_item_without_interactions_has_zero_similarity() -> None:
    x = np.hstack([X, np.zeros((4, 1))])
    sim = cosine_similarity(x)
    np.testing.assert_array_equal(sim[3], 0.0)
    np.testing.assert_array_equal(sim[:, 3], 0.0)


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        ItemKNN(neighbours=0)
    with pytest.raises(ValueError):
        ItemKNN(shrink=-1.0)
