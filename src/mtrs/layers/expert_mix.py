"""Gate-weighted mixing of expert outputs, fast on the expert pool's feature-major layout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from mtrs.layers.plain import plain_ops_enabled


class _FeatureMajorMix(torch.autograd.Function):
    """Every gate's mix of ``[E, d, B]`` experts, with gradients laid out like their inputs.

    Plain autograd would hand back each ``[B, d]`` result's gradient as a transposed view
    and sum the tasks' ``[E, d, B]`` expert gradients in extra passes; every later pass over
    the experts (ReLU backward, the expert matmuls) would then run on mismatched strides at
    a fraction of its speed. Here the expert gradient is written once, expert by expert,
    from all gates together, and every temporary is one expert's ``[d, B]`` slice.
    """

    @staticmethod
    def forward(ctx: Any, fm: Tensor, wt: Tensor) -> tuple[Tensor, ...]:
        # fm [E, d, B]; wt [T, E, B], one row of gate weights per task.
        ctx.save_for_backward(fm, wt)
        # Expert by expert, so that each [d, B] slice is read once, while in cache, by all gates.
        outs = [fm[0] * wt[t, 0] for t in range(wt.shape[0])]
        for e in range(1, fm.shape[0]):
            for t, out in enumerate(outs):
                out.addcmul_(fm[e], wt[t, e])
        return tuple(out.T for out in outs)  # each [B, d]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
        fm, wt = ctx.saved_tensors
        live = [(t, g.T.contiguous()) for t, g in enumerate(grads) if g is not None]
        grad_fm = grad_wt = None
        if ctx.needs_input_grad[0]:
            grad_fm = torch.zeros_like(fm) if not live else torch.empty_like(fm)
        if ctx.needs_input_grad[1]:
            grad_wt = torch.zeros_like(wt)
        # Expert by expert: each [d, B] slice of fm and of its gradient is touched once.
        for e in range(fm.shape[0]):
            for i, (t, gt) in enumerate(live):
                if grad_fm is not None:
                    if i == 0:
                        torch.mul(gt, wt[t, e], out=grad_fm[e])
                    else:
                        grad_fm[e].addcmul_(gt, wt[t, e])
                if grad_wt is not None:
                    torch.sum(fm[e] * gt, 0, out=grad_wt[t, e])
        return grad_fm, grad_wt


def mix_many(experts: Tensor, weights: Sequence[Tensor]) -> list[Tensor]:
    """Each gate's weighted sum of the expert outputs.

    Shape:
        experts [B, E, d], each weights [B, E] → each [B, d].
    """
    ws = [w.to(experts.dtype) for w in weights]
    fm = experts.permute(1, 2, 0)
    if fm.is_contiguous() and not plain_ops_enabled():
        # ExpertPool's feature-major output ([E, d, B] in memory).
        wt = torch.stack([w.T for w in ws])  # [T, E, B]
        return list(_FeatureMajorMix.apply(fm, wt))
    # A broadcast multiply and sum: einsum would lower this to B tiny matmuls.
    return [(w.unsqueeze(-1) * experts).sum(1) for w in ws]


def mix(experts: Tensor, weights: Tensor) -> Tensor:
    """The gate-weighted sum of expert outputs.

    Shape:
        experts [B, E, d], weights [B, E] → [B, d].
    """
    return mix_many(experts, [weights])[0]


def concat_experts(parts: Sequence[Tensor]) -> Tensor:
    """Expert outputs of several pools side by side, ``[B, E1 + E2 + …, d]``.

    Concatenates in the pools' feature-major memory order when every part has it, so that
    :func:`mix_many` on the result keeps its fast path (``torch.cat`` on the ``[B, E, d]``
    views would build a batch-major copy, and gather it element by element).
    """
    fms = [p.permute(1, 2, 0) for p in parts]
    if all(fm.is_contiguous() for fm in fms):
        return torch.cat(fms, 0).permute(2, 0, 1)
    return torch.cat(list(parts), 1)


def expert_mean(experts: Tensor) -> Tensor:
    """The plain mean of expert outputs, reduced in the pool's memory order.

    Shape:
        experts [B, E, d] → [B, d].
    """
    fm = experts.permute(1, 2, 0)
    if fm.is_contiguous():
        return fm.mean(0).T
    return experts.mean(dim=1)
