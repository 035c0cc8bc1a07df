"""Hard parallel: each task is its own model; results are merged only at recommendation time."""

from __future__ import annotations

from torch import Tensor, nn

from mtrs.arch.base import ArchContext, Architecture, ArchOutput, SharedLayer
from mtrs.arch.registry import register
from mtrs.layers.mlp import MLP


@register("single")
class SingleTask(Architecture):
    """One independent network (bottom + tower) for one task: the hard-parallel baseline.

    The model builder instantiates this once per task, each copy with its own embeddings, so
    no parameter is shared between tasks (the design's "hard parallel" architecture).
    """

    hard_parallel = True

    def __init__(self, ctx: ArchContext) -> None:
        super().__init__()
        if len(ctx.task_names) != 1:
            raise ValueError("SingleTask is built once per task")
        self.bottom = SharedLayer(ctx.layout, ctx.cfg.shared)
        name = ctx.task_names[0]
        self.tower = MLP(self.bottom.out_dim, ctx.cfg.tower.hidden, ctx.cfg.tower.dropout)
        self.name = name
        self.out_dims = {name: self.tower.out_dim}
        self.shared_dim = self.bottom.out_dim

    def forward(self, x: Tensor, user_only: bool = False) -> ArchOutput:
        z = self.bottom(x, user_only)
        return ArchOutput({self.name: self.tower(z)}, shared=z)

    def shared_parameters(self) -> list[nn.Parameter]:
        return []
