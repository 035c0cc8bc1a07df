"""Hard parallel: each task is its own model; results are merged only at recommendation time."""

from __future__ import annotations

from torch import nn

from mtrs.arch.base import ArchContext
from mtrs.arch.registry import register
from mtrs.arch.shared_bottom import SharedBottom


@register("single")
class SingleTask(SharedBottom):
    """One independent network (bottom + tower) for one task: the hard-parallel baseline.

    The design's "hard parallel" architecture trains each task as its own model. The model
    builder instantiates this once per task, each copy with its own embeddings, so no
    parameter is shared between tasks; within one copy the network is a bottom (MLP or
    Transformer) and a tower (MLP or Transformer query), as in :class:`SharedBottom`.
    """

    hard_parallel = True

    def __init__(self, ctx: ArchContext) -> None:
        if len(ctx.task_names) != 1:
            raise ValueError("SingleTask is built once per task")
        super().__init__(ctx)

    def shared_parameters(self) -> list[nn.Parameter]:
        return []
