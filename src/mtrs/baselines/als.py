"""Implicit-feedback matrix factorisation by alternating least squares (weighted MF)."""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from mtrs.baselines.base import Baseline, as_csr

__all__ = ["ALS", "als_loss", "solve_side"]

# Rows whose normal equations are solved in one batched call: bounds memory to this many f × f.
_SOLVE_BLOCK = 512
# Scores held at once when evaluating the loss: rows × N ≤ this many floats.
_DENSE_BLOCK = 1 << 22


def solve_side(matrix: sp.csr_matrix, fixed: np.ndarray, reg: float, alpha: float) -> np.ndarray:
    """Exact least-squares update of one side's factors with the other side held fixed.

    For each row u (a user when ``fixed`` holds item factors Y, an item when it holds user
    factors) with confidences ``c_ui = 1 + α r_ui`` and preferences ``p_ui = 1[r_ui > 0]``:
    ``x_u = (YᵀY + Yᵀ(C_u − I)Y + λI)⁻¹ Yᵀ C_u p_u``. ``YᵀY`` is shared by every row and
    ``C_u − I`` is zero outside u's interactions, so each row only adds ``Σ_i α r_ui y_i y_iᵀ``
    over its own nonzeros (Hu et al., section 4).

    Args:
        matrix: Interactions of the rows being solved for (CSR, non-negative strengths).
        fixed: Factors of the columns, held fixed.
        reg: The L2 penalty λ.
        alpha: The confidence slope α.

    Returns:
        The new float64 row factors; rows without interactions get 0.

    Shape:
        matrix: [R, M]; fixed: [M, f]; output: [R, f].
    """
    n_rows, f = matrix.shape[0], fixed.shape[1]
    indptr, indices = matrix.indptr, matrix.indices
    strength = matrix.data.astype(np.float64)
    # Yᵀ C_u p_u: p is 1 exactly on the nonzeros, so one sparse product with c as data.
    conf = sp.csr_matrix((1.0 + alpha * strength, indices, indptr), shape=matrix.shape)
    rhs = np.asarray(conf @ fixed, dtype=np.float64)
    base = fixed.T @ fixed + reg * np.eye(f)
    out = np.zeros((n_rows, f), dtype=np.float64)
    for start in range(0, n_rows, _SOLVE_BLOCK):
        stop = min(start + _SOLVE_BLOCK, n_rows)
        lhs = np.broadcast_to(base, (stop - start, f, f)).copy()
        for u in range(start, stop):
            lo, hi = indptr[u], indptr[u + 1]
            if lo == hi:
                continue
            y = fixed[indices[lo:hi]]
            # One BLAS product per row beats materialising every y_i y_iᵀ outer product.
            lhs[u - start] += (y.T * (alpha * strength[lo:hi])) @ y
        out[start:stop] = np.linalg.solve(lhs, rhs[start:stop, :, None])[..., 0]
    return out


