"""Mixture-of-experts building blocks: a batched pool of MLP experts and a softmax gate."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import cast

import torch
from torch import Tensor, nn

from mtrs.layers.folded import Features, FoldedInput
from mtrs.layers.fused_experts import SharedInputExperts
from mtrs.layers.mlp import MLP
from mtrs.layers.plain import plain_ops_enabled


class ExpertPool(nn.Module):
    """``num_experts`` MLP experts of equal shape, evaluated as one batched operation.

    Each layer's weights are stacked into one ``[E, in, out]`` tensor, so all experts run
    in one matmul per layer instead of a Python loop over experts: 8 experts cost about one
    8× wider layer. The first layer is stored as ``[in, E, out]`` so that, on an input
    shared by all experts, it is a single matmul against an ``[in, E·out]`` view; deeper
    layers (and per-expert inputs) use ``baddbmm``. Activations are kept feature-major,
    ``[E, width, B]`` in memory, and the result is a ``[B, E, d]`` view of that memory:
    :func:`~mtrs.layers.expert_mix.mix_many` reads it in that order. In fp32 training
    without dropout the pool runs :class:`~mtrs.layers.fused_experts.SharedInputExperts`,
    a hand-written forward and backward with the same arithmetic and less memory traffic.
    Every expert is Linear → ReLU (→ Dropout) per hidden layer, exactly like
    :class:`~mtrs.layers.mlp.MLP` (and initialised like ``nn.Linear``); :meth:`from_mlps`
    loads separate MLPs' weights.

    When the shared layer is a Transformer, the architectures feed the pool the
    TokenEncoder's pooled vector: the tokens are encoded once and the experts are MLPs on
    that vector (one Transformer per expert would multiply the costliest part of the
    network by the number of experts).

    Args:
        in_dim: Input width of every expert.
        hidden: Output width of each layer of an expert; empty makes each expert the identity.
        num_experts: Number of experts E.
        dropout: Dropout after each activation (0 disables).

    Shape:
        [B, in_dim] (one input for all experts) or [E, B, in_dim] (one input per expert)
        → [B, E, out_dim].
    """

    def __init__(
        self, in_dim: int, hidden: Sequence[int], num_experts: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if num_experts < 1:
            raise ValueError("an expert pool needs at least one expert")
        self.in_dim = in_dim
        self.num_experts = num_experts
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        width = in_dim
        for k, h in enumerate(hidden):
            bound = 1.0 / math.sqrt(width)
            w = torch.empty(num_experts, width, h).uniform_(-bound, bound)
            b = torch.empty(num_experts, h).uniform_(-bound, bound)
            if k == 0:
                w = w.permute(1, 0, 2).contiguous()  # [in, E, out]
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))
            width = h
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out_dim = width

    @classmethod
    def from_mlps(cls, mlps: Sequence[MLP]) -> ExpertPool:
        """A pool whose expert ``e`` computes exactly what ``mlps[e]`` computes.

        Raises:
            ValueError: When the MLPs are not all of the same shape.
        """
        if not mlps:
            raise ValueError("from_mlps needs at least one MLP")
        linears = [[m for m in mlp.net if isinstance(m, nn.Linear)] for mlp in mlps]
        shapes = [[(lin.in_features, lin.out_features) for lin in ls] for ls in linears]
        if any(s != shapes[0] for s in shapes) or not shapes[0]:
            raise ValueError("from_mlps needs MLPs of one and the same, non-empty shape")
        drops = [m.p for m in mlps[0].net if isinstance(m, nn.Dropout)]
        pool = cls(
            shapes[0][0][0], [o for _, o in shapes[0]], len(mlps), drops[0] if drops else 0.0
        )
        with torch.no_grad():
            for k, (w, b) in enumerate(zip(pool.weights, pool.biases, strict=True)):
                stacked = torch.stack([ls[k].weight.T for ls in linears])
                w.copy_(stacked.permute(1, 0, 2) if k == 0 else stacked)
                b.copy_(torch.stack([ls[k].bias for ls in linears]))
        return pool

    def _params(self) -> list[Tensor]:
        return [p for pair in zip(self.weights, self.biases, strict=True) for p in pair]

    def _fused_ok(self, x: Tensor) -> bool:
        # The hand-written backward covers fp32 training without dropout; everything else
        # (inference, autocast, dropout) takes the autograd path, which computes the same.
        return (
            not plain_ops_enabled()
            and torch.is_grad_enabled()
            and self.weights[0].requires_grad
            and isinstance(self.drop, nn.Identity)
            and x.dtype == torch.float32
            and self.weights[0].dtype == torch.float32
            and not torch.is_autocast_enabled(x.device.type)
        )

    def input_map(self) -> tuple[Tensor, Tensor]:
        """The first layer of every expert as one map: weight [in, E·h1], bias [E·h1].

        Raises:
            ValueError: The experts have no layer (each is the identity).
        """
        if not len(self.weights):
            raise ValueError("an expert pool without layers has no input map")
        w0, b0 = self.weights[0], self.biases[0]
        return w0.reshape(w0.shape[0], -1), b0.reshape(-1)

    def forward(self, x: Features) -> Tensor:
        if isinstance(x, FoldedInput):  # the first layer's pre-activations are given
            first = torch.relu_(x.project(self).t())  # [E·h1, B], its own slot: in place
            h = self.drop(first).view(self.num_experts, -1, first.shape[1])
            return self._deeper(h, 1)
        # The activations are kept feature-major, [E, width, B]: every layer is then one
        # plain GEMM on contiguous or transposed operands, forward and backward, so autograd
        # never has to copy a transposed activation or gradient (with [B, E, width] it copied
        # two 16 MB tensors per step on the reference workload), and ReLU runs in place.
        if x.dim() == 2:
            if not len(self.weights):
                return x.unsqueeze(1).expand(-1, self.num_experts, -1)
            if self._fused_ok(x):
                fm: Tensor = SharedInputExperts.apply(x, *self._params())
                return fm.permute(2, 0, 1)
            w0, b0 = self.weights[0], self.biases[0]
            # One matmul against the experts' concatenated weights, bias fused: [E·out, B].
            flat = torch.addmm(b0.reshape(-1, 1), w0.reshape(w0.shape[0], -1).T, x.T)
            h = self.drop(torch.relu_(flat)).view(self.num_experts, -1, x.shape[0])
            start = 1
        else:
            if x.shape[0] != self.num_experts:
                raise ValueError(
                    f"per-expert input has {x.shape[0]} rows of experts, pool has "
                    f"{self.num_experts}"
                )
            if not len(self.weights):
                return x.transpose(0, 1)
            h, start = x.transpose(1, 2), 0
        return self._deeper(h, start)

    def _deeper(self, h: Tensor, start: int) -> Tensor:
        """Layers ``start``… on feature-major activations [E, width, B] → [B, E, d]."""
        for k in range(start, len(self.weights)):
            w, b = self.weights[k], self.biases[k]
            if k == 0:
                w = w.transpose(0, 1)  # stored [in, E, out] → [E, in, out]
            h = self.drop(torch.relu_(torch.baddbmm(b.unsqueeze(-1), w.transpose(1, 2), h)))
        return h.permute(2, 0, 1)


class Gate(nn.Module):
    """A softmax gate: one weight per expert for each row, summing to 1.

    Args:
        in_dim: Width of the gate's input.
        num_experts: Number of experts it mixes.

    Shape:
        [B, in_dim] → [B, num_experts].
    """

    def __init__(self, in_dim: int, num_experts: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, num_experts)

    def input_map(self) -> tuple[Tensor, Tensor]:
        """The gate's logit map: weight [in, E], bias [E]."""
        return self.linear.weight.t(), self.linear.bias

    def forward(self, x: Features) -> Tensor:
        logits = x.project(self) if isinstance(x, FoldedInput) else self.linear(x)
        return torch.softmax(logits, dim=-1)


def stacked_gates(gates: Mapping[str, nn.Module], x: Features) -> dict[str, Tensor]:
    """Every :class:`Gate` in ``gates`` on the same input, as one matmul over stacked weights.

    Same values as calling each gate; one ``[in, T·E]`` matmul and one input gradient
    instead of T narrow ones (each only E columns wide) and their sum. A folded input
    already holds every gate's logits.
    """
    named: dict[str, Gate] = {t: cast(Gate, g) for t, g in gates.items()}
    if len(named) < 2 or isinstance(x, FoldedInput):
        return {t: g(x) for t, g in named.items()}
    weight = torch.cat([g.linear.weight for g in named.values()])
    bias = torch.cat([g.linear.bias for g in named.values()])
    logits = torch.nn.functional.linear(x, weight, bias)
    sizes = [g.linear.out_features for g in named.values()]
    return {
        t: torch.softmax(part, dim=-1)
        for t, part in zip(named, logits.split(sizes, dim=-1), strict=True)
    }
