"""Per-task and top-K ranking metrics as pure functions on numpy arrays."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    roc_auc_score,
    root_mean_squared_error,
)

from mtrs.eval.names import HIGHER_IS_BETTER, is_higher_better

__all__ = [
    "HIGHER_IS_BETTER",
    "TASK_METRICS",
    "accuracy",
    "auc",
    "gauc",
    "hit_rate_at_k",
    "hits_from_ranked",
    "is_higher_better",
    "logloss",
    "macro_f1",
    "mae",
    "ndcg_at_k",
    "ranking_metrics",
    "recall_at_k",
    "rmse",
    "task_metrics",
]

# --------------------------------------------------------------------------- binary


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve.

    Args:
        y: Binary labels in {0, 1}.
        p: Scores or probabilities; ties count one half, as in ``roc_auc_score``.

    Returns:
        The AUC, or nan when fewer than two classes are present.

    Shape:
        y, p: [n].
    """
    y = np.asarray(y)
    if np.unique(y).size < 2:
        return math.nan
    return float(roc_auc_score(y, np.asarray(p)))


def gauc(y: np.ndarray, p: np.ndarray, groups: np.ndarray) -> float:
    """Group AUC: per-group AUC averaged with each group's number of rows as weight.

    Groups (typically users) holding a single class have no AUC and are left out of both the
    numerator and the weights. Each group's AUC uses the Mann-Whitney form
    ``(R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg)`` with average ranks, so ties count one
    half exactly as in ``roc_auc_score``; all groups are ranked in one vectorised pass.

    Args:
        y: Binary labels in {0, 1}.
        p: Scores or probabilities.
        groups: Group key of each row (any hashable dtype).

    Returns:
        The weighted mean AUC, or nan when no group has both classes.

    Shape:
        y, p, groups: [n].
    """
    y = np.asarray(y)
    p = np.asarray(p, dtype=np.float64)
    if y.size == 0:
        return math.nan
    codes, _ = pd.factorize(np.asarray(groups), use_na_sentinel=False)
    pos = (y == 1).astype(np.float64)
    ranks = pd.Series(p).groupby(codes).rank(method="average").to_numpy()
    n_groups = int(codes.max()) + 1
    n = np.bincount(codes, minlength=n_groups).astype(np.float64)
    n_pos = np.bincount(codes, weights=pos, minlength=n_groups)
    rank_pos = np.bincount(codes, weights=ranks * pos, minlength=n_groups)
    n_neg = n - n_pos
    ok = (n_pos > 0) & (n_neg > 0)
    if not ok.any():
        return math.nan
    group_auc = (rank_pos[ok] - n_pos[ok] * (n_pos[ok] + 1) / 2) / (n_pos[ok] * n_neg[ok])
    return float(np.average(group_auc, weights=n[ok]))


