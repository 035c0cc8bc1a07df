"""Tests for the implicit-feedback matrix builder."""

from __future__ import annotations

import numpy as np
import pytest

from mtrs.baselines.matrix import interaction_matrix


def test_binary_collapses_duplicates_and_keeps_shape() -> None:
    # (0, 1) appears twice, user 2 and item 3 have no interaction.
    m = interaction_matrix(np.array([0, 0, 1, 0]), np.array([1, 1, 2, 0]), 3, 4)
    assert m.shape == (3, 4)
    assert m.dtype == np.float32
    expected = np.array([[1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]], dtype=np.float32)
    np.testing.assert_array_equal(m.toarray(), expected)
    assert m.nnz == 3  # the duplicate is one stored entry


def test_weighted_sums_duplicates() -> None:
    m = interaction_matrix(
        np.array([0, 0, 1]), np.array([1, 1, 0]), 2, 2, weights=np.array([2.0, 3.0, 4.0]),
        binary=False,
    )  # fmt: skip
    np.testing.assert_array_equal(m.toarray(), [[0.0, 5.0], [4.0, 0.0]])


def test_weighted_without_weights_counts_occurrences() -> None:
    m = interaction_matrix(np.array([0, 0, 0]), np.array([1, 1, 0]), 1, 2, binary=False)
    np.testing.assert_array_equal(m.toarray(), [[1.0, 2.0]])


def test_binary_ignores_weights() -> None:
    m = interaction_matrix(np.array([0, 0]), np.array([1, 1]), 1, 2, weights=np.array([3.0, 4.0]))
    np.testing.assert_array_equal(m.toarray(), [[0.0, 1.0]])


@pytest.mark.parametrize(
    ("users", "items"), [([0, 2], [0, 0]), ([0, -1], [0, 0]), ([0, 0], [0, 5]), ([0], [0, 1])]
)
def test_rejects_bad_indices(users: list[int], items: list[int]) -> None:
    with pytest.raises(ValueError):
        interaction_matrix(np.array(users), np.array(items), 2, 3)
