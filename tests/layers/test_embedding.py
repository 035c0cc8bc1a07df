"""Tests for FeatureEmbedding: layout, field values, the user-only pass, padding, gradients."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from mtrs.config.load import config_from_dict
from mtrs.data.batch import Batch
from mtrs.data.encoders import Vocabulary
from mtrs.data.processor import FittedProcessor
from mtrs.layers.embedding import FeatureEmbedding, Field

# Vocabulary sizes (padding 0 and OOV 1 included): age 5, item_id 7, hour 5, genres 5,
# interests 4.
VOCABS = {
    "age": ["18-24", "25-34", "35+"],
    "item_id": ["a", "b", "c", "d", "e"],
    "hour": ["0", "1", "2"],
    "genres": ["x", "y", "z"],
    "interests": ["p", "q"],
}
USER_FIELDS = ("age", "interests", "clicked", "visits")
ITEM_CONTEXT_FIELDS = ("hour", "item_id", "genres", "price")


def _embedding(
    interactions: str = "none",
    pooling: str = "mean",
    time_gaps: bool = False,
    age_oov_rate: float = 0.0,
) -> FeatureEmbedding:
    features: list[dict[str, Any]] = [
        {"name": "age", "kind": "categorical", "group": "user", "oov_rate": age_oov_rate},
        {"name": "visits", "kind": "numeric", "group": "user"},
        {"name": "item_id", "kind": "categorical", "group": "item"},
        {"name": "genres", "kind": "multi_hot", "group": "item"},
        {"name": "price", "kind": "numeric", "group": "item"},
        {"name": "hour", "kind": "categorical", "group": "context", "embedding_dim": 3},
        {"name": "interests", "kind": "multi_hot", "group": "user", "embedding_dim": 2},
        {
            "name": "clicked",
            "kind": "history",
            "group": "behaviour",
            "item_feature": "item_id",
            "max_length": 3,
            "pooling": pooling,
        },
    ]
    cfg = config_from_dict(
        {
            "data": {"interactions": "/unused.csv"},
            "features": features,
            "tasks": [{"name": "click", "type": "binary", "label": "click"}],
            "model": {
                "embedding_dim": 4,
                "interactions": interactions,
                "sequence": {"time_gaps": time_gaps},
            },
        }
    )
    proc = FittedProcessor(cfg, {k: Vocabulary(v) for k, v in VOCABS.items()}, {}, [])
    torch.manual_seed(0)
    return FeatureEmbedding(proc, cfg.model)


def _batch() -> Batch:
    """Three rows; row 1 has an empty history, row 2 no genres; code 1 is OOV."""
    return Batch(
        cat=torch.tensor([[2, 3, 4], [3, 5, 2], [4, 6, 1]]),  # age, item_id, hour
        num=torch.tensor([[0.5, -1.0], [1.5, 2.0], [-0.25, 0.0]]),  # visits, price
        labels=torch.zeros(3, 0),
        mask=torch.zeros(3, 0, dtype=torch.bool),
        user=torch.arange(3),
        multi={
            "genres": torch.tensor([[2, 3, 0], [4, 0, 0], [0, 0, 0]]),
            "interests": torch.tensor([[2, 3], [0, 0], [3, 0]]),
        },
        hist={"clicked": torch.tensor([[0, 2, 4], [0, 0, 0], [3, 5, 6]])},
    )


def _slice(emb: FeatureEmbedding, x: Tensor, name: str) -> Tensor:
    f = next(f for f in emb.layout.fields if f.name == name)
    return x[:, f.start : f.stop]


def _tables(emb: FeatureEmbedding) -> tuple[Tensor, Tensor]:
    """The fused tables: width 3 (hour), then width 4 (age rows 0–4, item_id rows 5–11)."""
    tables = [t.table for t in emb.tables]
    assert all(isinstance(t, nn.Embedding) for t in tables)
    narrow, wide = (t.weight for t in tables if isinstance(t, nn.Embedding))
    return narrow, wide


def _bag(emb: FeatureEmbedding, name: str) -> nn.EmbeddingBag:
    bag = emb.bags[name]
    assert isinstance(bag, nn.EmbeddingBag)
    return bag


def _mean_rows(weight: Tensor, codes: Tensor) -> Tensor:
    """Mean of the rows of the non-padding codes of each row (zeros for none), by hand."""
    out = torch.zeros(len(codes), weight.shape[1])
    for i, row in enumerate(codes.tolist()):
        picked = [weight[c] for c in row if c != 0]
        if picked:
            out[i] = torch.stack(picked).mean(0)
    return out


def _poison_padding_rows(emb: FeatureEmbedding) -> None:
    """Make what padding codes look up large, so that any leak of padding shows."""
    _, wide = _tables(emb)
    with torch.no_grad():
        wide[5 + 0] = 10.0  # item_id's code 0: what padded history positions look up
        _bag(emb, "genres").weight[0] = 10.0
        _bag(emb, "interests").weight[0] = 10.0


def test_layout_fields_widths_and_total_dim() -> None:
    emb = _embedding()
    # Categorical fields come first, grouped by embedding width (narrowest first), then
    # multi-hot, histories and numeric fields, each in config order.
    assert emb.layout.fields == (
        Field("hour", "context", 0, 3),
        Field("age", "user", 3, 4),
        Field("item_id", "item", 7, 4),
        Field("genres", "item", 11, 4),
        Field("interests", "user", 15, 2),
        Field("clicked", "behaviour", 17, 4),
        Field("visits", "user", 21, 1),
        Field("price", "item", 22, 1),
    )
    assert emb.layout.dim == 23
    narrow, wide = _tables(emb)
    assert narrow.shape == (5, 3) and wide.shape == (5 + 7, 4)
    assert emb(_batch()).shape == (3, 23)


def test_each_field_holds_its_embedding() -> None:
    emb = _embedding()
    _poison_padding_rows(emb)
    b = _batch()
    x = emb(b).detach()
    narrow, wide = _tables(emb)
    torch.testing.assert_close(_slice(emb, x, "hour"), narrow[b.cat[:, 2]])
    torch.testing.assert_close(_slice(emb, x, "age"), wide[b.cat[:, 0]])
    torch.testing.assert_close(_slice(emb, x, "item_id"), wide[5 + b.cat[:, 1]])
    for name in ("genres", "interests"):
        want = _mean_rows(_bag(emb, name).weight.detach(), b.multi[name])
        torch.testing.assert_close(_slice(emb, x, name), want)
    # The history is the item feature's own rows, mean-pooled over the non-padding items.
    want = _mean_rows(wide[5:].detach(), b.hist["clicked"])
    torch.testing.assert_close(_slice(emb, x, "clicked"), want)
    torch.testing.assert_close(torch.cat([x[:, 21:22], x[:, 22:23]], 1), b.num)


def test_padding_codes_embed_as_promised() -> None:
    emb = _embedding()
    # A multi-hot bag's padding row starts at zero; even when it is not zero, a bag's mean
    # ignores padding, and an all-padding bag or history is the zero vector.
    assert not _bag(emb, "genres").weight[0].any()
    _poison_padding_rows(emb)
    b = _batch()
    x = emb(b).detach()
    genres = _bag(emb, "genres").weight.detach()
    torch.testing.assert_close(_slice(emb, x, "genres")[0], (genres[2] + genres[3]) / 2)
    assert not _slice(emb, x, "genres")[2].any()
    _, wide = _tables(emb)
    torch.testing.assert_close(_slice(emb, x, "clicked")[0], (wide[5 + 2] + wide[5 + 4]) / 2)
    assert not _slice(emb, x, "clicked")[1].any()
    # A categorical code 0 is no special case: it looks up its own (learned) row.
    b.cat[0, 0] = 0
    torch.testing.assert_close(_slice(emb, emb(b).detach(), "age")[0], wide[0])


@pytest.mark.parametrize("pooling", ["mean", "din"])
def test_user_only_zeroes_exactly_the_item_and_context_fields(pooling: str) -> None:
    emb = _embedding(pooling=pooling)
    _poison_padding_rows(emb)
    b = _batch()
    full, user = emb(b).detach(), emb(b, user_only=True).detach()
    assert user.shape == full.shape
    for name in ITEM_CONTEXT_FIELDS:
        assert _slice(emb, full, name).abs().sum() > 0, name
        assert not _slice(emb, user, name).any(), name
    for name in ("age", "interests", "visits"):
        assert torch.equal(_slice(emb, user, name), _slice(emb, full, name)), name
    # Target attention needs the candidate item, so the user pass pools the history by mean.
    _, wide = _tables(emb)
    want = _mean_rows(wide[5:].detach(), b.hist["clicked"])
    torch.testing.assert_close(_slice(emb, user, "clicked"), want)
    if pooling == "mean":
        assert torch.equal(_slice(emb, user, "clicked"), _slice(emb, full, "clicked"))


def test_dot_interactions_and_the_user_pass() -> None:
    emb = _embedding(interactions="dot")
    # The fields of the model's default width (4) are paired: age, item_id, genres, clicked.
    assert emb.layout.fields[-1] == Field("dot_interactions", "interaction", 23, 6)
    assert emb.layout.dim == 29
    b = _batch()
    full, user = emb(b).detach(), emb(b, user_only=True).detach()
    vec = {n: _slice(emb, full, n) for n in ("age", "item_id", "genres", "clicked")}
    pairs = [(a, c) for i, a in enumerate(vec) for c in list(vec)[i + 1 :]]
    want = torch.stack([(vec[a] * vec[c]).sum(1) for a, c in pairs], 1)
    torch.testing.assert_close(full[:, 23:], want)
    # In the user pass only the user × behaviour pair (age · clicked) survives.
    kept = pairs.index(("age", "clicked"))
    for k in range(len(pairs)):
        if k == kept:
            torch.testing.assert_close(user[:, 23 + k], want[:, k])
        else:
            assert not user[:, 23 + k].any(), pairs[k]


def test_gradient_reaches_only_the_rows_looked_up() -> None:
    emb = _embedding()
    b = _batch()
    x = emb(b)
    (x * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).sum().backward()

    def rows_with_grad(weight: Tensor) -> set[int]:
        assert weight.grad is not None
        return set(torch.nonzero(weight.grad.abs().sum(1)).flatten().tolist())

    narrow, wide = _tables(emb)
    assert rows_with_grad(narrow) == {4, 2, 1}  # hour codes
    # age codes 2–4; item_id codes 3, 5, 6 (the item) and 2–6 (the history's items), at
    # row 5 + code. Item code 0, looked up by the padded history positions, gets none.
    assert rows_with_grad(wide) == {2, 3, 4} | {5 + c for c in (2, 3, 4, 5, 6)}
    assert rows_with_grad(_bag(emb, "genres").weight) == {2, 3, 4}
    assert rows_with_grad(_bag(emb, "interests").weight) == {2, 3}


def test_oov_rate_drops_codes_to_oov_in_training_only() -> None:
    emb = _embedding(age_oov_rate=1.0)
    batch = _batch()
    x_eval = emb.eval()(batch)
    emb.train()
    x_train = emb(batch)
    # Every training row reads age's OOV row (code 1); the other fields are untouched.
    (age,) = [f for f in emb.layout.fields if f.name == "age"]
    g, k = emb._cat_pos["age"]
    table = emb.tables[g]
    oov_row = int(table.offsets[k]) + 1  # type: ignore[index]
    oov = table.table.weight[oov_row]  # type: ignore[union-attr]
    for row in range(3):
        torch.testing.assert_close(x_train[row, age.start : age.stop], oov)
    rest = [i for i in range(x_train.shape[1]) if not age.start <= i < age.stop]
    torch.testing.assert_close(x_train[:, rest], x_eval[:, rest])
    assert not torch.allclose(x_eval[:, age.start : age.stop], x_train[:, age.start : age.stop])
    # The OOV row learns: it gets the whole gradient of the age field, the real rows none.
    x_train[:, age.start : age.stop].sum().backward()
    grad = table.table.weight.grad  # type: ignore[union-attr]
    assert grad is not None and grad[oov_row].abs().sum() > 0
    assert grad[oov_row + 1 : oov_row + 4].abs().sum() == 0


def test_a_partial_oov_rate_drops_about_that_share() -> None:
    emb = _embedding(age_oov_rate=0.25).train()
    b = _batch()
    n = 4000
    big = Batch(
        cat=b.cat[:1].repeat(n, 1), num=b.num[:1].repeat(n, 1), labels=torch.zeros(n, 0),
        mask=torch.zeros(n, 0, dtype=torch.bool), user=torch.zeros(n, dtype=torch.long),
        multi={k: v[:1].repeat(n, 1) for k, v in b.multi.items()},
        hist={k: v[:1].repeat(n, 1) for k, v in b.hist.items()},
    )  # fmt: skip
    torch.manual_seed(1)
    x = emb(big)
    (age,) = [f for f in emb.layout.fields if f.name == "age"]
    g, k = emb._cat_pos["age"]
    table = emb.tables[g]
    oov = table.table.weight[int(table.offsets[k]) + 1]  # type: ignore[index, union-attr]
    share = (x[:, age.start : age.stop] == oov).all(dim=1).float().mean().item()
    assert 0.22 < share < 0.28
