"""Feature embedding: every input feature becomes a field of one flat input vector."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mtrs.config.models import FeatureConfig, ModelConfig
from mtrs.data.batch import Batch
from mtrs.data.encoders import OOV, PAD
from mtrs.data.processor import FittedProcessor
from mtrs.layers.plain import plain_ops_enabled
from mtrs.layers.row_gather import gather_rows
from mtrs.layers.sequence import SequenceTransformer, TargetAttention, masked_mean

USER_SIDE = ("user", "behaviour")


@dataclass(frozen=True)
class Field:
    """One feature's slice of the input vector."""

    name: str
    group: str
    start: int
    width: int

    @property
    def stop(self) -> int:
        """End of the slice (exclusive)."""
        return self.start + self.width


@dataclass(frozen=True)
class InputLayout:
    """Where each feature sits in the flat input vector ``x`` [B, d]."""

    fields: tuple[Field, ...]

    @property
    def dim(self) -> int:
        """Total width d."""
        return self.fields[-1].stop if self.fields else 0

    def user_keep(self) -> Tensor:
        """1 for user-side (user, behaviour) positions of ``x``, 0 for item and context."""
        keep = torch.zeros(self.dim)
        for f in self.fields:
            if f.group in (*USER_SIDE, "interaction"):
                keep[f.start : f.stop] = 1.0
        return keep


class _FusedTable(nn.Module):
    """All categorical fields of one width in one table, addressed with per-field offsets."""

    offsets: Tensor

    def __init__(self, sizes: list[int], dim: int) -> None:
        super().__init__()
        offsets = torch.tensor([0, *sizes[:-1]], dtype=torch.long).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.table = nn.Embedding(int(sum(sizes)), dim)
        nn.init.normal_(self.table.weight, std=0.05)

    def forward(self, codes: Tensor) -> Tensor:
        return self.lookup(codes + self.offsets)

    def lookup(self, rows: Tensor) -> Tensor:
        """Rows of the table for already-offset codes of any shape."""
        return gather_rows(self.table.weight, rows)


