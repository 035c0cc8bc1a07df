"""Tests for grid search on a validation period and the ranking helper."""

from __future__ import annotations

import math
from typing import Any, Self

import numpy as np
import pytest

from mtrs.baselines.base import Baseline, as_csr
from mtrs.baselines.registry import DEFAULT_GRIDS, grid_points, make_baseline
from mtrs.baselines.select import select
from mtrs.errors import MtrsUserError
from mtrs.eval.ranking import rank_metrics


class Favourite(Baseline):
    """Scores one fixed item highest for everyone, the others by descending index."""

    def __init__(self, item: int) -> None:
        self.item = item

    def fit(self, matrix: Any) -> Self:
        self._matrix = as_csr(matrix)
        return self

    def scores(self, user_rows: np.ndarray) -> np.ndarray:
        s = np.tile(np.arange(self.n_items, 0, -1, dtype=float), (len(user_rows), 1)) / 10
        s[:, self.item] = 10.0
        return s


def test_rank_metrics_by_hand() -> None:
    scores = np.array([[0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.4]])
    exclude = np.array([[True, False, False, False], [False, False, False, False]])
    relevant = [np.array([2]), np.array([0, 3])]
    m = rank_metrics(scores, exclude, relevant, ks=(1, 2))
    # User 0 ranks 1, 2, 3 (0 excluded): its hit is at rank 2. User 1 ranks 3, 2, 1, 0.
    assert m["hit_rate@1"] == pytest.approx(0.5)
    assert m["ndcg@2"] == pytest.approx((1 / math.log2(3) + 1 / (1 + 1 / math.log2(3))) / 2)
    assert m["recall@2"] == pytest.approx((1 + 0.5) / 2)


def test_select_picks_the_item_that_is_relevant() -> None:
    matrix = np.array([[1, 0, 0, 0], [0, 1, 0, 0]], dtype=float)
    exclude = matrix.astype(bool)
    relevant = [np.array([2]), np.array([2])]
    sel = select(Favourite, matrix, np.arange(2), exclude, relevant, ks=(1,),
                 metric="hit_rate@1", grid={"item": [0, 1, 2, 3]})  # fmt: skip
    assert sel.best == {"item": 2}
    assert [r.metrics["hit_rate@1"] for r in sel.table] == [0.0, 0.0, 1.0, 0.0]
    assert sel.best_metrics["hit_rate@1"] == 1.0


def test_select_neighbourhood_size_known_by_construction() -> None:
    # Items A=0, B=1, D=2, C=3. Norms: A 2, B √2, D √2, C √3.
    # cos(A,B) = 2/(2√2) ≈ 0.707, cos(A,C) = 1/(2√3) ≈ 0.289, cos(C,D) = 2/√6 ≈ 0.816.
    # User 5 holds A only and C is relevant. With 1 neighbour, C keeps only D, so C scores 0
    # and ranks third (B, D, C); with 2 it keeps A too and ranks second (B, C, D).
    rows = [[1, 1, 0, 0], [1, 1, 0, 0], [1, 0, 0, 1], [0, 0, 1, 1], [0, 0, 1, 1], [1, 0, 0, 0]]
    matrix = np.array(rows, dtype=float)
    exclude = matrix[[5]].astype(bool)
    sel = select("item_knn", matrix, np.array([5]), exclude, [np.array([3])], ks=(2,),
                 metric="ndcg@2", grid={"neighbours": [1, 2], "shrink": [0.0]})  # fmt: skip
    assert sel.best == {"neighbours": 2, "shrink": 0.0}
    ndcg = [r.metrics["ndcg@2"] for r in sel.table]
    assert ndcg == pytest.approx([0.0, 1 / math.log2(3)])


def test_tie_keeps_the_first_grid_point() -> None:
    matrix = np.eye(3)
    sel = select(Favourite, matrix, np.arange(3), matrix.astype(bool), [np.array([1])] * 3,
                 ks=(3,), metric="recall@3", grid={"item": [0, 2]})  # fmt: skip
    assert sel.best == {"item": 0}


def test_select_errors() -> None:
    matrix = np.eye(3)
    args = (matrix, np.arange(3), matrix.astype(bool), [np.array([1])] * 3)
    with pytest.raises(ValueError, match="not computed"):
        select("ease", *args, ks=(10,), metric="ndcg@20")
    with pytest.raises(ValueError, match="default grid"):
        select(Favourite, *args, ks=(2,), metric="ndcg@2")
    with pytest.raises(MtrsUserError):
        make_baseline("svd")


def test_grid_points_and_default_grids_build() -> None:
    assert grid_points({"a": [1, 2], "b": ["x"]}) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
    for name, grid in DEFAULT_GRIDS.items():
        for params in grid_points(grid):
            make_baseline(name, **params)  # every default point is a valid constructor call
