"""The one prediction and evaluation path shared by training, ``mtrs evaluate`` and serving."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mtrs.data.batch import Batch
from mtrs.tasks.taskset import TaskSet


@torch.no_grad()
def predict(
    model: nn.Module,
    batch: Batch,
    tasks: TaskSet,
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
    names = tasks.names + [r.name for r in tasks.relations]
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    for start in range(0, len(batch), batch_size):
        out = model(batch.take(slice(start, start + batch_size)).to(device))
        for name, p in tasks.predict(out.logits).items():
            parts[name].append(p.cpu())
    model.train(was_training)
    return {
        name: tasks.to_output(
            name, torch.cat(chunks).numpy() if chunks else np.zeros(0, np.float32)
        )
        for name, chunks in parts.items()
    }


def evaluate(
    model: nn.Module,
    batch: Batch,
    tasks: TaskSet,
    batch_size: int = 8192,
    device: torch.device | str = "cpu",
) -> dict[str, dict[str, float]]:
    """Predict and score a split: ``{task: {metric: value}}``."""
    return tasks.metrics(predict(model, batch, tasks, batch_size, device), batch)
