"""Shared bottom: one task-shared layer, then one tower per task."""

from __future__ import annotations

from collections.abc import Collection

from torch import nn

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


@register("shared_bottom")
class SharedBottom(Architecture):
    """Soft parallel sharing through a common bottom (Caruana, Machine Learning 1997).

    The design's soft-parallel flow: input → one :class:`BottomLayer` shared by every task
    (MLP or Transformer) → a task-specific tower per task. Z, the shared layer's output,
    feeds every tower. With Transformer towers (``model.tower.type = "transformer"``) each
    tower also attends over the shared layer's token outputs with its own learned query token.
    """

    def __init__(self, ctx: ArchContext) -> None:
        super().__init__()
        self.shared = BottomLayer(ctx.layout, ctx.cfg.shared)
        self.towers = build_towers(ctx, self.shared.out_dim)
        self.out_dims = tower_widths(self.towers)
        self.shared_dim = self.shared.out_dim

    def forward(
        self, x: Features, user_only: bool = False, tasks: Collection[str] | None = None
    ) -> ArchOutput:
        enc = self.shared.encode(x, user_only)
        z = enc.vector
        return ArchOutput(
            {t: self.towers[t](z, enc.tokens, enc.pad) for t in self.wanted(tasks)}, shared=z
        )

    def input_layers(self, tasks: Collection[str] | None = None) -> list[nn.Module] | None:
        return [self.shared.mlp] if self.shared.foldable() else None

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.shared.parameters())
