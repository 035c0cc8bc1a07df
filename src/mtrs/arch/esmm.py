"""Entire Space Multi-task Model: shared embeddings, one bottom and tower per task, a funnel."""

from __future__ import annotations

from collections.abc import Collection
from typing import cast

from torch import Tensor, nn

from mtrs.arch.base import (
    ArchContext,
    Architecture,
    ArchOutput,
    BottomLayer,
    build_towers,
    tower_widths,
)
from mtrs.arch.registry import register
from mtrs.layers.folded import Features
from mtrs.layers.task_attention import TaskTower


class TaskBranch(nn.Module):
    """One task's own network: its own :class:`BottomLayer` (MLP or Transformer) and tower.

    Shape:
        x [B, d] → [B, tower.out_dim].
    """

    def __init__(self, bottom: BottomLayer, tower: TaskTower) -> None:
        super().__init__()
        self.bottom = bottom
        self.tower = tower
        self.out_dim = tower.out_dim

    def forward(self, x: Features, user_only: bool = False) -> Tensor:
        enc = self.bottom.encode(x, user_only)
        return self.tower(enc.vector, enc.tokens, enc.pad)


@register("esmm")
class ESMM(Architecture):
    """Entire Space Multi-task Model (Ma et al., SIGIR 2018).

    "Entire Space Multi-Task Model: An Effective Approach for Estimating Post-Click
    Conversion Rate". As in the paper, the tasks share only the feature embeddings: each
    task has its own :class:`BottomLayer` (an MLP of widths ``model.shared.hidden``, or its
    own Transformer over the feature tokens) and its own tower. What makes it ESMM is the
    funnel declared in ``[[relations]]`` (e.g. click → purchase): ``requires_relation =
    "esmm"`` makes the trainer learn the child only through p(parent ∧ child) =
    p(parent)·p(child | parent) on every impression; the child gets no direct loss.

    There is no shared layer, so ``shared_dim`` is None and the design's λ·L_shared
    objectives have no Z to act on: no auxiliary objective is built. The embeddings are the
    only shared parameters, and the model reports those itself.
    """

    requires_relation = "esmm"

    def __init__(self, ctx: ArchContext) -> None:
        super().__init__()
        bottoms = {t: BottomLayer(ctx.layout, ctx.cfg.shared) for t in ctx.task_names}
        towers = build_towers(ctx, next(iter(bottoms.values())).out_dim)
        self.branches = nn.ModuleDict(
            {t: TaskBranch(b, cast(TaskTower, towers[t])) for t, b in bottoms.items()}
        )
        self.out_dims = tower_widths(towers)
        self.shared_dim = None

    def forward(
        self, x: Features, user_only: bool = False, tasks: Collection[str] | None = None
    ) -> ArchOutput:
        return ArchOutput({t: self.branches[t](x, user_only) for t in self.wanted(tasks)})

    def input_layers(self, tasks: Collection[str] | None = None) -> list[nn.Module] | None:
        bottoms = [cast(TaskBranch, self.branches[t]).bottom for t in self.wanted(tasks)]
        return [b.mlp for b in bottoms] if all(b.foldable() for b in bottoms) else None

    def shared_parameters(self) -> list[nn.Parameter]:
        return []
