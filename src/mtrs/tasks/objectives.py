"""Auxiliary objectives on the shared representation Z (the design's L_shared)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtrs.arch.base import Architecture, ArchOutput
from mtrs.data.batch import Batch
from mtrs.errors import MtrsUserError
from mtrs.layers.embedding import InputLayout

if TYPE_CHECKING:
    from mtrs.tasks.task import Task


@dataclass
class ObjectiveInput:
    """Everything an auxiliary objective may look at for one batch."""

    x: Tensor
    out: ArchOutput
    arch: Architecture
    batch: Batch


@dataclass(frozen=True)
class ObjectiveContext:
    """What an objective is built from: the input layout, the width of Z and the tasks."""

    layout: InputLayout
    shared_dim: int
    tasks: tuple[Task, ...] = ()

    @property
    def input_dim(self) -> int:
        """Width d of the flat input x."""
        return self.layout.dim


class Reconstruction(nn.Module):
    """Reconstruct the (detached) input vector x from Z through a linear decoder; MSE.

    Detaching x keeps the objective from shrinking the embeddings to make reconstruction
    trivially easy: it can only shape Z.
    """

    def __init__(self, ctx: ObjectiveContext) -> None:
        super().__init__()
        self.decoder = nn.Linear(ctx.shared_dim, ctx.input_dim)

    def forward(self, inp: ObjectiveInput) -> Tensor:
        assert inp.out.shared is not None
        return F.mse_loss(self.decoder(inp.out.shared), inp.x.detach())


class Contrastive(nn.Module):
    """Self-supervised contrastive learning on Z (Yao et al., CIKM 2021).

    Two views of each row are made by random feature masking: every field of x (one feature's
    slice, see :class:`InputLayout`) is zeroed with probability ``mask_rate``, independently
    per row and view. Both views go through the architecture; their shared representations are
    mapped by a small MLP projection head, L2-normalised, and scored with InfoNCE over the
    in-batch negatives at temperature ``τ``, symmetrised over the two directions. Unlike
    reconstruction the embeddings are trained too: that is the point of the method (it helps
    rarely seen items), and normalisation keeps it from collapsing them.

    Args:
        ctx: Input layout and width of Z.
        mask_rate: Probability that a field is masked in a view.
        temperature: Softmax temperature τ.
    """

    field_of: Tensor

    def __init__(
        self, ctx: ObjectiveContext, mask_rate: float = 0.3, temperature: float = 0.1
    ) -> None:
        super().__init__()
        k = ctx.shared_dim
        self.head = nn.Sequential(nn.Linear(k, k), nn.ReLU(), nn.Linear(k, k))
        self.mask_rate = mask_rate
        self.temperature = temperature
        field_of = torch.zeros(ctx.input_dim, dtype=torch.long)
        for i, f in enumerate(ctx.layout.fields):
            field_of[f.start : f.stop] = i
        self.register_buffer("field_of", field_of, persistent=False)
        self.num_fields = max(len(ctx.layout.fields), 1)

    def view(self, x: Tensor) -> Tensor:
        """x with a random subset of its fields zeroed in each row.

        Shape:
            x [B, d] → [B, d].
        """
        keep = torch.rand(x.shape[0], self.num_fields, device=x.device) >= self.mask_rate
        return x * keep[:, self.field_of].to(x.dtype)

    def forward(self, inp: ObjectiveInput) -> Tensor:
        z1 = inp.arch(self.view(inp.x), tasks=()).shared
        z2 = inp.arch(self.view(inp.x), tasks=()).shared
        assert z1 is not None and z2 is not None
        h1 = F.normalize(self.head(z1).float(), dim=-1)
        h2 = F.normalize(self.head(z2).float(), dim=-1)
        logits = h1 @ h2.T / self.temperature
        target = torch.arange(logits.shape[0], device=logits.device)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


class DeepSupervision(nn.Module):
    """Each task also predicted from Z by a linear probe; the loss is the tasks' mean.

    The probe's loss is the task's own masked loss (binary, regression or multiclass), so Z
    is pushed to carry what each task needs directly rather than only through the towers.
    User-scoped tasks are probed from the Z of the full input. Tasks without a direct loss
    (ESMM's conditional task) get no probe: their labels exist only on a biased subset.

    Args:
        ctx: Width of Z and the tasks.
    """

    def __init__(self, ctx: ObjectiveContext) -> None:
        super().__init__()
        self.tasks = [t for t in ctx.tasks if t.direct_loss]
        self.probes = nn.ModuleDict(
            {t.name: nn.Linear(ctx.shared_dim, t.output_dim) for t in self.tasks}
        )

    def forward(self, inp: ObjectiveInput) -> Tensor:
        z = inp.out.shared
        assert z is not None
        if not self.tasks:
            return z.sum() * 0.0
        b = inp.batch
        losses = [t.loss(self.probes[t.name](z).float(), b.labels, b.mask) for t in self.tasks]
        return torch.stack(losses).mean()


ObjectiveFactory = Callable[[ObjectiveContext], nn.Module]

SHARED_OBJECTIVES: dict[str, ObjectiveFactory] = {
    "reconstruction": Reconstruction,
    "contrastive": Contrastive,
    "deep_supervision": DeepSupervision,
}


def build_objective(
    name: str, layout: InputLayout, shared_dim: int | None, tasks: Sequence[Task]
) -> nn.Module | None:
    """The configured auxiliary objective, or None when the architecture has no shared Z.

    Args:
        name: ``model.shared_objective``.
        layout: Layout of the flat input x.
        shared_dim: Width of Z (None: the architecture has no shared representation).
        tasks: The model's tasks.
    """
    if shared_dim is None:
        return None
    try:
        factory = SHARED_OBJECTIVES[name]
    except KeyError:
        known = ", ".join(sorted(SHARED_OBJECTIVES))
        raise MtrsUserError(
            f"model.shared_objective: unknown objective '{name}' (known: {known})"
        ) from None
    return factory(ObjectiveContext(layout, shared_dim, tuple(tasks)))
