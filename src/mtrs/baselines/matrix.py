"""The user × item implicit-feedback matrix the baselines are fitted on."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["interaction_matrix"]


def interaction_matrix(
    users: np.ndarray,
    items: np.ndarray,
    n_users: int,
    n_items: int,
    weights: np.ndarray | None = None,
    binary: bool = True,
) -> sp.csr_matrix:
    """Sparse user × item matrix of observed interactions.

    Args:
        users: Row (user) index of each interaction, in ``[0, n_users)``.
        items: Column (item) index of each interaction, in ``[0, n_items)``.
        n_users: Number of rows U; users without interactions get an empty row.
        n_items: Number of columns N; items without interactions get an empty column.
        weights: Optional weight of each interaction (e.g. a rating or a count). Ignored when
            ``binary`` is True.
        binary: When True every observed pair is 1, however often it occurs. When False a
            pair holds the sum of its weights (of its occurrences when ``weights`` is None).

    Returns:
        A canonical float32 CSR matrix [U, N]: sorted indices, no duplicates, no stored zeros.

    Raises:
        ValueError: If the arrays differ in length or an index is out of range.

    Shape:
        users, items, weights: [nnz]; output: [U, N].
    """
    users = np.asarray(users, dtype=np.int64).ravel()
    items = np.asarray(items, dtype=np.int64).ravel()
    if users.shape != items.shape:
        raise ValueError(f"users has {users.size} entries but items has {items.size}.")
    if n_users < 0 or n_items < 0:
        raise ValueError(f"Matrix sizes must be non-negative, got {n_users} × {n_items}.")
    if users.size and (users.min() < 0 or users.max() >= n_users):
        raise ValueError(f"User indices must lie in [0, {n_users}).")
    if items.size and (items.min() < 0 or items.max() >= n_items):
        raise ValueError(f"Item indices must lie in [0, {n_items}).")
    if binary or weights is None:
        data = np.ones(users.size, dtype=np.float32)
    else:
        data = np.asarray(weights, dtype=np.float32).ravel()
        if data.shape != users.shape:
            raise ValueError(f"weights has {data.size} entries but users has {users.size}.")
    # COO → CSR sums duplicate pairs, which is exactly the weighted case.
    mat = sp.coo_matrix((data, (users, items)), shape=(n_users, n_items)).tocsr()
    mat.sum_duplicates()
    if binary:
        mat.data[:] = 1.0
    mat.eliminate_zeros()
    mat.sort_indices()
    return mat.astype(np.float32)
