"""Tests for BST history pooling: the Transformer encoder alone and inside FeatureEmbedding."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtrs.config.load import config_from_dict
from mtrs.data.batch import Batch
from mtrs.data.encoders import Vocabulary
from mtrs.data.processor import FittedProcessor
from mtrs.layers.embedding import FeatureEmbedding
from mtrs.layers.sequence import SequenceTransformer

# Row 0 left-padded, row 1 full, row 2 one item, row 3 empty.
MASK = torch.tensor(
    [
        [False, False, True, True, True],
        [True, True, True, True, True],
        [False, False, False, False, True],
        [False, False, False, False, False],
    ]
)


def _encoder(time_gaps: bool = True) -> SequenceTransformer:
    torch.manual_seed(0)
    return SequenceTransformer(8, 5, heads=2, layers=2, time_gaps=time_gaps)


def _inputs(seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 5, 8, generator=g), torch.rand(4, 5, generator=g) * 3


def test_forward_and_backward_run_and_stay_finite() -> None:
    enc = _encoder()
    seq, gaps = _inputs()
    seq.requires_grad_(True)
    out = enc(seq, MASK, gaps)
    assert out.shape == (4, 5, 8)
    assert torch.isfinite(out).all()
    assert not out[~MASK].any()  # padded positions (and the empty row) come out as zero
    out.pow(2).sum().backward()
    assert seq.grad is not None and torch.isfinite(seq.grad).all()
    assert not seq.grad[~MASK].any()  # so padded inputs get no gradient
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert enc.gap is not None and enc.gap.weight.grad is not None
    assert enc.gap.weight.grad.abs().sum() > 0


def test_padded_positions_do_not_change_the_output() -> None:
    enc = _encoder()
    seq, gaps = _inputs()
    other_seq, other_gaps = _inputs(seed=1)
    pad = ~MASK
    changed_seq = torch.where(pad.unsqueeze(-1), 100 * other_seq, seq)
    changed_gaps = torch.where(pad, 100 * other_gaps, gaps)
    with torch.no_grad():
        torch.testing.assert_close(
            enc(changed_seq, MASK, changed_gaps), enc(seq, MASK, gaps), rtol=0, atol=1e-6
        )


def test_an_all_padding_history_gives_a_finite_output() -> None:
    enc = _encoder()
    seq, gaps = _inputs()
    seq.requires_grad_(True)
    none = torch.zeros(4, 5, dtype=torch.bool)
    out = enc(seq, none, gaps)
    assert torch.isfinite(out).all() and not out.any()
    out.sum().backward()
    assert seq.grad is not None and torch.isfinite(seq.grad).all()
    # Inference takes PyTorch's fused encoder path, where an all-masked row is NaN.
    enc.eval()
    with torch.no_grad():
        out = enc(seq, none, gaps)
    assert torch.isfinite(out).all() and not out.any()


def test_time_gaps_change_the_output_only_when_enabled() -> None:
    seq, gaps = _inputs()
    later = gaps + torch.linspace(1.0, 5.0, 5)
    with torch.no_grad():
        enc = _encoder(time_gaps=True)
        a, b = enc(seq, MASK, gaps), enc(seq, MASK, later)
        valid = MASK.unsqueeze(-1).expand_as(a)
        assert (a - b)[valid].abs().min() > 0  # every valid position moves
        enc = _encoder(time_gaps=False)
        assert torch.equal(enc(seq, MASK, gaps), enc(seq, MASK, later))


# --- inside FeatureEmbedding (pooling = "transformer") -----------------------------------------

# Items a–e are codes 2–6; 0 pads the history. Row 1's history is empty.
ITEMS = torch.tensor([[3], [5], [6]])
HISTORY = torch.tensor([[0, 2, 4], [0, 0, 0], [3, 5, 6]])
GAPS = torch.tensor([[0.0, 2.0, 0.5], [0.0, 0.0, 0.0], [3.0, 1.0, 0.25]])


def _bst(time_gaps: bool = True) -> FeatureEmbedding:
    """An item id and the history of clicked items, pooled by BST (x = [item | history])."""
    cfg = config_from_dict(
        {
            "data": {"interactions": "/unused.csv"},
            "features": [
                {"name": "item_id", "kind": "categorical", "group": "item"},
                {
                    "name": "clicked",
                    "kind": "history",
                    "group": "behaviour",
                    "item_feature": "item_id",
                    "max_length": 3,
                    "pooling": "transformer",
                },
            ],
            "tasks": [{"name": "click", "type": "binary", "label": "click"}],
            "model": {
                "embedding_dim": 4,
                "interactions": "none",
                "sequence": {"time_gaps": time_gaps},
            },
        }
    )
    proc = FittedProcessor(cfg, {"item_id": Vocabulary(list("abcde"))}, {}, [])
    torch.manual_seed(0)
    emb = FeatureEmbedding(proc, cfg.model)
    assert "clicked" in emb.seq_encoders and "clicked" in emb.attn
    assert [(f.name, f.start, f.width) for f in emb.layout.fields] == [
        ("item_id", 0, 4),
        ("clicked", 4, 4),
    ]
    return emb


def _batch(history: Tensor = HISTORY, gaps: Tensor = GAPS) -> Batch:
    return Batch(
        cat=ITEMS,
        num=torch.zeros(3, 0),
        labels=torch.zeros(3, 0),
        mask=torch.zeros(3, 0, dtype=torch.bool),
        user=torch.arange(3),
        hist={"clicked": history},
        hist_gap={"clicked": gaps},
    )


def test_bst_pooling_runs_forward_and_backward() -> None:
    emb = _bst()
    x = emb(_batch())
    assert x.shape == (3, 8) and torch.isfinite(x).all()
    x.pow(2).sum().backward()
    for name, p in emb.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    for name, p in emb.seq_encoders.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_bst_pooling_ignores_what_padded_positions_hold() -> None:
    emb = _bst()
    with torch.no_grad():
        full, user = emb(_batch()), emb(_batch(), user_only=True)
        # Padded positions (code 0) look up item_id's row 0 and carry a gap: change both.
        table = emb.tables[0].table
        assert isinstance(table, nn.Embedding)
        table.weight[0] = 10.0
        changed = _batch(gaps=torch.where(HISTORY == 0, 50.0, GAPS))
        torch.testing.assert_close(emb(changed), full, rtol=0, atol=1e-6)
        torch.testing.assert_close(emb(changed, user_only=True), user, rtol=0, atol=1e-6)
    # The empty history (row 1) pools to zeros in both passes.
    assert not full[1, 4:].any() and not user[1, 4:].any()


def test_bst_pooling_of_an_all_padding_batch_is_finite() -> None:
    emb = _bst()
    x = emb(_batch(torch.zeros_like(HISTORY), torch.zeros(3, 3)))
    assert torch.isfinite(x).all()
    assert not x[:, 4:].any()
    x.sum().backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in emb.parameters())
    emb.eval()  # serving: the fused encoder path
    with torch.no_grad():
        for user_only in (False, True):
            x = emb(_batch(torch.zeros_like(HISTORY), torch.zeros(3, 3)), user_only)
            assert torch.isfinite(x).all() and not x[:, 4:].any()


def test_bst_pooling_time_gaps_change_the_output() -> None:
    emb = _bst(time_gaps=True)
    with torch.no_grad():
        a, b = emb(_batch())[:, 4:], emb(_batch(gaps=GAPS * 3 + 1))[:, 4:]
    for row in (0, 2):  # the rows with a history
        assert (a[row] - b[row]).abs().max() > 1e-3
    assert not a[1].any() and not b[1].any()
    emb = _bst(time_gaps=False)
    assert emb.seq_encoders["clicked"].gap is None
    with torch.no_grad():
        assert torch.equal(emb(_batch()), emb(_batch(gaps=GAPS * 3 + 1)))
