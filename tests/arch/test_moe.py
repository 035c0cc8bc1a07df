"""MMoE and OMoE: bit-for-bit the same weights, outputs and gradients as their reference forms."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from mtrs.arch import ArchContext, Architecture, get_architecture
from mtrs.arch.base import BottomLayer, build_towers
from mtrs.config.models import ModelConfig
from mtrs.layers.embedding import Field, InputLayout
from mtrs.layers.expert_mix import expert_mean, mix, mix_many
from mtrs.layers.experts import ExpertPool, Gate, stacked_gates

TASKS = ("click", "purchase", "gender")
LAYOUT = InputLayout(
    (
        Field("age", "user", 0, 4),
        Field("hist", "behaviour", 4, 4),
        Field("item", "item", 8, 4),
        Field("price", "item", 12, 1),
        Field("hour", "context", 13, 4),
    )
)
TRANSFORMER = {"type": "transformer", "hidden": [32], "d_model": 16, "heads": 2}
VARIANTS: dict[str, dict[str, Any]] = {
    "mlp": {},
    # Dropout takes the autograd expert path and draws random masks in a fixed order.
    "mlp_dropout": {"shared": {"hidden": [16, 8], "dropout": 0.2}},
    "transformer": {"shared": TRANSFORMER, "tower": {"type": "transformer", "hidden": [16]}},
    "one_deep_expert": {"shared": {"hidden": [12, 8, 6]}, "experts": {"num_experts": 1}},
}


class _Reference(nn.Module):
    """MMoE and OMoE as their two separate classes computed them before the merge.

    Kept as the definition the merged class must match: modules created in this order (so a
    seed gives the same initial weights) under these attribute names (so saved ``state_dict``
    keys load), and this forward.
    """

    def __init__(self, ctx: ArchContext, per_task: bool) -> None:
        super().__init__()
        cfg = ctx.cfg
        self.per_task = per_task
        self.input = BottomLayer(ctx.layout, cfg.shared, with_mlp=False)
        n = cfg.experts.num_experts
        self.experts = ExpertPool(self.input.out_dim, cfg.shared.hidden, n, cfg.shared.dropout)
        if per_task:
            self.gates = nn.ModuleDict({t: Gate(self.input.out_dim, n) for t in ctx.task_names})
        else:
            self.gate = Gate(self.input.out_dim, n)
        self.towers = build_towers(ctx, self.experts.out_dim)

    def forward(
        self, x: Tensor, user_only: bool = False
    ) -> tuple[dict[str, Tensor], Tensor, dict[str, Tensor]]:
        enc = self.input.encode(x, user_only)
        if self.per_task:
            e = self.experts(enc.vector)
            gates = stacked_gates(self.gates, enc.vector)
            mixed = mix_many(e, list(gates.values()))
            tasks = {
                t: tower(z, enc.tokens, enc.pad)
                for (t, tower), z in zip(self.towers.items(), mixed, strict=True)
            }
            return tasks, expert_mean(e), gates
        g = self.gate(enc.vector)
        z = mix(self.experts(enc.vector), g)
        tasks = {t: tower(z, enc.tokens, enc.pad) for t, tower in self.towers.items()}
        return tasks, z, {t: g for t in self.towers}

    def shared_parameters(self) -> list[nn.Parameter]:
        gate = [] if self.per_task else list(self.gate.parameters())
        return [*self.input.parameters(), *self.experts.parameters(), *gate]


def _ctx(name: str, variant: str) -> ArchContext:
    base = {"architecture": name, "shared": {"hidden": [16, 8]}, "tower": {"hidden": [4]}}
    return ArchContext(LAYOUT, TASKS, ModelConfig.model_validate(base | VARIANTS[variant]))


def _run(module: nn.Module, user_only: bool) -> dict[str, Tensor]:
    """Weights, then train-mode outputs and every gradient, then eval-mode outputs."""
    rec = {f"param/{k}": v.detach().clone() for k, v in module.state_dict().items()}
    x = torch.randn(11, LAYOUT.dim, generator=torch.Generator().manual_seed(7))
    x.requires_grad_(True)
    module.train()
    torch.manual_seed(99)  # the dropout masks
    out = module(x, user_only)
    tasks, shared, gates = (out.tasks, out.shared, out.gates) if hasattr(out, "tasks") else out
    loss = sum((tasks[t] * (i + 1)).sum() for i, t in enumerate(TASKS))
    loss = loss + shared.pow(2).sum() + sum(3 * g.pow(2).sum() for g in gates.values())
    module.zero_grad()
    loss.backward()
    rec |= {f"task/{t}": v.detach() for t, v in tasks.items()}
    rec |= {f"gate/{t}": v.detach() for t, v in gates.items()}
    rec["shared"] = shared.detach()
    assert x.grad is not None
    rec["x.grad"] = x.grad
    for k, p in module.named_parameters():
        assert p.grad is not None, k
        rec[f"grad/{k}"] = p.grad
    params = module.shared_parameters()  # type: ignore[operator]
    rec["shared_parameters"] = torch.cat([p.detach().flatten() for p in params])
    module.eval()
    with torch.no_grad():
        out = module(x.detach(), user_only)
    tasks, shared, gates = (out.tasks, out.shared, out.gates) if hasattr(out, "tasks") else out
    rec |= {f"eval/task/{t}": v for t, v in tasks.items()}
    rec |= {f"eval/gate/{t}": v for t, v in gates.items()}
    rec["eval/shared"] = shared
    return rec


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("name", ["mmoe", "omoe"])
@pytest.mark.parametrize("user_only", [False, True])
def test_same_weights_outputs_and_gradients_as_the_reference(
    name: str, variant: str, user_only: bool
) -> None:
    ctx = _ctx(name, variant)
    torch.manual_seed(123)
    arch = get_architecture(name)(ctx)
    torch.manual_seed(123)
    ref = _Reference(ctx, per_task=name == "mmoe")
    got, want = _run(arch, user_only), _run(ref, user_only)
    assert got.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0, msg=k)


@pytest.mark.parametrize("name", ["mmoe", "omoe"])
def test_a_reference_state_dict_loads_strictly(name: str) -> None:
    ctx = _ctx(name, "transformer")
    torch.manual_seed(1)
    ref = _Reference(ctx, per_task=name == "mmoe")
    arch: Architecture = get_architecture(name)(ctx)
    arch.load_state_dict(ref.state_dict(), strict=True)
    for k, v in ref.state_dict().items():
        assert torch.equal(arch.state_dict()[k], v), k


def test_state_dict_keys_are_those_of_saved_models() -> None:
    gates = {
        "mmoe": [f"gates.{t}.linear.{p}" for t in TASKS for p in ("weight", "bias")],
        "omoe": ["gate.linear.weight", "gate.linear.bias"],
    }
    for name, gate_keys in gates.items():
        keys = list(get_architecture(name)(_ctx(name, "mlp")).state_dict())
        assert keys == [
            "experts.weights.0",
            "experts.weights.1",
            "experts.biases.0",
            "experts.biases.1",
            *gate_keys,
            *[f"towers.{t}.net.0.{p}" for t in TASKS for p in ("weight", "bias")],
        ]
