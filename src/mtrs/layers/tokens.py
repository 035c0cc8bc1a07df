"""Transformer encoder over feature tokens (one token per field or per feature group)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtrs.config.models import LayerConfig
from mtrs.layers.embedding import USER_SIDE, InputLayout


class TokenEncoder(nn.Module):
    """Projects feature slices of ``x`` to tokens and encodes them with self-attention.

    Each token (a field, or all fields of one group) has its own linear projection to
    ``d_model``; a learned [CLS]-like summary token is prepended and its output, flattened
    with the mean of the other tokens, is the pooled representation.

    Args:
        layout: Where the fields sit in ``x``.
        cfg: The layer settings (``d_model``, ``heads``, ``layers``, ``tokens``, ``dropout``).

    Shape:
        x [B, d] → tokens [B, 1 + T, d_model] and pooled [B, 2·d_model].
    """

    user_token: Tensor

    def __init__(self, layout: InputLayout, cfg: LayerConfig) -> None:
        super().__init__()
        if cfg.tokens == "group":
            groups: dict[str, list[tuple[int, int]]] = {}
            for f in layout.fields:
                groups.setdefault(f.group, []).append((f.start, f.stop))
            spans = list(groups.items())
        else:
            spans = [(f.group, [(f.start, f.stop)]) for f in layout.fields]
        self.index = [torch.cat([torch.arange(a, b) for a, b in parts]) for _, parts in spans]
        for i, idx in enumerate(self.index):
            self.register_buffer(f"idx_{i}", idx, persistent=False)
        self.proj = nn.ModuleList(nn.Linear(len(idx), cfg.d_model) for idx in self.index)
        user_token = torch.tensor([g in USER_SIDE for g, _ in spans])
        self.register_buffer("user_token", user_token, persistent=False)
        self.summary = nn.Parameter(torch.zeros(1, 1, cfg.d_model))
        heads = cfg.heads if cfg.d_model % cfg.heads == 0 else 1
        layer = nn.TransformerEncoderLayer(
            cfg.d_model, heads, 2 * cfg.d_model, cfg.dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.out_dim = 2 * cfg.d_model
        self.d_model = cfg.d_model

    def tokens(self, x: Tensor, user_only: bool = False) -> tuple[Tensor, Tensor]:
        """Encoded tokens [B, 1+T, d_model] and the padding mask [B, 1+T] (True = ignored)."""
        toks = [p(x[:, getattr(self, f"idx_{i}")]) for i, p in enumerate(self.proj)]
        h = torch.stack(toks, dim=1)
        h = torch.cat([self.summary.expand(x.shape[0], -1, -1), h], dim=1)
        pad = torch.zeros(h.shape[:2], dtype=torch.bool, device=x.device)
        if user_only:
            pad[:, 1:] = ~self.user_token
        return self.encoder(h, src_key_padding_mask=pad), pad

    def pool(self, tokens: Tensor, pad: Tensor) -> Tensor:
        """Summary token concatenated with the mean of the unmasked field tokens."""
        keep = (~pad[:, 1:]).unsqueeze(-1).to(tokens.dtype)
        mean = (tokens[:, 1:] * keep).sum(1) / keep.sum(1).clamp_min(1.0)
        return torch.cat([tokens[:, 0], mean], dim=-1)

    def forward(self, x: Tensor, user_only: bool = False) -> Tensor:
        t, pad = self.tokens(x, user_only)
        return self.pool(t, pad)
