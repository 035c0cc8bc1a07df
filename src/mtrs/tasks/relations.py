"""Relations between named tasks, e.g. the ESMM funnel p(click∧buy) = p(click)·p(buy|click)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from mtrs.config.models import RelationConfig
from mtrs.tasks.task import Task


class Relation(Protocol):
    """A derived quantity over task outputs with a loss of its own."""

    name: str

    def no_direct_loss(self) -> set[str]:
        """Tasks trained only through this relation."""
        ...

    def loss(self, logits: dict[str, Tensor], labels: Tensor, mask: Tensor) -> Tensor:
        """The relation's loss on a batch (scalar)."""
        ...

    def loss_rows(self, mask: Tensor) -> Tensor:
        """The rows the loss averages over."""
        ...

    def predict(self, probs: dict[str, Tensor]) -> Tensor:
        """The derived prediction from the tasks' predictions."""
        ...

    def target(self, labels: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """The derived label and its mask, for metrics."""
        ...


@dataclass
class EsmmRelation:
    """Entire Space Multi-task Model funnel (Ma et al., SIGIR 2018).

    The parent (e.g. click) is trained on all impressions; the child (e.g. purchase given
    click) has no loss of its own: it is learned through the joint task
    p(parent ∧ child) = p(parent)·p(child | parent), whose label is parent·child on every
    impression, which removes the sample-selection bias of training the child on clicks only.
    """

    name: str
    parent: Task
    child: Task
    active: bool = True

    @classmethod
    def from_config(cls, cfg: RelationConfig, tasks: dict[str, Task], active: bool) -> EsmmRelation:
        """Bind the configured task names to tasks."""
        return cls(cfg.joint_name, tasks[cfg.parent], tasks[cfg.child], active)

    def no_direct_loss(self) -> set[str]:
        return {self.child.name} if self.active else set()

    def target(self, labels: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        p, c = self.parent.column, self.child.column
        parent_y = labels[:, p]
        # Where the parent is 0 the child never happened, so the joint label is 0.
        child_y = torch.where(mask[:, c], labels[:, c], torch.zeros_like(labels[:, c]))
        valid = mask[:, p]
        return parent_y * child_y, valid

    def loss(self, logits: dict[str, Tensor], labels: Tensor, mask: Tensor) -> Tensor:
        y, valid = self.target(labels, mask)
        log_p = F.logsigmoid(logits[self.parent.name][:, 0]) + F.logsigmoid(
            logits[self.child.name][:, 0]
        )
        # log(1 - p) computed stably from log p.
        log_not_p = torch.log(-torch.expm1(log_p.clamp_max(-1e-7)))
        per_row = -(y * log_p + (1 - y) * log_not_p)
        w = valid.to(per_row.dtype)
        return (per_row * w).sum() / w.sum().clamp_min(1.0)

    def loss_rows(self, mask: Tensor) -> Tensor:
        """The rows :meth:`loss` averages over: every row where the parent's label counts."""
        return mask[:, self.parent.column].sum()

    def predict(self, probs: dict[str, Tensor]) -> Tensor:
        return probs[self.parent.name] * probs[self.child.name]


RELATIONS = {"esmm": EsmmRelation}
