"""Shared bottom: one task-shared layer, then one tower per task."""

from __future__ import annotations

from torch import Tensor, nn

from mtrs.arch.base import ArchContext, Architecture, ArchOutput, SharedLayer
from mtrs.arch.registry import register
from mtrs.layers.mlp import MLP


@register("shared_bottom")
class SharedBottom(Architecture):
    """Soft parallel sharing through a common bottom (Caruana, Machine Learning 1997).

    The design's soft-parallel flow: input → task-shared layer (MLP or Transformer) → a
    task-specific MLP tower per task. Z, the shared layer's output, feeds every tower.
    """

    def __init__(self, ctx: ArchContext) -> None:
        super().__init__()
        self.shared = SharedLayer(ctx.layout, ctx.cfg.shared)
        self.towers = nn.ModuleDict(
            {
                t: MLP(self.shared.out_dim, ctx.cfg.tower.hidden, ctx.cfg.tower.dropout)
                for t in ctx.task_names
            }
        )
        self.out_dims = {t: m.out_dim for t, m in self.towers.items()}  # type: ignore[misc]
        self.shared_dim = self.shared.out_dim

    def forward(self, x: Tensor, user_only: bool = False) -> ArchOutput:
        z = self.shared(x, user_only)
        return ArchOutput({t: tower(z) for t, tower in self.towers.items()}, shared=z)

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.shared.parameters())
