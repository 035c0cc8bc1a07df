"""Progressive Layered Extraction: task-specific and shared experts over L extraction levels."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import cast

import torch
from torch import Tensor, nn

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
from mtrs.config.models import ExpertConfig, LayerConfig
from mtrs.layers.expert_mix import concat_experts, expert_mean, mix
from mtrs.layers.experts import ExpertPool, Gate
from mtrs.layers.folded import Features, FoldedInput


class ExtractionLevel(nn.Module):
    """One PLE extraction level (a CGC block): per-task experts, shared experts and gates.

    Task ``k``'s gate mixes task ``k``'s own experts followed by the shared experts; the
    shared gate (absent at the last level) mixes every expert of the level. All tasks'
    experts run as one batched pool and the shared experts as another.

    Args:
        in_dim: Width of the level's inputs.
        num_tasks: Number of tasks T.
        experts: ``task_experts`` per task and ``num_experts`` shared ones.
        layer: Expert widths (``hidden``) and dropout.
        last: The last level has no shared gate and no shared output.

    Shape:
        task inputs [T, B, in] (or one [B, in] for all) and shared input [B, in] →
        task outputs [T, B, d], shared output [B, d] (None at the last level), task gate
        weights [T, B, task_experts + num_experts] and shared expert outputs [B, S, d].
    """

    def __init__(
        self, in_dim: int, num_tasks: int, experts: ExpertConfig, layer: LayerConfig, last: bool
    ) -> None:
        super().__init__()
        self.num_tasks = num_tasks
        self.per_task = experts.task_experts
        n_shared = experts.num_experts
        self.task_experts = (
            ExpertPool(in_dim, layer.hidden, num_tasks * self.per_task, layer.dropout)
            if self.per_task
            else None
        )
        self.shared_experts = ExpertPool(in_dim, layer.hidden, n_shared, layer.dropout)
        self.task_gates = nn.ModuleList(
            Gate(in_dim, self.per_task + n_shared) for _ in range(num_tasks)
        )
        self.shared_gate = None if last else Gate(in_dim, num_tasks * self.per_task + n_shared)
        self.out_dim = self.shared_experts.out_dim

    def input_layers(self, keep: Sequence[int] | None = None) -> list[nn.Module]:
        """The layers that read the level's input when it is the first level (what
        :meth:`forward` runs on it for the tasks at positions ``keep``; default all)."""
        layers: list[nn.Module] = [self.shared_experts]
        if self.task_experts is not None:
            layers.append(self.task_experts)
        layers += [self.task_gates[k] for k in (range(self.num_tasks) if keep is None else keep)]
        if self.shared_gate is not None:
            layers.append(self.shared_gate)
        return layers

    def forward(
        self, task_in: Features, shared_in: Features, keep: Sequence[int] | None = None
    ) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
        """The level's outputs; ``keep`` limits the task outputs and gates to those tasks
        (by position, in that order; default all), so their gates and mixes are not run."""
        s = self.shared_experts(shared_in)
        te: Tensor | None = None
        # The first level reads one input for every task; upper levels one per task.
        per_task = None if isinstance(task_in, FoldedInput) or task_in.dim() == 2 else task_in
        if self.task_experts is not None:
            # Upper levels: task k's experts read task k's output of the level below.
            x = task_in if per_task is None else per_task.repeat_interleave(self.per_task, 0)
            te = self.task_experts(x)
        outs, weights = [], []
        for k in range(self.num_tasks) if keep is None else keep:
            g = self.task_gates[k](task_in if per_task is None else per_task[k])
            own = (
                s
                if te is None
                else concat_experts([te[:, k * self.per_task : (k + 1) * self.per_task], s])
            )
            outs.append(mix(own, g))
            weights.append(g)
        shared_out = None
        if self.shared_gate is not None:
            every = s if te is None else concat_experts([te, s])
            shared_out = mix(every, self.shared_gate(shared_in))
        if not outs:  # no task wanted (the shared representation only)
            return s.new_zeros(0), shared_out, s.new_zeros(0), s
        return torch.stack(outs), shared_out, torch.stack(weights), s


@register("ple")
class PLE(Architecture):
    """Progressive Layered Extraction (Tang et al., RecSys 2020).

    "Progressive Layered Extraction (PLE): A Novel Multi-Task Learning (MTL) Model for
    Personalized Recommendations".

    ``model.experts.levels`` extraction levels; each has ``task_experts`` experts per task
    and ``num_experts`` shared experts, all MLPs of widths ``model.shared.hidden``. At each
    level task ``k``'s gate mixes its own experts and the shared experts; the shared gate
    (every level but the last) mixes all experts and feeds the next level's shared experts.
    With one level this is CGC (Customized Gate Control). With a Transformer shared layer the
    first level reads the pooled token encoding.

    Z, the shared representation, is the mean of the last level's shared experts' outputs
    (the part of the network no single task owns). ``gates[task]`` is task ``k``'s gate at
    the last level: its own experts first, then the shared ones.
    """

    def __init__(self, ctx: ArchContext) -> None:
        super().__init__()
        cfg = ctx.cfg
        self.input = BottomLayer(ctx.layout, cfg.shared, with_mlp=False)
        self.names = list(ctx.task_names)
        width = self.input.out_dim
        levels = []
        for i in range(cfg.experts.levels):
            last = i == cfg.experts.levels - 1
            level = ExtractionLevel(width, len(self.names), cfg.experts, cfg.shared, last)
            levels.append(level)
            width = level.out_dim
        self.levels = nn.ModuleList(levels)
        self.towers = build_towers(ctx, width)
        self.out_dims = tower_widths(self.towers)
        self.shared_dim = width

    def forward(
        self, x: Features, user_only: bool = False, tasks: Collection[str] | None = None
    ) -> ArchOutput:
        # Below the last level every task's experts feed the shared gate, so only the last
        # level's task gates and mixes, and the towers, are limited to the wanted tasks.
        wanted = self.wanted(tasks)
        keep = [self.names.index(t) for t in wanted]
        inp, enc = expert_input(self.input, x, user_only)
        task_in: Features = inp
        shared_in: Features | None = inp
        *lower, top = self.levels
        for level in lower:
            assert shared_in is not None
            task_in, shared_in, _, _ = level(task_in, shared_in)
        assert shared_in is not None
        outs, _, weights, shared_experts = top(task_in, shared_in, keep)
        tokens, pad = (None, None) if enc is None else (enc.tokens, enc.pad)
        vectors = {t: self.towers[t](outs[j], tokens, pad) for j, t in enumerate(wanted)}
        gates = {t: weights[j] for j, t in enumerate(wanted)}
        return ArchOutput(vectors, shared=expert_mean(shared_experts), gates=gates)

    def input_layers(self, tasks: Collection[str] | None = None) -> list[nn.Module] | None:
        first = cast(ExtractionLevel, self.levels[0])
        if self.input.encoder is not None or not len(first.shared_experts.weights):
            return None
        # With one level the first is the last, whose task gates run for the wanted only.
        keep = [self.names.index(t) for t in self.wanted(tasks)] if len(self.levels) == 1 else None
        return first.input_layers(keep)

    def shared_parameters(self) -> list[nn.Parameter]:
        params = list(self.input.parameters())
        for module in self.levels:
            level = cast(ExtractionLevel, module)
            params += level.shared_experts.parameters()
            if level.shared_gate is not None:
                # Below the last level every expert feeds the shared gate, hence all tasks.
                params += level.shared_gate.parameters()
                if level.task_experts is not None:
                    params += level.task_experts.parameters()
        return params