def logloss(y: np.ndarray, p: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities.

    Args:
        y: Binary labels in {0, 1}.
        p: Predicted probabilities of the positive class.
        eps: Probabilities are clipped to ``[eps, 1 - eps]`` so a confident miss stays finite.

    Returns:
        The mean log loss (natural log).

    Shape:
        y, p: [n].
    """
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1.0 - eps)
    return float(log_loss(np.asarray(y), p, labels=[0, 1]))


# ----------------------------------------------------------------------- regression


def rmse(y: np.ndarray, yhat: np.ndarray) -> float:
    """Root mean squared error.

    Args:
        y: Targets.
        yhat: Predictions.

    Returns:
        The RMSE.

    Shape:
        y, yhat: [n].
    """
    return float(root_mean_squared_error(np.asarray(y), np.asarray(yhat)))


def mae(y: np.ndarray, yhat: np.ndarray) -> float:
    """Mean absolute error.

    Args:
        y: Targets.
        yhat: Predictions.

    Returns:
        The MAE.

    Shape:
        y, yhat: [n].
    """
    return float(mean_absolute_error(np.asarray(y), np.asarray(yhat)))


# ----------------------------------------------------------------------- multiclass


def accuracy(y: np.ndarray, proba: np.ndarray) -> float:
    """Share of rows whose most probable class is the label.

    Args:
        y: Integer class labels.
        proba: Class probabilities (or logits: only the argmax is used).

    Returns:
        The accuracy.

    Shape:
        y: [n]; proba: [n, C].
    """
    return float(accuracy_score(np.asarray(y), np.asarray(proba).argmax(axis=1)))


def macro_f1(y: np.ndarray, proba: np.ndarray, num_classes: int) -> float:
    """Unweighted mean of per-class F1 over all ``num_classes`` classes.

    Classes never predicted nor present score 0, so a model that ignores a class is penalised
    even when that class is absent from this split.

    Args:
        y: Integer class labels in ``[0, num_classes)``.
        proba: Class probabilities (or logits: only the argmax is used).
        num_classes: Number of classes C.

    Returns:
        The macro F1.

    Shape:
        y: [n]; proba: [n, C].
    """
    return float(
        f1_score(
            np.asarray(y),
            np.asarray(proba).argmax(axis=1),
            average="macro",
            labels=list(range(num_classes)),
            zero_division=0,
        )
    )


# ------------------------------------------------------------------- task dispatch


def _binary_metrics(y: np.ndarray, pred: np.ndarray, groups: np.ndarray | None) -> dict[str, float]:
    out = {"auc": auc(y, pred)}
    if groups is not None:
        out["gauc"] = gauc(y, pred, groups)
    out["logloss"] = logloss(y, pred)
    return out


def _regression_metrics(
    y: np.ndarray, pred: np.ndarray, groups: np.ndarray | None
) -> dict[str, float]:
    del groups  # grouping has no meaning for error metrics
    return {"rmse": rmse(y, pred), "mae": mae(y, pred)}


def _multiclass_metrics(
    y: np.ndarray, pred: np.ndarray, groups: np.ndarray | None
) -> dict[str, float]:
    del groups
    return {"accuracy": accuracy(y, pred), "macro_f1": macro_f1(y, pred, pred.shape[1])}


TASK_METRICS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray | None], dict[str, float]]] = {
    "binary": _binary_metrics,
    "regression": _regression_metrics,
    "multiclass": _multiclass_metrics,
}


def task_metrics(
    task_type: str, y: np.ndarray, pred: np.ndarray, groups: np.ndarray | None = None
) -> dict[str, float]:
    """All metrics of one task type, keyed by bare metric name.

    Args:
        task_type: ``"binary"`` (auc, gauc when groups are given, logloss), ``"regression"``
            (rmse, mae) or ``"multiclass"`` (accuracy, macro_f1).
        y: Labels (rows with a missing label already removed).
        pred: Probabilities [n] for binary, predictions [n] for regression, class
            probabilities [n, C] for multiclass.
        groups: Optional group key per row (e.g. user id) for gAUC.

    Returns:
        Metric name to value; empty when there are no rows.

    Raises:
        ValueError: If the task type is unknown.

    Shape:
        y: [n]; pred: [n] or [n, C]; groups: [n].
    """
    fn = TASK_METRICS.get(task_type)
    if fn is None:
        known = ", ".join(sorted(TASK_METRICS))
        raise ValueError(f"Unknown task type {task_type!r}; expected one of: {known}.")
    y = np.asarray(y)
    if y.shape[0] == 0:
        return {}
    return fn(y, np.asarray(pred), None if groups is None else np.asarray(groups))


# -------------------------------------------------------------------------- ranking


def hits_from_ranked(
    ranked: np.ndarray, relevant: Sequence[np.ndarray] | Any
) -> tuple[np.ndarray, np.ndarray]:
    """Mark which recommended items are relevant, for many users at once.

    Args:
        ranked: Item ids recommended to each user, best first; negative ids are padding and
            never count as hits.
        relevant: The relevant items of each user, either a sequence of U integer arrays or a
            scipy sparse matrix [U, num_items] whose nonzero entries are the relevant items.

    Returns:
        ``(hits, num_relevant)``: hits[u, r] is True when ranked[u, r] is relevant to user u;
        num_relevant[u] is how many distinct items are relevant to user u.

    Shape:
        ranked: [U, K]; hits: [U, K] bool; num_relevant: [U] int.
    """
    ranked = np.asarray(ranked, dtype=np.int64)
    n_users = ranked.shape[0]
    if hasattr(relevant, "tocoo"):
        coo = relevant.tocoo()
        nonzero = coo.data != 0
        rel_users = coo.row[nonzero].astype(np.int64)
        rel_items = coo.col[nonzero].astype(np.int64)
    else:
        if len(relevant) != n_users:
            raise ValueError(f"ranked has {n_users} users but relevant has {len(relevant)}.")
        lengths = np.fromiter(map(len, relevant), dtype=np.int64, count=n_users)
        rel_users = np.repeat(np.arange(n_users, dtype=np.int64), lengths)
        rel_items = (
            np.concatenate(list(relevant)).astype(np.int64)
            if n_users
            else np.empty(0, dtype=np.int64)
        )
    # One (user, item) key per pair lets a single isin test all U*K recommendations.
    width = int(max(ranked.max(initial=-1), rel_items.max(initial=-1))) + 1
    rel_keys = np.unique(rel_users * width + rel_items)  # duplicates count once
    num_relevant = np.bincount(rel_keys // width, minlength=n_users).astype(np.int64)
    keys = np.arange(n_users, dtype=np.int64)[:, None] * width + ranked
    hits = np.isin(keys, rel_keys) & (ranked >= 0)
    return hits, num_relevant


def _ranking_inputs(
    hits: np.ndarray, num_relevant: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    hits = np.asarray(hits, dtype=bool)
    num_relevant = np.asarray(num_relevant)
    if not 1 <= k <= hits.shape[1]:
        raise ValueError(f"k={k} must be between 1 and the list length {hits.shape[1]}.")
    # Users with nothing relevant have no defined recall or NDCG, so they are dropped everywhere.
    keep = num_relevant > 0
    return hits[keep, :k], num_relevant[keep]


def hit_rate_at_k(hits: np.ndarray, k: int, num_relevant: np.ndarray | None = None) -> float:
    """HR@k: share of users with at least one relevant item in their top k.

    Args:
        hits: hits[u, r] is True when the item at rank r (0-based) is relevant to user u.
        k: Cut-off, 1 <= k <= K.
        num_relevant: Number of relevant items per user; when given, users with 0 are
            excluded (they cannot hit). When omitted every row counts.

    Returns:
        The hit rate, or nan when no user is left.

    Shape:
        hits: [U, K]; num_relevant: [U].
    """
    hits = np.asarray(hits, dtype=bool)
    if num_relevant is None:
        num_relevant = np.ones(hits.shape[0], dtype=np.int64)
    h, _ = _ranking_inputs(hits, num_relevant, k)
    return float(h.any(axis=1).mean()) if h.shape[0] else math.nan


def ndcg_at_k(hits: np.ndarray, num_relevant: np.ndarray, k: int) -> float:
    """NDCG@k with binary gains, averaged over users.

    ``DCG = Σ_{r<k} hits[u, r] / log2(r + 2)``; the ideal DCG puts ``min(num_relevant, k)``
    hits at the top ranks.

    Args:
        hits: hits[u, r] is True when the item at rank r (0-based) is relevant to user u.
        num_relevant: Number of relevant items per user; users with 0 are excluded.
        k: Cut-off, 1 <= k <= K.

    Returns:
        The mean NDCG, or nan when no user has a relevant item.

    Shape:
        hits: [U, K]; num_relevant: [U].
    """
    h, n_rel = _ranking_inputs(hits, num_relevant, k)
    if not h.shape[0]:
        return math.nan
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = h @ discount
    ideal = np.cumsum(discount)[np.minimum(n_rel, k) - 1]
    return float((dcg / ideal).mean())


def recall_at_k(hits: np.ndarray, num_relevant: np.ndarray, k: int) -> float:
    """Recall@k = relevant items in the top k / all relevant items, averaged over users.

    The denominator is the full ``num_relevant`` (the common definition), so a user with more
    than k relevant items cannot reach 1. A capped variant dividing by ``min(num_relevant, k)``
    is also in use; it is not what this function computes.

    Args:
        hits: hits[u, r] is True when the item at rank r (0-based) is relevant to user u.
        num_relevant: Number of relevant items per user; users with 0 are excluded.
        k: Cut-off, 1 <= k <= K.

    Returns:
        The mean recall, or nan when no user has a relevant item.

    Shape:
        hits: [U, K]; num_relevant: [U].
    """
    h, n_rel = _ranking_inputs(hits, num_relevant, k)
    return float((h.sum(axis=1) / n_rel).mean()) if h.shape[0] else math.nan


def ranking_metrics(
    hits: np.ndarray, num_relevant: np.ndarray, ks: Sequence[int]
) -> dict[str, float]:
    """Every ranking metric at every cut-off.

    Args:
        hits: hits[u, r] is True when the item at rank r (0-based) is relevant to user u
            (see :func:`hits_from_ranked`).
        num_relevant: Number of relevant items per user; users with 0 are excluded.
        ks: Cut-offs, each at most K.

    Returns:
        ``{"hit_rate@k": …, "ndcg@k": …, "recall@k": …}`` for each k in ``ks``.

    Shape:
        hits: [U, K]; num_relevant: [U].
    """
    out: dict[str, float] = {}
    for k in ks:
        out[f"hit_rate@{k}"] = hit_rate_at_k(hits, k, num_relevant)
        out[f"ndcg@{k}"] = ndcg_at_k(hits, num_relevant, k)
        out[f"recall@{k}"] = recall_at_k(hits, num_relevant, k)
    return out
