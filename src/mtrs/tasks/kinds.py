"""Task kinds (binary, regression, multiclass): loss on logits and the prediction transform."""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor


class TaskKind(Protocol):
    """What a task type defines: per-row loss on logits and logits → prediction."""

    def row_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """Loss per row. Shape: logits [B, C], target [B] → [B]."""
        ...

    def predict(self, logits: Tensor) -> Tensor:
        """Probability (binary [B]), value (regression [B]) or class probabilities [B, C]."""
        ...


class Binary:
    """Binary cross-entropy on the logit (the sigmoid lives in the loss, not the model)."""

    def row_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits[:, 0], target, reduction="none")

    def predict(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits[:, 0])


class Regression:
    """Squared error on the standardised target."""

    def row_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return (logits[:, 0] - target) ** 2

    def predict(self, logits: Tensor) -> Tensor:
        return logits[:, 0]


class Multiclass:
    """Softmax cross-entropy over the fitted classes."""

    def row_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(logits, target.long(), reduction="none")

    def predict(self, logits: Tensor) -> Tensor:
        return torch.softmax(logits, dim=-1)


TASK_KINDS: dict[str, TaskKind] = {
    "binary": Binary(),
    "regression": Regression(),
    "multiclass": Multiclass(),
}
