"""Gradient arithmetic for the gradient-based task weightings (GradNorm, PCGrad, diagnostics)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

_EPS = 1e-12


def trainable(params: list[nn.Parameter]) -> list[nn.Parameter]:
    """The parameters that take gradients (frozen ones are left out of every computation)."""
    return [p for p in params if p.requires_grad]


def last_shared_weight(shared: list[nn.Parameter]) -> nn.Parameter | None:
    """The last shared parameter with ≥ 2 dimensions: the weight of the last shared layer.

    GradNorm measures gradient norms there only, because it is cheap and the last shared
    layer is where the tasks' gradients meet (Chen et al., 2018, section 3.2).
    """
    return next((p for p in reversed(shared) if p.dim() >= 2 and p.requires_grad), None)


def flat_grad(loss: Tensor, params: list[nn.Parameter]) -> tuple[Tensor, list[bool]]:
    """Gradient of ``loss`` w.r.t. ``params``, flattened into one vector; the graph is kept.

    Returns:
        The gradient [Σ numel] (zeros where a parameter is not reached) and, per parameter,
        whether ``loss`` reaches it at all.
    """
    if not loss.requires_grad:
        zeros = torch.cat([torch.zeros_like(p).reshape(-1) for p in params])
        return zeros, [False] * len(params)
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    used = [g is not None for g in grads]
    flat = torch.cat(
        [
            (g if g is not None else torch.zeros_like(p)).reshape(-1)
            for g, p in zip(grads, params, strict=True)
        ]
    )
    return flat, used


def assign_flat(params: list[nn.Parameter], flat: Tensor, used: list[bool]) -> None:
    """Write a flat gradient into ``p.grad`` (replacing it); parameters nobody reaches keep None."""
    offset = 0
    for p, u in zip(params, used, strict=True):
        n = p.numel()
        if u:
            p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def project_conflicting(grads: list[Tensor], generator: torch.Generator) -> Tensor:
    """PCGrad's combined gradient (Yu et al., NeurIPS 2020, Algorithm 1).

    Each task's gradient ``g_i`` is projected, against the other tasks in a random order, onto
    the normal plane of every ``g_j`` it conflicts with (``g_i · g_j < 0``):
    ``g_i ← g_i − (g_i · g_j) / ‖g_j‖² · g_j``. The projected gradients are summed. The
    projection is written without a data-dependent branch so that it never waits for the GPU.

    Args:
        grads: One flat gradient per task, all the same length.
        generator: CPU random generator for the projection order (seeded: re-runs repeat).

    Returns:
        The sum of the projected gradients.
    """
    n = len(grads)
    sq = [g.dot(g) for g in grads]
    total = torch.zeros_like(grads[0])
    for i in range(n):
        gi = grads[i].clone()
        for j in torch.randperm(n, generator=generator).tolist():
            if j == i:
                continue
            dot = gi.dot(grads[j])
            coef = torch.where(dot < 0, dot / sq[j].clamp_min(_EPS), torch.zeros_like(dot))
            gi = gi - coef * grads[j]
        total = total + gi
    return total


def gradnorm_objective(
    weights: Tensor, norms: Tensor, losses: Tensor, initial: Tensor, alpha: float
) -> Tensor:
    """GradNorm's L_grad = Σ_i |G_i − Ḡ · r_i^α| (Chen et al., ICML 2018, eq. 2).

    ``G_i = w_i · ‖∇_W L_i‖`` is the norm of the weighted task gradient on the last shared
    layer; ``r_i = L̃_i / mean(L̃)`` with ``L̃_i = L_i(t) / L_i(0)`` is the task's relative
    inverse training rate. The target ``Ḡ · r_i^α`` is a constant, as in the paper.

    Shape:
        weights, norms, losses, initial: [T] → scalar. Only ``weights`` carries a gradient.
    """
    g = weights * norms.detach()
    ratio = losses.detach() / initial.clamp_min(_EPS)
    r = ratio / ratio.mean().clamp_min(_EPS)
    target = (g.mean() * r.pow(alpha)).detach()
    return (g - target).abs().sum()


def pairwise_cosine(names: list[str], grads: list[Tensor]) -> dict[str, float]:
    """Cosine similarity of every pair of task gradients, keyed ``"a|b"`` in task order.

    Pairs where one gradient is zero (a task with no labelled row in the batch) are left out:
    their cosine is undefined.
    """
    stacked = torch.stack(grads).float()
    norms = stacked.norm(dim=1)
    gram = stacked @ stacked.T
    cos = gram / (norms[:, None] * norms[None, :]).clamp_min(_EPS)
    cos_l, norms_l = cos.tolist(), norms.tolist()
    out: dict[str, float] = {}
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            if norms_l[i] > 0 and norms_l[j] > 0:
                out[f"{names[i]}|{names[j]}"] = max(-1.0, min(1.0, cos_l[i][j]))
    return out
