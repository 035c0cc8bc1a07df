"""Tests for implicit ALS: exact solves, ranking quality on low-rank data, determinism, loss."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mtrs.baselines.als import ALS, als_loss, solve_side
from mtrs.eval.metrics import gauc


def block_data(seed: int = 0) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Rank-4 implicit data: 4 user clusters, each almost only using its own 4th of 80 items.

    Returns the training matrix and the held-out positives (a quarter of each user's items).
    """
    rng = np.random.default_rng(seed)
    n_users, n_items, k = 120, 80, 4
    uc = np.arange(n_users) % k
    ic = np.arange(n_items) % k
    prob = np.where(uc[:, None] == ic[None, :], 0.6, 0.01)
    full = rng.random((n_users, n_items)) < prob
    held = full & (rng.random((n_users, n_items)) < 0.25)
    return sp.csr_matrix((full & ~held).astype(float)), sp.csr_matrix(held.astype(float))


def heldout_auc(train: sp.csr_matrix, held: sp.csr_matrix, scores: np.ndarray) -> float:
    """Per-user AUC of held-out positives against never-used items, weighted by candidates."""
    cand = train.toarray() == 0
    users = np.broadcast_to(np.arange(scores.shape[0])[:, None], scores.shape)
    return gauc(held.toarray()[cand], scores[cand], users[cand])


def test_solve_side_matches_dense_normal_equations() -> None:
    rng = np.random.default_rng(1)
    r = sp.csr_matrix(np.array([[2.0, 0, 1], [0, 0, 0], [1, 3, 0]]))
    y = rng.normal(size=(3, 2))
    reg, alpha = 0.3, 2.0
    x = solve_side(r, y, reg, alpha)
    for u in range(3):
        row = r.toarray()[u]
        c = np.diag(1 + alpha * row)  # full confidence matrix C_u, zeros included
        p = (row > 0).astype(float)
        expected = np.linalg.solve(y.T @ c @ y + reg * np.eye(2), y.T @ c @ p)
        np.testing.assert_allclose(x[u], expected, atol=1e-12)
    np.testing.assert_array_equal(x[1], 0.0)  # no interactions → zero factors


def test_loss_matches_dense_objective() -> None:
    rng = np.random.default_rng(2)
    r = sp.csr_matrix(np.array([[2.0, 0, 1], [0, 0, 0], [1, 3, 0]]))
    xu, yi = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    dense = r.toarray()
    c, p = 1 + 0.5 * dense, (dense > 0).astype(float)
    expected = np.sum(c * (p - xu @ yi.T) ** 2) + 0.1 * (np.sum(xu**2) + np.sum(yi**2))
    assert als_loss(r, xu, yi, 0.1, 0.5) == pytest.approx(expected, rel=1e-12)


def test_ranks_heldout_positives_above_negatives() -> None:
    train, held = block_data()
    model = ALS(factors=8, reg=1.0, alpha=5.0, iterations=10, seed=0).fit(train)
    auc = heldout_auc(train, held, model.scores(np.arange(train.shape[0])))
    random_auc = heldout_auc(train, held, np.random.default_rng(3).random(train.shape))
    assert auc > 0.85
    assert abs(random_auc - 0.5) < 0.05


def test_same_seed_same_model_other_seed_differs() -> None:
    train, _ = block_data()
    a = ALS(factors=4, iterations=3, seed=7).fit(train)
    b = ALS(factors=4, iterations=3, seed=7).fit(train)
    c = ALS(factors=4, iterations=3, seed=8).fit(train)
    rows = np.arange(10)
    np.testing.assert_array_equal(a.scores(rows), b.scores(rows))
    assert not np.allclose(a.scores(rows), c.scores(rows))


def test_loss_decreases_every_iteration() -> None:
    train, _ = block_data()
    model = ALS(factors=6, reg=0.5, alpha=3.0, iterations=6, seed=0).fit(train)
    losses = np.array(model.losses)
    assert len(losses) == 7  # after initialisation, then after each iteration
    assert np.all(np.diff(losses) <= 1e-9 * losses[:-1])
    assert losses[-1] < 0.7 * losses[0]


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        ALS(reg=0.0)
    with pytest.raises(ValueError):
        ALS(factors=0)
