"""One-gate mixture of experts: a pool of experts mixed by a single gate shared by all tasks."""

from __future__ import annotations

from torch import Tensor, nn

from mtrs.arch.base import (
    ArchContext,
    Architecture,
    ArchOutput,
    SharedLayer,
    build_towers,
    tower_widths,
)
from mtrs.arch.registry import register
from mtrs.layers.expert_mix import mix
from mtrs.layers.experts import ExpertPool, Gate


@register("omoe")
class OMoE(Architecture):
    """One-gate Mixture-of-Experts, the baseline of Ma et al. (KDD 2018).

    From "Modeling Task Relationships in Multi-task Learning with Multi-gate
    Mixture-of-Experts", where it is the one-gate (OMoE) baseline of MMoE.

    ``model.experts.num_experts`` MLP experts (widths ``model.shared.hidden``) read the input
    (or, with a Transformer shared layer, the pooled token encoding); one softmax gate mixes
    them and every task tower reads the same mixture. Z, the shared representation, is that
    mixture: it is exactly what all towers share. ``gates[task]`` is the one gate's weights,
    repeated for each task.
    """

    def __init__(self, ctx: ArchContext) -> None:
        super().__init__()
        cfg = ctx.cfg
        self.input = SharedLayer(ctx.layout, cfg.shared, with_mlp=False)
        n = cfg.experts.num_experts
        self.experts = ExpertPool(self.input.out_dim, cfg.shared.hidden, n, cfg.shared.dropout)
        self.gate = Gate(self.input.out_dim, n)
        self.towers = build_towers(ctx, self.experts.out_dim)
        self.out_dims = tower_widths(self.towers)
        self.shared_dim = self.experts.out_dim

    def forward(self, x: Tensor, user_only: bool = False) -> ArchOutput:
        enc = self.input.encode(x, user_only)
        g = self.gate(enc.vector)
        z = mix(self.experts(enc.vector), g)
        tasks = {t: tower(z, enc.tokens, enc.pad) for t, tower in self.towers.items()}
        return ArchOutput(tasks, shared=z, gates={t: g for t in self.towers})

    def shared_parameters(self) -> list[nn.Parameter]:
        return [*self.input.parameters(), *self.experts.parameters(), *self.gate.parameters()]
