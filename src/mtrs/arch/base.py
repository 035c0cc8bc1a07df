"""The architecture contract and the shared-layer factory every architecture uses."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

from mtrs.config.models import LayerConfig, ModelConfig
from mtrs.layers.embedding import InputLayout
from mtrs.layers.mlp import MLP
from mtrs.layers.tokens import TokenEncoder


@dataclass(frozen=True)
class ArchContext:
    """What an architecture is built from: the input layout, the task names and ``[model]``."""

    layout: InputLayout
    task_names: tuple[str, ...]
    cfg: ModelConfig
    relations: tuple[str, ...] = ()


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

    Subclasses set ``out_dims`` (task → width) and ``shared_dim`` (width of Z, or None), and
    implement :meth:`forward`. ``hard_parallel`` architectures are built once per task, each
    with its own embeddings (the model builder handles that).
    """

    hard_parallel: bool = False
    requires_relation: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self.out_dims: dict[str, int] = {}
        self.shared_dim: int | None = None

    def forward(self, x: Tensor, user_only: bool = False) -> ArchOutput:
        raise NotImplementedError

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters used by more than one task (for gradient diagnostics and PCGrad)."""
        return []


class SharedLayer(nn.Module):
    """The task-shared layer: an MLP on ``x`` or a Transformer over feature tokens + MLP.

    Shape:
        x [B, d] → [B, out_dim].
    """

    def __init__(self, layout: InputLayout, cfg: LayerConfig) -> None:
        super().__init__()
        self.encoder: TokenEncoder | None = None
        width = layout.dim
        if cfg.type == "transformer":
            self.encoder = TokenEncoder(layout, cfg)
            width = self.encoder.out_dim
        self.mlp = MLP(width, cfg.hidden, cfg.dropout)
        self.out_dim = self.mlp.out_dim

    def forward(self, x: Tensor, user_only: bool = False) -> Tensor:
        if self.encoder is not None:
            x = self.encoder(x, user_only)
        return self.mlp(x)  # type: ignore[no-any-return]
