"""A hand-written forward and backward for a pool of ReLU MLP experts on one shared input."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


class SharedInputExperts(torch.autograd.Function):
    """E ReLU MLP experts on one input ``x``, activations kept feature-major ``[E, width, B]``.

    The same arithmetic as autograd on :class:`~mtrs.layers.experts.ExpertPool`'s plain
    path, with the memory traffic of the wide first layer (``E·h1`` columns per row) cut
    down, because on a CPU the passes over that ``[E·h1, B]`` activation cost as much as a
    third of the step:

    * the first layer's bias rides in the matmul as an extra input column of ones, so no
      pass copies the bias into the output and its gradient falls out of the weight
      gradient's matmul;
    * ReLU runs in place in the forward, and its backward masks the gradient in place
      (the gradient buffers below the top layer are this function's own);
    * every matmul, forward and backward, reads contiguous or transposed operands (no
      layout copies).

    Args (of :meth:`apply`):
        x: ``[B, in]`` input shared by all experts.
        *params: Per layer, the weight then the bias: layer 0 ``[in, E, h1]``, ``[E, h1]``;
            layer ``k`` ``[E, h_{k-1}, h_k]``, ``[E, h_k]``.

    Returns:
        ``[E, h_last, B]``, the last layer's activations.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, *params: Tensor) -> Tensor:
        w0, b0 = params[0], params[1]
        n_in, e, h1 = w0.shape
        ones = x.new_ones(x.shape[0], 1)
        x1 = torch.cat([x, ones], 1)  # [B, in + 1]
        w0b = torch.cat([w0.reshape(n_in, e * h1), b0.reshape(1, e * h1)])  # [in + 1, E·h1]
        act = torch.mm(w0b.T, x1.T).relu_()  # [E·h1, B]
        acts = [act.view(e, h1, -1)]
        for k in range(2, len(params), 2):
            w, b = params[k], params[k + 1]
            acts.append(torch.baddbmm(b.unsqueeze(-1), w.transpose(1, 2), acts[-1]).relu_())
        ctx.save_for_backward(x1, w0b, *params[2::2], *acts)
        ctx.layers = len(params) // 2
        return acts[-1]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        saved = ctx.saved_tensors
        layers: int = ctx.layers
        x1, w0b = saved[0], saved[1]
        weights = saved[2 : 2 + layers - 1]
        acts = saved[1 + layers :]
        grads: list[Tensor | None] = [None] * (2 * layers)
        # The incoming gradient belongs to autograd: mask it into a new buffer once.
        g = torch.ops.aten.threshold_backward(grad.contiguous(), acts[-1], 0)
        for k in range(layers - 1, 0, -1):
            grads[2 * k + 1] = g.sum(2)
            grads[2 * k] = torch.bmm(acts[k - 1], g.transpose(1, 2))
            g = torch.bmm(weights[k - 1], g)  # [E, h_{k-1}, B], ours: mask in place
            torch.ops.aten.threshold_backward.grad_input(g, acts[k - 1], 0, grad_input=g)
        e, h1, b = acts[0].shape
        g0 = g.view(e * h1, b)
        gw = torch.mm(x1.T, g0.T)  # [in + 1, E·h1]; its last row is the bias gradient
        n_in = gw.shape[0] - 1
        grads[0] = gw[:n_in].view(n_in, e, h1)
        grads[1] = gw[n_in].view(e, h1)
        gx = torch.mm(w0b[:n_in], g0).T if ctx.needs_input_grad[0] else None
        return (gx, *grads)