def _nonzero_scores(
    matrix: sp.csr_matrix, user_factors: np.ndarray, item_factors: np.ndarray
) -> np.ndarray:
    """``x_uᵀ y_i`` at every stored entry, in CSR order.

    Gathering from dense row blocks of ``X Yᵀ`` (one BLAS product each) is much faster than
    indexing one factor row per nonzero.
    """
    indptr, indices = matrix.indptr, matrix.indices
    block = max(1, _DENSE_BLOCK // max(1, matrix.shape[1]))
    out = np.empty(matrix.nnz, dtype=np.float64)
    for start in range(0, matrix.shape[0], block):
        stop = min(start + block, matrix.shape[0])
        dense = user_factors[start:stop] @ item_factors.T
        lo, hi = indptr[start], indptr[stop]
        local = np.repeat(np.arange(stop - start), np.diff(indptr[start : stop + 1]))
        out[lo:hi] = dense[local, indices[lo:hi]]
    return out


def als_loss(
    matrix: sp.csr_matrix,
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    reg: float,
    alpha: float,
) -> float:
    """The weighted objective ``Σ_{u,i} c_ui (p_ui − x_uᵀ y_i)² + λ(‖X‖² + ‖Y‖²)``.

    The sum over all U × N pairs needs no U × N term: with ``s = x_uᵀ y_i``,
    ``Σ_all (p − s)² = Σ_all s² − 2 Σ_nz s + nnz`` and ``Σ_all s² = ⟨XᵀX, YᵀY⟩``; the
    confidence adds ``Σ_nz α r (1 − s)²``.

    Args:
        matrix: User × item interactions (CSR, non-negative strengths).
        user_factors: X.
        item_factors: Y.
        reg: The L2 penalty λ.
        alpha: The confidence slope α.

    Returns:
        The objective's value.

    Shape:
        matrix: [U, N]; user_factors: [U, f]; item_factors: [N, f].
    """
    s = _nonzero_scores(matrix, user_factors, item_factors)
    strength = matrix.data.astype(np.float64)
    all_sq = float(np.sum((user_factors.T @ user_factors) * (item_factors.T @ item_factors)))
    extra = float(np.sum(alpha * strength * (1.0 - s) ** 2))
    fit = all_sq - 2.0 * float(s.sum()) + matrix.nnz + extra
    penalty = reg * float(np.sum(user_factors**2) + np.sum(item_factors**2))
    return fit + penalty


class ALS(Baseline):
    """Weighted matrix factorisation for implicit feedback, fitted by alternating least squares.

    Hu, Koren & Volinsky, "Collaborative Filtering for Implicit Feedback Datasets", ICDM 2008.
    Every (user, item) pair counts: preference ``p = 1[r > 0]`` with confidence
    ``c = 1 + α r``; user and item factors are solved for exactly in turn (see
    :func:`solve_side`), which never increases the objective (:func:`als_loss`). Scores are
    ``x_uᵀ y_i``.

    Args:
        factors: Latent dimension f.
        reg: The L2 penalty λ on both sides' factors.
        alpha: Confidence slope α (the paper uses 40 on TV watching times; binary feedback
            wants less).
        iterations: Number of (users, items) update rounds.
        seed: Seed of the numpy Generator drawing the initial factors.
        init_scale: Standard deviation of the normal initial factors.

    Attributes:
        user_factors, item_factors: X [U, f] and Y [N, f], after ``fit``.
        losses: The objective after initialisation and after each iteration.
    """

    def __init__(
        self,
        factors: int = 64,
        reg: float = 10.0,
        alpha: float = 1.0,
        iterations: int = 15,
        seed: int = 0,
        init_scale: float = 0.01,
    ) -> None:
        if factors < 1 or iterations < 0:
            raise ValueError(f"Need factors >= 1 and iterations >= 0, got {factors}, {iterations}.")
        # reg > 0 keeps every normal-equation matrix positive definite, hence solvable.
        if reg <= 0 or alpha < 0 or init_scale <= 0:
            raise ValueError("reg and init_scale must be positive and alpha non-negative.")
        self.factors = int(factors)
        self.reg = float(reg)
        self.alpha = float(alpha)
        self.iterations = int(iterations)
        self.seed = int(seed)
        self.init_scale = float(init_scale)
        self.user_factors: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None
        self.losses: list[float] = []

    def params(self) -> dict[str, Any]:
        """The hyper-parameters (``seed`` and ``init_scale`` included)."""
        return {
            "factors": self.factors,
            "reg": self.reg,
            "alpha": self.alpha,
            "iterations": self.iterations,
            "seed": self.seed,
            "init_scale": self.init_scale,
        }

    def fit(self, matrix: Any) -> Self:
        """Alternate exact user and item updates for ``iterations`` rounds.

        Args:
            matrix: User × item interactions; values are the strengths r (1 when binary).

        Returns:
            The fitted model.

        Shape:
            matrix: [U, N].
        """
        self._matrix = as_csr(matrix)
        r = self._matrix.astype(np.float64)
        rt = r.T.tocsr()
        rng = np.random.default_rng(self.seed)
        n_users, n_items = r.shape
        x = rng.normal(0.0, self.init_scale, (n_users, self.factors))
        y = rng.normal(0.0, self.init_scale, (n_items, self.factors))
        self.losses = [als_loss(r, x, y, self.reg, self.alpha)]
        for _ in range(self.iterations):
            x = solve_side(r, y, self.reg, self.alpha)
            y = solve_side(rt, x, self.reg, self.alpha)
            self.losses.append(als_loss(r, x, y, self.reg, self.alpha))
        self.user_factors, self.item_factors = x, y
        return self

    def scores(self, user_rows: np.ndarray) -> np.ndarray:
        """Dot products ``X[rows] · Yᵀ`` (see :meth:`Baseline.scores`)."""
        rows = self._rows(user_rows)
        assert self.user_factors is not None and self.item_factors is not None
        return np.asarray(self.user_factors[rows] @ self.item_factors.T, dtype=np.float64)
