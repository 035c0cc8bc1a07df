"""Mean gate weight of each task on each expert over a split (how tasks share experts)."""

from __future__ import annotations

import torch
from torch import nn

from mtrs.data.batch import Batch


@torch.no_grad()
def mean_gate_weights(
    model: nn.Module, data: Batch, batch_size: int = 8192, device: torch.device | str = "cpu"
) -> dict[str, list[float]]:
    """Average softmax gate weights per task over every row of ``data``.

    Returns:
        Task → one weight per expert (each list sums to 1); empty for models without gates.
    """
    was_training = model.training
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    n = len(data)
    for start in range(0, n, batch_size):
        out = model(data.take(slice(start, start + batch_size)).to(device))
        for task, g in out.gates.items():
            s = g.float().sum(0).cpu()
            sums[task] = sums[task] + s if task in sums else s
    model.train(was_training)
    return {t: (s / max(n, 1)).tolist() for t, s in sums.items()}
