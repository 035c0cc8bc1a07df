"""Tests for EASE against hand-computed and independently derived weights."""

from __future__ import annotations

import numpy as np
import pytest

from mtrs.baselines.ease import EASE, ease_weights


def test_two_items_by_hand() -> None:
    # X = [[1,1],[1,0],[0,1]]: XᵀX = [[2,1],[1,2]]; with λ = 1, G = [[3,1],[1,3]].
    # B_01 = -P_01 / P_11 = (1/8) / (3/8) = 1/3, and by symmetry B_10 = 1/3.
    x = np.array([[1, 1], [1, 0], [0, 1]], dtype=float)
    b = ease_weights(x, 1.0)
    np.testing.assert_allclose(b, [[0.0, 1 / 3], [1 / 3, 0.0]], atol=1e-12)
    model = EASE(l2=1.0).fit(x)
    # User 1 has item 0 only: its scores are row 0 of B.
    np.testing.assert_allclose(model.scores(np.array([1])), [[0.0, 1 / 3]], atol=1e-12)


def test_matches_per_column_constrained_ridge() -> None:
    # diag(B) = 0 means column j regresses item j on the other items only: a ridge regression
    # b_{-j} = (X_{-j}ᵀ X_{-j} + λI)⁻¹ X_{-j}ᵀ x_j, computed here without any matrix inverse
    # of the full Gram matrix.
    x = np.array([[1, 1, 0], [0, 1, 1], [1, 1, 1]], dtype=float)
    lam = 0.5
    expected = np.zeros((3, 3))
    for j in range(3):
        others = [i for i in range(3) if i != j]
        xo = x[:, others]
        expected[others, j] = np.linalg.solve(xo.T @ xo + lam * np.eye(2), xo.T @ x[:, j])
    b = ease_weights(x, lam)
    np.testing.assert_allclose(b, expected, atol=1e-10)
    np.testing.assert_array_equal(np.diag(b), 0.0)
    np.testing.assert_allclose(EASE(lam).fit(x).scores(np.arange(3)), x @ expected, atol=1e-10)


def test_larger_l2_shrinks_weights() -> None:
    x = np.array([[1, 1, 0], [0, 1, 1], [1, 1, 1]], dtype=float)
    assert np.abs(ease_weights(x, 100.0)).sum() < np.abs(ease_weights(x, 1.0)).sum()


def test_rejects_non_positive_l2_and_unfitted_scores() -> None:
    with pytest.raises(ValueError):
        EASE(l2=0.0)
    with pytest.raises(RuntimeError):
        EASE().scores(np.array([0]))
