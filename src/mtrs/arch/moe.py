"""Mixture of experts: a pool of experts mixed by one gate per task (MMoE) or one for all (OMoE)."""

from __future__ import annotations

from collections.abc import Collection
from typing import ClassVar

from torch import nn

from mtrs.arch.base import (
    ArchContext,
    Architecture,
    ArchOutput,
    BottomLayer,
    build_towers,
    expert_input,
    tower_widths,
)
from mtrs.arch.registry import register
from mtrs.layers.expert_mix import expert_mean, mix, mix_many
from mtrs.layers.experts import ExpertPool, Gate, stacked_gates
from mtrs.layers.folded import Features


class MixtureOfExperts(Architecture):
    """Mixture-of-Experts over a shared bottom (Ma et al., KDD 2018).

    "Modeling Task Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts".

    ``model.experts.num_experts`` MLP experts (widths ``model.shared.hidden``), computed as
    one batched operation, read the input (or, with a Transformer bottom, the pooled token
    encoding). ``gate_per_task`` chooses between the paper's two models:

    * True (MMoE, :class:`MMoE`): each task has its own softmax gate over the experts and its
      tower reads its own mixture, so tasks that conflict can lean on different experts. Z,
      the shared representation, is the plain mean of the experts' outputs: no task's gate is
      privileged, and the auxiliary objective shapes the experts rather than one task's gate.
    * False (OMoE, :class:`OMoE`, the paper's one-gate baseline): one softmax gate mixes the
      experts and every tower reads the same mixture. Z is that mixture, exactly what all
      towers share; ``gates[task]`` is the one gate's weights, repeated for each task.

    The gates are stored as ``gates.<task>`` (MMoE) or ``gate`` (OMoE), the names saved
    models' weights carry.

    Args:
        ctx: The input layout, task names and ``[model]``.
    """

    gate_per_task: ClassVar[bool] = True

    def __init__(self, ctx: ArchContext) -> None:
        super().__init__()
        cfg = ctx.cfg
        # Modules are created in this order so that a seed gives the weights it always gave.
        self.input = BottomLayer(ctx.layout, cfg.shared, with_mlp=False)
        width, n = self.input.out_dim, cfg.experts.num_experts
        self.experts = ExpertPool(width, cfg.shared.hidden, n, cfg.shared.dropout)
        self.gates: nn.ModuleDict | None = None
        self.gate: Gate | None = None
        if self.gate_per_task:
            self.gates = nn.ModuleDict({t: Gate(width, n) for t in ctx.task_names})
        else:
            self.gate = Gate(width, n)
        self.towers = build_towers(ctx, self.experts.out_dim)
        self.out_dims = tower_widths(self.towers)
        self.shared_dim = self.experts.out_dim

    def forward(
        self, x: Features, user_only: bool = False, tasks: Collection[str] | None = None
    ) -> ArchOutput:
        inp, enc = expert_input(self.input, x, user_only)
        names = self.wanted(tasks)
        if self.gates is not None:
            experts = self.experts(inp)
            # The wanted tasks' gates as one matmul, their mixtures in one pass over the experts.
            gates = stacked_gates({t: self.gates[t] for t in names}, inp)
            mixed = mix_many(experts, list(gates.values())) if names else []
            shared = expert_mean(experts)
        else:
            assert self.gate is not None
            g = self.gate(inp)
            shared = mix(self.experts(inp), g)
            gates = dict.fromkeys(names, g)
            mixed = [shared] * len(names)
        tokens, pad = (None, None) if enc is None else (enc.tokens, enc.pad)
        vectors = {t: self.towers[t](z, tokens, pad) for t, z in zip(names, mixed, strict=True)}
        return ArchOutput(vectors, shared=shared, gates=gates)

    def input_layers(self, tasks: Collection[str] | None = None) -> list[nn.Module] | None:
        if self.input.encoder is not None or not len(self.experts.weights):
            return None
        if self.gates is None:
            assert self.gate is not None
            return [self.experts, self.gate]
        return [self.experts, *(self.gates[t] for t in self.wanted(tasks))]

    def shared_parameters(self) -> list[nn.Parameter]:
        # The one gate of OMoE serves every task; MMoE's gates belong to one task each.
        gate = [] if self.gate is None else list(self.gate.parameters())
        return [*self.input.parameters(), *self.experts.parameters(), *gate]


@register("mmoe")
class MMoE(MixtureOfExperts):
    """Multi-gate Mixture-of-Experts (Ma et al., KDD 2018): one softmax gate per task.

    See :class:`MixtureOfExperts`.
    """

    gate_per_task = True


@register("omoe")
class OMoE(MixtureOfExperts):
    """One-gate Mixture-of-Experts, the baseline of MMoE in Ma et al. (KDD 2018).

    One softmax gate shared by all tasks; see :class:`MixtureOfExperts`.
    """

    gate_per_task = False
