"""The architecture contract and the layers every architecture builds on: bottom, towers."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import ClassVar

from torch import Tensor, nn

from mtrs.config.models import LayerConfig, ModelConfig
from mtrs.errors import MtrsUserError
from mtrs.layers.embedding import InputLayout
from mtrs.layers.folded import Features, FoldedInput
from mtrs.layers.mlp import MLP
from mtrs.layers.task_attention import TaskAttention, TaskTower
from mtrs.layers.tokens import TokenEncoder


@dataclass(frozen=True)
class ArchContext:
    """What an architecture is built from: the input layout, the task names and ``[model]``."""

    layout: InputLayout
    task_names: tuple[str, ...]
    cfg: ModelConfig


@dataclass
class ArchOutput:
    """Per-task vectors, the shared representation Z (if any) and gate weights (if any).

    Shape:
        tasks[name]: [B, m_i]; shared: [B, k]; gates[name]: [B, n_experts].
    """

    tasks: dict[str, Tensor]
    shared: Tensor | None = None
    gates: dict[str, Tensor] = field(default_factory=dict)


class Architecture(nn.Module):
    """Base class: maps the flat input ``x`` to one vector per task.

    Subclasses are built from an :class:`ArchContext` (``get_architecture(name)(ctx)``), set
    ``out_dims`` (task → width) and ``shared_dim`` (width of Z, or None), and implement
    :meth:`forward`. ``hard_parallel`` architectures are built once per task, each
    with its own embeddings (the model builder handles that).
    """

    hard_parallel: ClassVar[bool] = False
    requires_relation: ClassVar[str | None] = None

    def __init__(self) -> None:
        super().__init__()
        self.out_dims: dict[str, int] = {}
        self.shared_dim: int | None = None

    def forward(
        self, x: Features, user_only: bool = False, tasks: Collection[str] | None = None
    ) -> ArchOutput:
        """One vector per task.

        Args:
            x: The flat input [B, d], or (eval mode, split scoring) its
                :class:`~mtrs.layers.folded.FoldedInput` for the layers that
                :meth:`input_layers` names.
            user_only: The input holds the user side only (user-scoped tasks).
            tasks: The tasks whose vectors are wanted (default: every task). The others'
                task-specific layers (towers, gates, branches) are not run, and their
                vectors and gates are absent from the output. The wanted tasks' values
                are those of the full pass (up to float rounding where their gates are
                stacked into a narrower matmul).
        """
        raise NotImplementedError

    def input_layers(self, tasks: Collection[str] | None = None) -> list[nn.Module] | None:
        """The layers that read ``x`` in a full-row pass for ``tasks``, each an
        :class:`~mtrs.layers.folded.InputMap`; None when something else reads ``x`` (a
        Transformer bottom, a layer without weights), so ``x`` cannot be folded."""
        return None

    def wanted(self, tasks: Collection[str] | None) -> list[str]:
        """The architecture's tasks, in its order, that ``tasks`` asks for (None: all)."""
        return list(self.out_dims) if tasks is None else [t for t in self.out_dims if t in tasks]

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters used by more than one task (for gradient diagnostics and PCGrad)."""
        return []


@dataclass
class BottomEncoding:
    """What a :class:`BottomLayer` computed for a batch.

    Shape:
        vector: [B, out_dim]; tokens: [B, 1 + T, d_model] and pad: [B, 1 + T] (True =
        ignored) when the layer is a Transformer, else None.
    """

    vector: Tensor
    tokens: Tensor | None = None
    pad: Tensor | None = None


class BottomLayer(nn.Module):
    """The bottom of a network: an MLP on ``x``, or a Transformer over feature tokens + MLP.

    Shared when one instance serves every task (shared_bottom, omoe, mmoe, ple); one per
    task in ESMM, where each task has a bottom of its own. Its settings are ``model.shared``
    either way.

    Args:
        layout: Where the fields sit in ``x``.
        cfg: The layer settings.
        with_mlp: False leaves out the MLP (``x`` itself, or the Transformer's pooled tokens,
            is the output); expert architectures use this and put their experts on top.

    Shape:
        x [B, d] → [B, out_dim].
    """

    def __init__(self, layout: InputLayout, cfg: LayerConfig, with_mlp: bool = True) -> None:
        super().__init__()
        self.encoder: TokenEncoder | None = None
        width = layout.dim
        if cfg.type == "transformer":
            self.encoder = TokenEncoder(layout, cfg)
            width = self.encoder.out_dim
        self.mlp = MLP(width, cfg.hidden if with_mlp else [], cfg.dropout)
        self.out_dim = self.mlp.out_dim

    def foldable(self) -> bool:
        """Whether ``x`` goes straight into the MLP's first layer (see :meth:`input_layers`)."""
        return self.encoder is None and len(self.mlp.net) > 0

    def encode(self, x: Features, user_only: bool = False) -> BottomEncoding:
        """The output vector and, for a Transformer, the encoded tokens and their mask."""
        if self.encoder is None or isinstance(x, FoldedInput):
            return BottomEncoding(self.mlp(x))
        tokens, pad = self.encoder.tokens(x, user_only)
        return BottomEncoding(self.mlp(self.encoder.pool(tokens, pad)), tokens, pad)

    def forward(self, x: Features, user_only: bool = False) -> Tensor:
        return self.encode(x, user_only).vector


def expert_input(
    bottom: BottomLayer, x: Features, user_only: bool
) -> tuple[Features, BottomEncoding | None]:
    """What an expert architecture's experts and gates read, and the bottom's encoding.

    ``bottom`` is built without an MLP: the experts read ``x`` itself (a folded ``x`` as
    it is; no encoding then) or the Transformer's pooled tokens.
    """
    if isinstance(x, FoldedInput):
        return x, None
    enc = bottom.encode(x, user_only)
    return enc.vector, enc


def build_towers(ctx: ArchContext, in_dim: int) -> nn.ModuleDict:
    """One :class:`TaskTower` per task reading ``in_dim`` wide inputs.

    With ``model.tower.type = "transformer"`` each tower also attends over the bottom
    layer's tokens with its own query, which needs a Transformer bottom
    (``model.shared.type = "transformer"``).

    Raises:
        MtrsUserError: Transformer towers over an MLP bottom.
    """
    cfg = ctx.cfg
    if cfg.tower.type == "transformer" and cfg.shared.type != "transformer":
        raise MtrsUserError(
            "model.tower.type: 'transformer' needs model.shared.type = 'transformer' "
            f"(a Transformer task layer attends over the shared feature tokens; got "
            f"'{cfg.shared.type}')"
        )
    towers = {}
    for t in ctx.task_names:
        attention = (
            TaskAttention(cfg.shared.d_model, cfg.shared.heads, cfg.tower.dropout)
            if cfg.tower.type == "transformer"
            else None
        )
        towers[t] = TaskTower(in_dim, cfg.tower, attention)
    return nn.ModuleDict(towers)


def tower_widths(towers: nn.ModuleDict) -> dict[str, int]:
    """Output width of each task's tower."""
    return {t: int(m.out_dim) for t, m in towers.items()}  # type: ignore[arg-type]
