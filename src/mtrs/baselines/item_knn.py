"""Item-based k-nearest-neighbour recommender with (shrunk) cosine similarity."""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from mtrs.baselines.base import Baseline, as_csr

__all__ = ["ItemKNN", "cosine_similarity", "keep_top_neighbours"]

# Similarity columns sorted at once when truncating: bounds the sort's memory to N × this.
_BLOCK = 1024


def cosine_similarity(matrix: sp.csr_matrix, shrink: float = 0.0) -> np.ndarray:
    """Cosine similarity between the item columns, with a shrinkage term.

    ``s_ij = x_iᵀ x_j / (‖x_i‖ ‖x_j‖ + shrink)``: the shrinkage pulls similarities resting on few
    co-occurrences towards 0. Items without interactions have similarity 0 to every item; the
    diagonal is 0 so an item is never its own neighbour.

    Args:
        matrix: User × item interactions.
        shrink: Non-negative shrinkage added to the denominator.

    Returns:
        Dense float64 similarities.

    Shape:
        matrix: [U, N]; output: [N, N].
    """
    x = sp.csc_matrix(matrix, dtype=np.float64)
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
    denom = np.outer(norms, norms) + shrink
    dots = (x.T @ x).toarray()
    sim = np.divide(dots, denom, out=np.zeros_like(dots), where=denom > 0)
    np.fill_diagonal(sim, 0.0)
    return sim


def keep_top_neighbours(sim: np.ndarray, neighbours: int) -> sp.csc_matrix:
    """Sparse copy of a similarity matrix keeping each column's ``neighbours`` largest entries.

    Column j then holds the neighbourhood of target item j, the items whose interactions vote
    for it. Ties are broken by the lower row index; entries ≤ 0 are never kept, so a column
    may hold fewer than ``neighbours`` entries.

    Args:
        sim: Item-item similarities.
        neighbours: Neighbours kept per column, at least 1.

    Returns:
        The truncated similarities as CSC with sorted indices.

    Shape:
        sim: [N, N]; output: [N, N].
    """
    if neighbours < 1:
        raise ValueError(f"neighbours must be at least 1, got {neighbours}.")
    n = sim.shape[0]
    k = min(neighbours, n)
    rows_out, cols_out, vals_out = [], [], []
    for start in range(0, sim.shape[1], _BLOCK):
        block = sim[:, start : start + _BLOCK]
        # A stable sort of the negated block ranks ties by lower row index, deterministically.
        top = np.argsort(-block, axis=0, kind="stable")[:k]
        vals = np.take_along_axis(block, top, axis=0)
        cols = np.broadcast_to(np.arange(start, start + block.shape[1]), top.shape)
        keep = vals > 0
        rows_out.append(top[keep])
        cols_out.append(cols[keep])
        vals_out.append(vals[keep])
    out = sp.csc_matrix(
        (np.concatenate(vals_out), (np.concatenate(rows_out), np.concatenate(cols_out))),
        shape=sim.shape,
    )
    out.sort_indices()
    return out


class ItemKNN(Baseline):
    """Item-based collaborative filtering: a user's items vote for their nearest neighbours.

    Sarwar, Karypis, Konstan & Riedl, "Item-Based Collaborative Filtering Recommendation
    Algorithms", WWW 2001; top-k model as in Deshpande & Karypis, "Item-Based Top-N
    Recommendation Algorithms", ACM TOIS 22(1), 2004. Similarities are the cosine between item
    columns (shrunk, see :func:`cosine_similarity`); each target item keeps its ``neighbours``
    most similar items; ``scores = R · S``, i.e. score(u, j) sums the similarities between j
    and the items of u that are among j's neighbours. The full similarity is formed densely
    before truncation (N × N floats), which suits catalogues up to a few tens of thousands.

    Args:
        neighbours: Neighbourhood size k per item.
        shrink: Shrinkage added to the cosine's denominator (0 = plain cosine).

    Attributes:
        similarity: The truncated item-item similarity S [N, N] (sparse), after ``fit``.
    """

    def __init__(self, neighbours: int = 200, shrink: float = 0.0) -> None:
        if neighbours < 1:
            raise ValueError(f"neighbours must be at least 1, got {neighbours}.")
        if shrink < 0:
            raise ValueError(f"shrink must be non-negative, got {shrink}.")
        self.neighbours = int(neighbours)
        self.shrink = float(shrink)
        self.similarity: sp.csc_matrix | None = None

    def params(self) -> dict[str, Any]:
        """The hyper-parameters: ``neighbours`` and ``shrink``."""
        return {"neighbours": self.neighbours, "shrink": self.shrink}

    def fit(self, matrix: Any) -> Self:
        """Compute and truncate the item-item similarities.

        Args:
            matrix: User × item interactions (binary or weighted).

        Returns:
            The fitted model.

        Shape:
            matrix: [U, N].
        """
        self._matrix = as_csr(matrix)
        sim = cosine_similarity(self._matrix, self.shrink)
        self.similarity = keep_top_neighbours(sim, self.neighbours)
        return self

    def scores(self, user_rows: np.ndarray) -> np.ndarray:
        """Neighbourhood scores ``R[rows] · S`` (see :meth:`Baseline.scores`)."""
        rows = self._rows(user_rows)
        assert self.similarity is not None  # set together with the matrix by fit
        r = self.matrix[rows].astype(np.float64)
        return np.asarray((r @ self.similarity).toarray(), dtype=np.float64)
