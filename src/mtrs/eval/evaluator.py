"""The one prediction and evaluation path shared by training, ``mtrs evaluate`` and serving."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from mtrs.data.batch import Batch
from mtrs.eval.metrics import task_metrics
from mtrs.tasks.relations import EsmmRelation
from mtrs.tasks.task import Task


@torch.no_grad()
def predict(
    model: nn.Module,
    batch: Batch,
    tasks: list[Task],
    relations: list[EsmmRelation] | None = None,
    batch_size: int = 8192,
    device: torch.device | str = "cpu",
) -> dict[str, np.ndarray]:
    """Predictions for every row, keyed by task (and relation) name, on the labels' scale.

    Returns:
        Binary: probability [n]; regression: value [n]; multiclass: probabilities [n, C];
        relation (ESMM joint): probability [n].
    """
    was_training = model.training
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {t.name: [] for t in tasks}
    for r in relations or []:
        parts[r.name] = []
    n = len(batch)
    for start in range(0, n, batch_size):
        b = batch.take(slice(start, start + batch_size)).to(device)
        out = model(b)
        probs = {t.name: t.kind.predict(out.logits[t.name].float()) for t in tasks}
        for name, p in probs.items():
            parts[name].append(p.cpu())
        for r in relations or []:
            parts[r.name].append(r.predict(probs).cpu())
    model.train(was_training)
    result: dict[str, np.ndarray] = {}
    by_name = {t.name: t for t in tasks}
    for name, chunks in parts.items():
        arr = torch.cat(chunks).numpy() if chunks else np.zeros(0, dtype=np.float32)
        result[name] = by_name[name].to_output(arr) if name in by_name else arr
    return result


def _per_user(user: np.ndarray, y: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One row per user: the user's label and the mean of their predictions."""
    if pred.ndim == 1:
        frame = pd.DataFrame({"u": user, "y": y, "p": pred})
        g = frame.groupby("u", sort=True)
        return g["y"].first().to_numpy(), g["p"].mean().to_numpy()
    frame = pd.DataFrame(pred, columns=[f"p{i}" for i in range(pred.shape[1])])
    frame["u"], frame["y"] = user, y
    g = frame.groupby("u", sort=True)
    return g["y"].first().to_numpy(), g[[f"p{i}" for i in range(pred.shape[1])]].mean().to_numpy()


def metrics_from_predictions(
    preds: dict[str, np.ndarray],
    batch: Batch,
    tasks: list[Task],
    relations: list[EsmmRelation] | None = None,
) -> dict[str, dict[str, float]]:
    """Per-task metrics where each task's label counts.

    User-scoped tasks are scored once per user (the user's label against the mean of the
    predictions over the user's rows), so heavy users do not dominate a profiling metric.
    """
    labels = batch.labels.numpy()
    mask = batch.mask.numpy()
    user = batch.user.numpy()
    out: dict[str, dict[str, float]] = {}
    for t in tasks:
        m = mask[:, t.column]
        y = labels[m, t.column]
        p = preds[t.name][m]
        if t.type == "regression":
            y = t.to_output(y)
        if t.user_scoped:
            y, p = _per_user(user[m], y, p)
            out[t.name] = task_metrics(t.type, y, p, None)
        else:
            out[t.name] = task_metrics(t.type, y, p, user[m] if t.type == "binary" else None)
    for r in relations or []:
        y_t, valid = r.target(batch.labels, batch.mask)
        v = valid.numpy()
        out[r.name] = task_metrics("binary", y_t.numpy()[v], preds[r.name][v], user[v])
    return out


def evaluate(
    model: nn.Module,
    batch: Batch,
    tasks: list[Task],
    relations: list[EsmmRelation] | None = None,
    batch_size: int = 8192,
    device: torch.device | str = "cpu",
) -> dict[str, dict[str, float]]:
    """Predict and score a split: ``{task: {metric: value}}``."""
    preds = predict(model, batch, tasks, relations, batch_size, device)
    return metrics_from_predictions(preds, batch, tasks, relations)