class FeatureEmbedding(nn.Module):
    """Turns a :class:`Batch` into the flat input vector ``x`` and records its layout.

    Categorical fields share fused tables (one lookup per embedding width); multi-hot fields
    are mean-pooled bags; numeric fields enter as they are; a behaviour history reuses its item
    feature's table and is pooled by mean, DIN attention or a BST Transformer.

    Args:
        proc: The fitted processor (vocabulary sizes, feature order).
        cfg: The ``[model]`` table (embedding size, sequence encoder settings).

    Shape:
        batch → [B, d]; with ``user_only`` the item and context fields are zero and target
        attention (which needs the candidate item) falls back to mean pooling.
    """

    keep_user: Tensor
    keep_dot_user: Tensor
    oov_rates: Tensor
    pair_rows: Tensor
    pair_cols: Tensor

    def __init__(self, proc: FittedProcessor, cfg: ModelConfig) -> None:
        super().__init__()
        self.dim_of = {f.name: f.embedding_dim or cfg.embedding_dim for f in proc.cfg.features}
        cats = proc.categorical
        widths = sorted({self.dim_of[f.name] for f in cats})
        self.cat_groups: list[list[int]] = [
            [j for j, f in enumerate(cats) if self.dim_of[f.name] == w] for w in widths
        ]
        self.tables = nn.ModuleList(
            _FusedTable([proc.vocab_size(cats[j].name) for j in cols], w)
            for cols, w in zip(self.cat_groups, widths, strict=True)
        )
        self._cat_pos = {
            cats[j].name: (g, k)
            for g, cols in enumerate(self.cat_groups)
            for k, j in enumerate(cols)
        }
        self.bags = nn.ModuleDict(
            {
                f.name: nn.EmbeddingBag(
                    proc.vocab_size(f.name), self.dim_of[f.name], mode="mean", padding_idx=0
                )
                for f in proc.multi_hot
            }
        )
        # Training-time id dropout to the OOV code (its vector is the cold-start fallback).
        rates = [f.oov_rate for f in cats]
        self.register_buffer(
            "oov_rates", torch.tensor(rates, dtype=torch.float32), persistent=False
        )
        self.any_oov = any(r > 0 for r in rates)
        self.hist_features: list[FeatureConfig] = proc.histories
        seq = cfg.sequence
        self.attn = nn.ModuleDict()
        self.seq_encoders = nn.ModuleDict()
        self.value_proj = nn.ModuleDict()
        for f in self.hist_features:
            assert f.item_feature is not None
            d = self.dim_of[f.item_feature]
            if f.pooling in ("din", "transformer"):
                self.attn[f.name] = TargetAttention(d, seq.attention_hidden)
            if f.pooling == "transformer":
                self.seq_encoders[f.name] = SequenceTransformer(
                    d, f.max_length, seq.transformer_heads, seq.transformer_layers, seq.time_gaps
                )
            if f.history_value:
                self.value_proj[f.name] = nn.Linear(1, d, bias=False)
        self.num_count = len(proc.numeric)
        # Dot-product interactions pair every embedded field of the model's default width.
        self.dot_dim = cfg.embedding_dim
        n_dot = sum(
            len(c) for c, t in zip(self.cat_groups, widths, strict=True) if t == self.dot_dim
        )
        n_dot += sum(1 for f in proc.multi_hot if self.dim_of[f.name] == self.dot_dim)
        n_dot += sum(
            1 for f in self.hist_features if self.dim_of[str(f.item_feature)] == self.dot_dim
        )
        # The fields the dots pair, in the order of their stacked vectors.
        self.dot_fields = [
            cats[j].name
            for cols in self.cat_groups
            for j in cols
            if self.dim_of[cats[j].name] == self.dot_dim
        ]
        self.dot_fields += [f.name for f in proc.multi_hot if self.dim_of[f.name] == self.dot_dim]
        self.dot_fields += [
            f.name for f in self.hist_features if self.dim_of[str(f.item_feature)] == self.dot_dim
        ]
        assert len(self.dot_fields) == n_dot
        self.use_dots = cfg.interactions == "dot" and n_dot >= 2
        rows, cols = torch.triu_indices(n_dot, n_dot, offset=1)
        self.register_buffer("pair_rows", rows, persistent=False)
        self.register_buffer("pair_cols", cols, persistent=False)
        self.num_pairs = len(rows) if self.use_dots else 0
        self.layout = self._build_layout(proc)
        self.register_buffer("keep_user", self.layout.user_keep(), persistent=False)
        self.register_buffer("keep_dot_user", self._dot_user_keep(proc), persistent=False)

    def _dot_user_keep(self, proc: FittedProcessor) -> Tensor:
        groups: list[str] = []
        cats = proc.categorical
        for cols in self.cat_groups:
            groups += [cats[j].group for j in cols if self.dim_of[cats[j].name] == self.dot_dim]
        groups += [f.group for f in proc.multi_hot if self.dim_of[f.name] == self.dot_dim]
        groups += [
            "behaviour"
            for f in self.hist_features
            if self.dim_of[str(f.item_feature)] == self.dot_dim
        ]
        return torch.tensor([1.0 if g in USER_SIDE else 0.0 for g in groups])

    def _build_layout(self, proc: FittedProcessor) -> InputLayout:
        fields: list[Field] = []
        pos = 0

        def add(f: FeatureConfig, width: int) -> None:
            nonlocal pos
            fields.append(Field(f.name, f.group, pos, width))
            pos += width

        cats = proc.categorical
        for cols in self.cat_groups:
            for j in cols:
                add(cats[j], self.dim_of[cats[j].name])
        for f in proc.multi_hot:
            add(f, self.dim_of[f.name])
        for f in self.hist_features:
            assert f.item_feature is not None
            add(f, self.dim_of[f.item_feature])
        for f in proc.numeric:
            add(f, 1)
        if self.num_pairs:
            fields.append(Field("dot_interactions", "interaction", pos, self.num_pairs))
        return InputLayout(tuple(fields))

    def item_vector(self, batch: Batch, feature: str) -> Tensor:
        """Embedding of a categorical feature for each row (the candidate item for attention)."""
        g, k = self._cat_pos[feature]
        table: _FusedTable = self.tables[g]  # type: ignore[assignment]
        out: Tensor = table.lookup(batch.cat[:, self.cat_groups[g][k]] + table.offsets[k])
        return out

    def bag_mean(self, name: str, codes: Tensor) -> Tensor:
        """Mean of a multi-hot feature's token vectors, padding (code 0) left out.

        ``nn.EmbeddingBag`` in training and inference; inside
        :func:`~mtrs.layers.plain.plain_ops` the same mean as a lookup and a masked mean (an
        exported ``EmbeddingBag`` is an ONNX ``Loop``, about 200× slower in onnxruntime).

        Shape:
            codes [B, L] → [B, D] (zeros for a row without tokens).
        """
        bag: nn.EmbeddingBag = self.bags[name]  # type: ignore[assignment]
        if plain_ops_enabled():
            return masked_mean(gather_rows(bag.weight, codes), codes != 0)
        out: Tensor = bag(codes)
        return out

    def history_sequence(self, batch: Batch, f: FeatureConfig) -> tuple[Tensor, Tensor]:
        """A history's encoded positions (item vectors, values, Transformer) and its mask.

        Shape:
            → seq [B, L, D], mask [B, L] bool (False at padding).
        """
        assert f.item_feature is not None
        g, k = self._cat_pos[f.item_feature]
        table: _FusedTable = self.tables[g]  # type: ignore[assignment]
        codes = batch.hist[f.name]
        mask = codes != 0
        seq = table.lookup(codes + table.offsets[k])
        if f.name in self.value_proj:
            # seq + value · w in one pass; as a Linear(1, D) this was a K = 1 matmul, the
            # slowest op of a MovieLens training step.
            proj: nn.Linear = self.value_proj[f.name]  # type: ignore[assignment]
            w = proj.weight.view(-1).to(seq.dtype)
            seq = torch.addcmul(seq, batch.hist_value[f.name].unsqueeze(-1).to(seq.dtype), w)
        if f.name in self.seq_encoders:
            seq = self.seq_encoders[f.name](seq, mask, batch.hist_gap.get(f.name))
        return seq, mask

    def _history(self, batch: Batch, f: FeatureConfig, user_only: bool) -> Tensor:
        assert f.item_feature is not None
        seq, mask = self.history_sequence(batch, f)
        if f.name in self.attn and not user_only:
            query = self.item_vector(batch, f.item_feature)
            pooled: Tensor = self.attn[f.name](query, seq, mask)
            return pooled
        return masked_mean(seq, mask)

    def embed_fields(
        self, batch: Batch, user_only: bool = False, histories: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """``x`` without the dot interactions, and the stacked fields the dots pair.

        Args:
            batch: The rows.
            user_only: Target attention falls back to mean pooling (no item masking here).
            histories: False leaves every history field zero (nothing is pooled).

        Shape:
            → x [B, d − num_pairs], dot fields [B, n_dot, dot_dim] (None when there are none).
        """
        parts: list[Tensor] = []
        dots: list[Tensor] = []
        cat = batch.cat
        if self.training and self.any_oov:
            drop = (torch.rand(cat.shape, device=cat.device) < self.oov_rates) & (cat != PAD)
            cat = torch.where(drop, torch.full_like(cat, OOV), cat)
        for cols, table in zip(self.cat_groups, self.tables, strict=True):
            codes = cat[:, cols] if len(cols) != cat.shape[1] else cat
            e = table(codes)
            if e.shape[-1] == self.dot_dim:
                dots.append(e)
            parts.append(e.flatten(1))
        for name in self.bags:
            v = self.bag_mean(name, batch.multi[name])
            if v.shape[-1] == self.dot_dim:
                dots.append(v.unsqueeze(1))
            parts.append(v)
        for f in self.hist_features:
            if histories:
                v = self._history(batch, f, user_only)
            else:
                v = cat.new_zeros(
                    (cat.shape[0], self.dim_of[str(f.item_feature)]), dtype=torch.float32
                )
            if v.shape[-1] == self.dot_dim:
                dots.append(v.unsqueeze(1))
            parts.append(v)
        if self.num_count:
            parts.append(batch.num)
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        return x, (torch.cat(dots, dim=1) if dots else None)

    def forward(self, batch: Batch, user_only: bool = False) -> Tensor:
        x, e = self.embed_fields(batch, user_only)
        if user_only:
            x = x * self.keep_user[: x.shape[1]]
        if self.use_dots:
            assert e is not None
            x = torch.cat([x, self.dot_products(e, user_only)], dim=1)
        return x

    def dot_products(self, e: Tensor, user_only: bool = False) -> Tensor:
        """Pairwise dot products of the fields; in the user pass, pairs with item/context are 0."""
        if user_only:
            e = e * self.keep_dot_user.view(1, -1, 1)
        gram = torch.bmm(e, e.transpose(1, 2))
        return gram[:, self.pair_rows, self.pair_cols]
