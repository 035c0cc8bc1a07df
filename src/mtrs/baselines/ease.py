"""EASE: a closed-form linear item-item autoencoder with a zero diagonal."""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import scipy.linalg

from mtrs.baselines.base import Baseline, as_csr

__all__ = ["EASE", "ease_weights"]


def ease_weights(matrix: Any, l2: float) -> np.ndarray:
    """The EASE item-item weight matrix in closed form.

    With ``G = XᵀX + λI`` and ``P = G⁻¹``, the minimiser of ``‖X − XB‖² + λ‖B‖²`` subject to
    ``diag(B) = 0`` is ``B_ij = −P_ij / P_jj`` for i ≠ j (each column divided by its diagonal
    entry of P) and ``B_jj = 0``.

    Args:
        matrix: User × item interactions X (sparse or dense).
        l2: The L2 penalty λ, positive.

    Returns:
        B as float64.

    Shape:
        matrix: [U, N]; output: [N, N].
    """
    if l2 <= 0:
        raise ValueError(f"l2 must be positive, got {l2}.")
    x = as_csr(matrix).astype(np.float64)
    gram = np.asarray((x.T @ x).toarray(), dtype=np.float64)
    gram[np.diag_indices_from(gram)] += l2
    # G is symmetric positive definite (λ > 0), so a Cholesky solve is both cheaper and more
    # accurate than a general inverse.
    p = scipy.linalg.cho_solve(scipy.linalg.cho_factor(gram), np.eye(gram.shape[0]))
    b = p / -np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return np.asarray(b, dtype=np.float64)


class EASE(Baseline):
    """Embarrassingly Shallow Autoencoder: scores are ``X · B`` with a learned item-item B.

    Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019. B minimises the
    reconstruction error ``‖X − XB‖²_F + λ‖B‖²_F`` under ``diag(B) = 0`` (so an item cannot
    explain itself), which has the closed form of :func:`ease_weights`.

    Args:
        l2: The L2 penalty λ; larger values shrink B towards 0 (Steck uses a few hundred on
            MovieLens-20M, smaller data sets need less).

    Attributes:
        weights: The learned B [N, N], after ``fit``.
    """

    def __init__(self, l2: float = 200.0) -> None:
        if l2 <= 0:
            raise ValueError(f"l2 must be positive, got {l2}.")
        self.l2 = float(l2)
        self.weights: np.ndarray | None = None

    def params(self) -> dict[str, Any]:
        """The hyper-parameter ``l2``."""
        return {"l2": self.l2}

    def fit(self, matrix: Any) -> Self:
        """Solve for B.

        Args:
            matrix: User × item interactions X.

        Returns:
            The fitted model.

        Shape:
            matrix: [U, N].
        """
        self._matrix = as_csr(matrix)
        self.weights = ease_weights(self._matrix, self.l2)
        return self

    def scores(self, user_rows: np.ndarray) -> np.ndarray:
        """Reconstruction scores ``X[rows] · B`` (see :meth:`Baseline.scores`)."""
        rows = self._rows(user_rows)
        assert self.weights is not None  # set together with the matrix by fit
        x = self.matrix[rows].astype(np.float64)
        return np.asarray(x @ self.weights, dtype=np.float64)
