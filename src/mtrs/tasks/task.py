"""A named task: its label column in the batch, head width, masked loss and prediction."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import Tensor

from mtrs.data.labels import TaskEncoding
from mtrs.tasks.kinds import TASK_KINDS, TaskKind


@dataclass
class Task:
    """One task of the model, addressed by name everywhere.

    Attributes:
        name: The task's name (keys outputs and metrics as ``"<name>/<metric>"``).
        column: Its column in ``Batch.labels`` / ``Batch.mask``.
        encoding: The fitted label encoding (classes, regression scaler).
        direct_loss: False when a relation (ESMM) trains this task only through another.
    """

    name: str
    column: int
    encoding: TaskEncoding
    direct_loss: bool = True

    @property
    def type(self) -> str:
        """binary, regression or multiclass."""
        return self.encoding.config.type

    @property
    def kind(self) -> TaskKind:
        """The loss/prediction strategy of the task type."""
        return TASK_KINDS[self.type]

    @property
    def weight(self) -> float:
        """The fixed loss weight w_i from the config."""
        return self.encoding.config.weight

    @property
    def user_scoped(self) -> bool:
        """True for profiling tasks, which read the user-side inputs only."""
        return self.encoding.config.scope == "user"

    @property
    def output_dim(self) -> int:
        """Head width: 1, or the number of classes."""
        return self.encoding.output_dim

    def loss(self, logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
        """Mean loss over the rows where the label counts (0 when there are none).

        Shape:
            logits [B, C]; labels, mask [B, T] (this task's column is used) → scalar.
        """
        m = mask[:, self.column]
        per_row = self.kind.row_loss(logits, labels[:, self.column])
        w = m.to(per_row.dtype)
        return (per_row * w).sum() / w.sum().clamp_min(1.0)

    def loss_rows(self, mask: Tensor) -> Tensor:
        """The rows :meth:`loss` averages over (its denominator before the clamp)."""
        return mask[:, self.column].sum()

    def to_output(self, pred: np.ndarray) -> np.ndarray:
        """Predictions on the label's own scale (regression values de-standardised)."""
        if self.encoding.scaler is not None:
            return self.encoding.scaler.inverse(pred)
        return pred
