"""Multi-gate mixture of experts: a pool of experts, one softmax gate per task."""

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
from mtrs.layers.expert_mix import expert_mean, mix_many
from mtrs.layers.experts import ExpertPool, Gate, stacked_gates


@register("mmoe")
class MMoE(Architecture):
    """Multi-gate Mixture-of-Experts (Ma et al., KDD 2018).

    "Modeling Task Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts".

    ``model.experts.num_experts`` MLP experts (widths ``model.shared.hidden``), computed as
    one batched operation, read the input (or, with a Transformer shared layer, the pooled
    token encoding). Each task has its own softmax gate over the experts and its tower reads
    its own mixture, so tasks that conflict can lean on different experts.

    Z, the shared representation, is the plain mean of the experts' outputs: no task's gate
    is privileged, and the auxiliary objective shapes the experts rather than one task's gate.
    """

    def __init__(self, ctx: ArchContext) -> None:
        super().__init__()
        cfg = ctx.cfg
        self.input = SharedLayer(ctx.layout, cfg.shared, with_mlp=False)
        n = cfg.experts.num_experts
        self.experts = ExpertPool(self.input.out_dim, cfg.shared.hidden, n, cfg.shared.dropout)
        self.gates = nn.ModuleDict({t: Gate(self.input.out_dim, n) for t in ctx.task_names})
        self.towers = build_towers(ctx, self.experts.out_dim)
        self.out_dims = tower_widths(self.towers)
        self.shared_dim = self.experts.out_dim

    def forward(self, x: Tensor, user_only: bool = False) -> ArchOutput:
        enc = self.input.encode(x, user_only)
        e = self.experts(enc.vector)
        gates = stacked_gates(self.gates, enc.vector)
        mixed = mix_many(e, list(gates.values()))
        tasks = {
            t: tower(z, enc.tokens, enc.pad)
            for (t, tower), z in zip(self.towers.items(), mixed, strict=True)
        }
        return ArchOutput(tasks, shared=expert_mean(e), gates=gates)

    def shared_parameters(self) -> list[nn.Parameter]:
        return [*self.input.parameters(), *self.experts.parameters()]
