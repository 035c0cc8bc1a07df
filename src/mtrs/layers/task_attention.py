"""Transformer task layers: a task's own query token attends over the shared feature tokens."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtrs.config.models import TowerConfig
from mtrs.layers.mlp import MLP


class TaskAttention(nn.Module):
    """One learned query token reading the shared token outputs with multi-head attention.

    Each task owns one of these, so each task takes its own weighted view of the feature
    tokens the shared Transformer produced (the design's Transformer task-specific layer).

    Args:
        d_model: Token width.
        heads: Attention heads (falls back to 1 when it does not divide ``d_model``).
        dropout: Attention dropout.

    Shape:
        tokens [B, N, d_model], pad [B, N] (True = ignored) → [B, d_model].
    """

    def __init__(self, d_model: int, heads: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, d_model) * 0.02)
        heads = heads if d_model % heads == 0 else 1
        self.attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.out_dim = d_model

    def forward(self, tokens: Tensor, pad: Tensor | None = None) -> Tensor:
        q = self.query.expand(tokens.shape[0], -1, -1).to(tokens.dtype)
        out, _ = self.attn(q, tokens, tokens, key_padding_mask=pad, need_weights=False)
        return out[:, 0]


class TaskTower(nn.Module):
    """A task-specific layer: an MLP, optionally fed a :class:`TaskAttention` readout too.

    With attention, the MLP reads ``[attention over the shared tokens ; z]`` where ``z`` is
    what the architecture would give an MLP tower (the shared output, the task's expert
    mixture): the task's own view of the tokens is added without dropping what the
    architecture shares, so every parameter keeps a gradient path.

    Args:
        in_dim: Width of ``z``.
        cfg: The ``[model.tower]`` settings (hidden widths, dropout).
        attention: The task's query attention, or None for a plain MLP tower.

    Shape:
        z [B, in_dim] (+ tokens [B, N, d_model], pad [B, N]) → [B, out_dim].
    """

    def __init__(self, in_dim: int, cfg: TowerConfig, attention: TaskAttention | None) -> None:
        super().__init__()
        self.attention = attention
        width = in_dim + (attention.out_dim if attention is not None else 0)
        mlp = MLP(width, cfg.hidden, cfg.dropout)
        # Holding the MLP's layers as ``net`` keeps an MLP tower's state-dict keys those of
        # a plain MLP, so models saved before towers could be Transformers still load.
        self.net = mlp.net
        self.out_dim = mlp.out_dim

    def forward(self, z: Tensor, tokens: Tensor | None = None, pad: Tensor | None = None) -> Tensor:
        if self.attention is not None:
            if tokens is None:
                raise ValueError("a Transformer task tower needs the shared token outputs")
            z = torch.cat([self.attention(tokens, pad), z], dim=-1)
        return self.net(z)
