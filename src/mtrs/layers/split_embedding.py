"""The feature embedding split by side, for scoring one user against many candidate items.

Scoring ranks N candidates for one user and one context. Of the input vector ``x`` only the
item fields differ between the N rows, and only target attention (DIN, and the attention
over a Transformer-encoded history) and the dot interactions mix the two sides.
:class:`SplitEmbedding` therefore computes ``x`` in three parts with the weights of one
:class:`~mtrs.layers.embedding.FeatureEmbedding`:

* :meth:`~SplitEmbedding.item_side`, once per catalog: each item's fields at their place in
  ``x`` (zeros elsewhere) with the dot products among its own fields, its dot-field vectors
  and each attention's query (the item's vector);
* :meth:`~SplitEmbedding.user_sides`, once per request: the user and context fields (and
  their dot products), the pooled or Transformer-encoded histories, the user's dot-field
  vectors and each attention folded into one matrix of the query
  (:meth:`~mtrs.layers.sequence.TargetAttention.fold`);
* :meth:`~SplitEmbedding.forward`, per candidate: the two sides added, the attentions and
  the dot products between the sides (:meth:`~SplitEmbedding.candidate_values`) written
  into their columns — the values of :meth:`FeatureEmbedding.forward` on the assembled
  rows. :class:`~mtrs.recommend.split.SplitScorer` usually skips building these rows: it
  folds the sides into the first layers (:mod:`mtrs.layers.folded`).

The sides are dicts of named tensors (what an exported graph takes and gives).
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

from mtrs.data.batch import Batch
from mtrs.layers.embedding import USER_SIDE, FeatureEmbedding
from mtrs.layers.sequence import TargetAttention

ITEM, USER, CANDIDATE = "item", "user", "candidate"


class SplitEmbedding(nn.Module):
    """:class:`FeatureEmbedding` computed as item side, user side and per-candidate part.

    Args:
        embedding: The model's embedding (its modules and weights are used, not copied).

    Shape:
        item_side: items → ``x`` [N, d], ``dots`` [N, n_item, D], ``query.<h>`` [N, D];
        user_sides: per row → ``x`` [1, d], ``dots`` [n_user, D], per attended history
        ``seq.<h>`` [L, D], ``mask.<h>`` [L], ``weight.<h>`` [D, L·H], ``bias.<h>`` [L·H];
        forward: N rows of the item side and one user side → x [N, d].
    """

    item_cols: Tensor
    user_cols: Tensor
    item_dots: Tensor
    user_dots: Tensor
    item_pairs: Tensor
    user_pairs: Tensor
    late_cols: Tensor
    candidate_cols: Tensor

    def __init__(self, embedding: FeatureEmbedding) -> None:
        super().__init__()
        self.embedding = embedding
        histories = {f.name for f in embedding.hist_features}
        self.attended = {
            f.name: str(f.item_feature) for f in embedding.hist_features if f.name in embedding.attn
        }

        def kind(name: str, group: str) -> str:
            if name in self.attended:
                return CANDIDATE
            if name in histories or group in (*USER_SIDE, "context"):
                return USER
            return ITEM

        fields = [f for f in embedding.layout.fields if f.group != "interaction"]
        groups = {f.name: f.group for f in fields}
        self.spans = {f.name: (f.start, f.stop) for f in fields if f.name in self.attended}
        cols: dict[str, list[int]] = {ITEM: [], USER: [], CANDIDATE: []}
        for f in fields:
            cols[kind(f.name, f.group)] += list(range(f.start, f.stop))
        dot_kind = [kind(n, groups[n]) for n in embedding.dot_fields]
        dots = {k: [i for i, d in enumerate(dot_kind) if d == k] for k in (ITEM, USER)}
        # Dot products: within the item side (cached), within the user side (per request);
        # the pairs across sides and with an attended history are "late" (per candidate).
        pair_cols: dict[str, list[int]] = {ITEM: [], USER: []}
        late: dict[tuple[int, int], int] = {}
        if embedding.use_dots:
            start = next(f.start for f in embedding.layout.fields if f.group == "interaction")
            rows, cols_ = embedding.pair_rows.tolist(), embedding.pair_cols.tolist()
            for p, (r, c) in enumerate(zip(rows, cols_, strict=True)):
                kr, kc = dot_kind[r], dot_kind[c]
                if kr == kc and kr in pair_cols:
                    pair_cols[kr].append(p)
                else:
                    late[(r, c)] = start + p
        self.use_dots = embedding.use_dots
        self.n_pair_items = len(pair_cols[ITEM])
        self.late_order = self._late_order(dots, dot_kind, late)
        for name, values in (
            ("item_cols", cols[ITEM]),
            ("user_cols", cols[USER]),
            ("item_dots", dots[ITEM]),
            ("user_dots", dots[USER]),
            ("item_pairs", pair_cols[ITEM]),
            ("user_pairs", pair_cols[USER]),
            ("late_cols", [late[rc] for rc in self.late_order]),
            (
                "candidate_cols",
                [c for a in self.attended for c in range(*self.spans[a])]
                + [late[rc] for rc in self.late_order],
            ),
        ):
            self.register_buffer(name, torch.tensor(values, dtype=torch.long), persistent=False)
        self.width = embedding.layout.dim

    def _late_order(
        self, dots: dict[str, list[int]], kinds: list[str], late: dict[tuple[int, int], int]
    ) -> list[tuple[int, int]]:
        """The late pairs in the order :meth:`forward` computes them."""
        if not self.embedding.use_dots:
            return []
        order = [(min(i, u), max(i, u)) for i in dots[ITEM] for u in dots[USER]]
        cand = [j for j, k in enumerate(kinds) if k == CANDIDATE]
        for j in cand:
            others = dots[ITEM] + dots[USER] + [c for c in cand if c > j]
            order += [(min(j, o), max(j, o)) for o in others]
        assert sorted(order) == sorted(late)
        return order

    def _attention(self, name: str) -> TargetAttention:
        attn: TargetAttention = self.embedding.attn[name]  # type: ignore[assignment]
        return attn

    def _place(self, x: Tensor, cols: Tensor, pairs: Tensor, e: Tensor | None) -> Tensor:
        """``x``'s columns ``cols`` in a zero [B, d] row, with the dot products ``pairs``."""
        out = x.new_zeros((x.shape[0], self.width))
        out[:, cols] = x.index_select(1, cols)
        if self.use_dots and len(pairs):
            assert e is not None
            emb = self.embedding
            gram = torch.bmm(e, e.transpose(1, 2))
            rows, cols_ = emb.pair_rows[pairs], emb.pair_cols[pairs]
            start = self.width - emb.num_pairs
            out[:, start + pairs] = gram[:, rows, cols_]
        return out

    def item_side(self, items: Batch) -> dict[str, Tensor]:
        """What the item rows contribute, whoever the user (once per catalog)."""
        emb = self.embedding
        x, e = emb.embed_fields(items, histories=False)
        out = {"x": self._place(x, self.item_cols, self.item_pairs, e)}
        if self.use_dots:
            assert e is not None
            out["dots"] = e.index_select(1, self.item_dots)
        for name, feature in self.attended.items():
            out[f"query.{name}"] = emb.item_vector(items, feature)
        return out

    def user_sides(self, users: Batch) -> list[dict[str, Tensor]]:
        """What each row's user and context contribute, whatever the item (once per
        request; one embedding pass for all the rows)."""
        emb = self.embedding
        x, e = emb.embed_fields(users, histories=True)
        placed = self._place(x, self.user_cols, self.user_pairs, e)
        out: list[dict[str, Tensor]] = [{"x": placed[b : b + 1]} for b in range(len(placed))]
        if self.use_dots:
            assert e is not None
            dots = e.index_select(1, self.user_dots)
            for b, side in enumerate(out):
                side["dots"] = dots[b]
        for f in emb.hist_features:
            if f.name not in self.attended:
                continue
            seq, mask = emb.history_sequence(users, f)
            attn = self._attention(f.name)
            for b, side in enumerate(out):
                weight, bias = attn.fold(seq[b])
                side[f"seq.{f.name}"] = seq[b]
                side[f"mask.{f.name}"] = mask[b]
                side[f"weight.{f.name}"] = weight
                side[f"bias.{f.name}"] = bias
        return out

    def forward(self, items: dict[str, Tensor], user: dict[str, Tensor]) -> Tensor:
        """Rows of the item side (one user's candidates) with that user's side → x [N, d]."""
        return self.forward_many(items, [user], [items["x"].shape[0]])

    def forward_many(
        self, items: dict[str, Tensor], users: list[dict[str, Tensor]], spans: list[int]
    ) -> Tensor:
        """Several users' candidates at once: their rows back to back.

        Args:
            items: The item side of every row (the first ``spans[0]`` rows are the first
                user's candidates, the next ``spans[1]`` the second's, …).
            users: One user side per user (each what :meth:`user_sides` gives).
            spans: How many rows each user has, in order (``sum(spans)`` rows in all).

        Returns:
            x [sum(spans), d]: per user, the values its rows get scored alone.
        """
        x = self.plus_user(items["x"], users, spans, "x", inplace=False)
        if len(self.candidate_cols):
            x[:, self.candidate_cols] = self.candidate_values(items, users, spans)
        return x

    @staticmethod
    def plus_user(
        rows: Tensor, users: list[dict[str, Tensor]], spans: list[int], key: str, inplace: bool
    ) -> Tensor:
        """``rows`` [sum(spans), w] plus each user's ``key`` row [1, w] on that user's rows
        (broadcast: no per-row copy of a user's row); ``inplace`` writes into ``rows``."""
        if len(users) == 1:
            return rows.add_(users[0][key]) if inplace else rows + users[0][key]
        out = rows if inplace else torch.empty_like(rows)
        bounds = [0, *itertools.accumulate(spans)]
        for u, lo, hi in zip(users, bounds[:-1], bounds[1:], strict=True):
            torch.add(rows[lo:hi], u[key], out=out[lo:hi])
        return out

    def candidate_values(
        self, items: dict[str, Tensor], users: list[dict[str, Tensor]], spans: list[int]
    ) -> Tensor:
        """The columns of ``x`` that mix the sides (:attr:`candidate_cols`), row by row.

        Both sides are zero in these columns: the attended histories' pooled vectors and
        the dot products across the sides (and with an attended history). Each user's rows
        are computed against that user's side alone.

        Shape:
            → [sum(spans), len(candidate_cols)].
        """
        if len(users) == 1:
            return self._candidate_values(items, users[0], spans[0])
        bounds = [0, *itertools.accumulate(spans)]
        return torch.cat(
            [
                self._candidate_values({k: v[lo:hi] for k, v in items.items()}, u, hi - lo)
                for u, lo, hi in zip(users, bounds[:-1], bounds[1:], strict=True)
            ]
        )

    def _candidate_values(
        self, items: dict[str, Tensor], user: dict[str, Tensor], n: int
    ) -> Tensor:
        """:meth:`candidate_values` of one user's ``n`` rows."""
        pooled = [
            self._attention(a).pool_folded(
                items[f"query.{a}"],
                user[f"weight.{a}"],
                user[f"bias.{a}"],
                user[f"seq.{a}"],
                user[f"mask.{a}"],
            )
            for a in self.attended
        ]
        late: list[Tensor] = []
        if self.use_dots and len(self.late_cols):
            item_e, user_t = items["dots"], user["dots"].t()  # [N, n_i, D], [D, n_u]
            late.append(torch.matmul(item_e, user_t).reshape(n, -1))
            names = self.embedding.dot_fields
            cand = [p for p, a in zip(pooled, self.attended, strict=True) if a in names]
            for j, p in enumerate(cand):
                late.append(torch.bmm(item_e, p.unsqueeze(-1)).squeeze(-1))
                late.append(p @ user_t)
                for q in cand[j + 1 :]:
                    late.append((p * q).sum(-1, keepdim=True))
        parts = pooled + late
        if not parts:
            return torch.zeros(n, 0)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
