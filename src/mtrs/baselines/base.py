"""The interface every non-neural ranking baseline implements: fit on a matrix, score users."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Self

import numpy as np
import scipy.sparse as sp

__all__ = ["Baseline", "as_csr"]


def as_csr(matrix: Any) -> sp.csr_matrix:
    """The training matrix as canonical float32 CSR (dense arrays and other formats accepted).

    Args:
        matrix: A user × item matrix, sparse or dense; nonzero entries are interactions.

    Returns:
        A float32 CSR copy with sorted indices and no stored zeros.

    Raises:
        ValueError: If the matrix is not 2-D or holds a negative or non-finite value.

    Shape:
        matrix: [U, N]; output: [U, N].
    """
    mat = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    if mat.ndim != 2:
        raise ValueError(f"Expected a 2-D user × item matrix, got {mat.ndim} dimensions.")
    if mat.nnz and (not np.isfinite(mat.data).all() or mat.data.min() < 0):
        raise ValueError("Interaction values must be finite and non-negative.")
    mat.sum_duplicates()
    mat.eliminate_zeros()
    mat.sort_indices()
    return mat


class Baseline(ABC):
    """A ranking model fitted on a user × item implicit-feedback matrix.

    ``fit`` learns from the matrix and keeps it, so that ``scores`` can look up the history of
    the users it is asked about; users are rows of that matrix, items its columns. Scores are
    not masked: excluding already seen items is the ranking step's job.
    """

    _matrix: sp.csr_matrix | None = None

    @abstractmethod
    def fit(self, matrix: Any) -> Self:
        """Learn the model from a user × item matrix.

        Args:
            matrix: Interactions, sparse or dense; nonzero entries are observed pairs, their
                value is the interaction's strength (1 for binary feedback).

        Returns:
            The fitted model itself.

        Shape:
            matrix: [U, N].
        """

    @abstractmethod
    def scores(self, user_rows: np.ndarray) -> np.ndarray:
        """Score every item for some users of the training matrix.

        Args:
            user_rows: Row indices of the users, in ``[0, U)``.

        Returns:
            Dense float64 scores, higher is better.

        Shape:
            user_rows: [B]; output: [B, N].
        """

    @property
    def matrix(self) -> sp.csr_matrix:
        """The training matrix given to :meth:`fit`."""
        if self._matrix is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(matrix) first.")
        return self._matrix

    @property
    def n_items(self) -> int:
        """Number of items N (columns of the training matrix)."""
        return int(self.matrix.shape[1])

    def _rows(self, user_rows: np.ndarray) -> np.ndarray:
        """Validated int64 user rows of the training matrix."""
        rows = np.asarray(user_rows, dtype=np.int64).ravel()
        n_users = self.matrix.shape[0]
        if rows.size and (rows.min() < 0 or rows.max() >= n_users):
            raise ValueError(f"User rows must lie in [0, {n_users}).")
        return rows

    def params(self) -> dict[str, Any]:
        """The model's hyper-parameters, as given to its constructor."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"
