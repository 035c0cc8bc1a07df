"""Auxiliary objectives on the shared representation Z (the design's L_shared)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from mtrs.arch.base import Architecture, ArchOutput
from mtrs.data.batch import Batch
from mtrs.errors import MtrsUserError


@dataclass
class ObjectiveInput:
    """Everything an auxiliary objective may look at for one batch."""

    x: Tensor
    out: ArchOutput
    arch: Architecture
    batch: Batch


class Reconstruction(nn.Module):
    """Reconstruct the (detached) input vector x from Z through a linear decoder; MSE.

    Detaching x keeps the objective from shrinking the embeddings to make reconstruction
    trivially easy: it can only shape Z.
    """

    def __init__(self, input_dim: int, shared_dim: int, num_tasks: int) -> None:
        super().__init__()
        self.decoder = nn.Linear(shared_dim, input_dim)

    def forward(self, inp: ObjectiveInput) -> Tensor:
        assert inp.out.shared is not None
        return F.mse_loss(self.decoder(inp.out.shared), inp.x.detach())


ObjectiveFactory = Callable[[int, int, int], nn.Module]

SHARED_OBJECTIVES: dict[str, ObjectiveFactory] = {
    "reconstruction": Reconstruction,
}


def build_objective(
    name: str, input_dim: int, shared_dim: int | None, num_tasks: int
) -> nn.Module | None:
    """The configured auxiliary objective, or None when the architecture has no shared Z."""
    if shared_dim is None:
        return None
    try:
        factory = SHARED_OBJECTIVES[name]
    except KeyError:
        known = ", ".join(sorted(SHARED_OBJECTIVES))
        raise MtrsUserError(
            f"model.shared_objective: unknown objective '{name}' (known: {known})"
        ) from None
    return factory(input_dim, shared_dim, num_tasks)
