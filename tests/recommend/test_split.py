"""Split scoring (item side cached per catalog, user side per request) gives the plain path's
scores for every architecture and history pooling, and its cache follows the catalog and the
weights."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from mtrs.arch import ARCHITECTURES
from mtrs.config.load import config_from_dict
from mtrs.config.models import JobConfig
from mtrs.data.batch import Batch
from mtrs.data.encoders import Vocabulary
from mtrs.data.labels import TaskEncoding
from mtrs.data.processor import FittedProcessor
from mtrs.layers.sequence import FOLDED_BLOCK
from mtrs.model import build_model
from mtrs.recommend.catalog import Catalog
from mtrs.recommend.recommender import Recommender
from mtrs.recommend.split import SplitScorer
from mtrs.tasks.taskset import TaskSet

ARCHS = ("single", "shared_bottom", "omoe", "mmoe", "ple", "esmm")
N_ITEMS, N_USERS = 40, 6
VOCABS = {
    "age": ["18-24", "25-34", "35+"],
    "item_id": [f"i{k}" for k in range(N_ITEMS)],
    "brand": ["b0", "b1", "b2", "b3"],
    "hour": ["0", "1", "2"],
    "genres": ["x", "y", "z", "w"],
    "interests": ["p", "q"],
}


def _config(
    arch: str, poolings: tuple[str, ...], dots: bool, bottom: str, hidden: tuple[int, ...]
) -> JobConfig:
    features: list[dict[str, Any]] = [
        {"name": "age", "kind": "categorical", "group": "user"},
        {"name": "visits", "kind": "numeric", "group": "user"},
        {"name": "item_id", "kind": "categorical", "group": "item"},
        {"name": "brand", "kind": "categorical", "group": "item"},
        {"name": "price", "kind": "numeric", "group": "item"},
        {"name": "genres", "kind": "multi_hot", "group": "item", "max_length": 3},
        {"name": "interests", "kind": "multi_hot", "group": "user", "max_length": 2},
        {"name": "hour", "kind": "categorical", "group": "context"},
        {"name": "temperature", "kind": "numeric", "group": "context"},
    ]
    for pooling in poolings:
        features.append(
            {
                "name": f"seen_{pooling}",
                "kind": "history",
                "group": "behaviour",
                "item_feature": "item_id",
                "max_length": 5,
                "pooling": pooling,
                "history_value": "rating",
            }
        )
    return config_from_dict(
        {
            "data": {"interactions": "/unused.csv"},
            "features": features,
            "tasks": [
                {"name": "click", "type": "binary", "label": "click"},
                {"name": "purchase", "type": "binary", "label": "purchase", "condition": "click"},
                {"name": "gender", "type": "binary", "label": "gender", "scope": "user"},
            ],
            "relations": [
                {"type": "esmm", "parent": "click", "child": "purchase", "name": "click_purchase"}
            ],
            "model": {
                "architecture": arch,
                "embedding_dim": 4,
                "interactions": "dot" if dots else "none",
                "shared": {"type": bottom, "hidden": list(hidden), "d_model": 8},
                "tower": {"hidden": [4]},
                "experts": {"num_experts": 2, "task_experts": 1, "levels": 2},
                "sequence": {"time_gaps": "transformer" in poolings, "attention_hidden": [8, 4]},
            },
        }
    )


def _random_batch(proc: FittedProcessor, rows: int, g: torch.Generator) -> Batch:
    cat = torch.stack(
        [torch.randint(0, proc.vocab_size(f.name), (rows,), generator=g) for f in proc.categorical],
        dim=1,
    )
    hist = {}
    for f in proc.histories:
        codes = torch.randint(2, proc.vocab_size("item_id"), (rows, f.max_length), generator=g)
        # Histories of every length, the empty one included (padding first: oldest first).
        keep = torch.arange(f.max_length).flip(0) < torch.arange(rows).remainder(
            f.max_length + 1
        ).unsqueeze(1)
        hist[f.name] = codes * keep
    multi = {
        f.name: torch.randint(0, proc.vocab_size(f.name), (rows, f.max_length), generator=g)
        for f in proc.multi_hot
    }
    return Batch(
        cat=cat,
        num=torch.randn(rows, len(proc.numeric), generator=g),
        labels=torch.zeros(rows, 0),
        mask=torch.zeros(rows, 0, dtype=torch.bool),
        user=torch.zeros(rows, dtype=torch.long),
        multi=multi,
        hist=hist,
        hist_value={k: torch.randn(rows, v.shape[1], generator=g) for k, v in hist.items()},
        hist_gap={k: torch.rand(rows, v.shape[1], generator=g) * 5 for k, v in hist.items()},
    )


def _recommender(
    arch: str,
    poolings: tuple[str, ...] = ("mean",),
    dots: bool = True,
    bottom: str = "mlp",
    hidden: tuple[int, ...] = (8, 8),
) -> Recommender:
    """An untrained model (seeded, weights larger than the initialisation's so that the
    attention and gates vary between rows) over a random catalog."""
    cfg = _config(arch, poolings, dots, bottom, hidden)
    encodings = [TaskEncoding(t) for t in cfg.tasks]
    proc = FittedProcessor(cfg, {k: Vocabulary(v) for k, v in VOCABS.items()}, {}, encodings)
    tasks = TaskSet.for_job(cfg, proc.tasks)
    torch.manual_seed(0)
    model: nn.Module = build_model(proc, cfg, tasks).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.4)
    g = torch.Generator().manual_seed(1)
    catalog = Catalog(
        item_ids=[f"i{k}" for k in range(N_ITEMS)],
        user_ids=[f"u{k}" for k in range(N_USERS)],
        items=_random_batch(proc, N_ITEMS, g),
        users=_random_batch(proc, N_USERS, g),
        context=_random_batch(proc, 1, g),
        seen_ptr=np.zeros(N_USERS + 1, dtype=np.int64),
        seen_idx=np.zeros(0, dtype=np.int64),
        popularity={"_all": np.ones(N_ITEMS)},
    )
    return Recommender(model, proc, tasks, catalog, cfg.recommend)


def _plain(rec: Recommender, user: int, cand: np.ndarray) -> dict[str, np.ndarray]:
    split, rec.split = rec.split, None
    try:
        return rec.predict(user, cand)
    finally:
        rec.split = split


def _assert_same(rec: Recommender, user: int, cand: np.ndarray, what: str) -> np.ndarray:
    """Split and plain scores agree; returns the plain click scores."""
    got, want = rec.predict(user, cand), _plain(rec, user, cand)
    assert set(got) == set(want) == set(rec.list_tasks)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=1e-6, rtol=1e-5, err_msg=what)
    return want["click"]


CASES: dict[str, tuple[str, tuple[str, ...], bool, str]] = {
    **{f"{a}/mean": (a, ("mean",), True, "mlp") for a in ARCHS},
    **{f"{a}/din": (a, ("din",), True, "mlp") for a in ARCHS},
    **{f"{a}/transformer": (a, ("transformer",), True, "mlp") for a in ARCHS},
    "shared_bottom/all-poolings": ("shared_bottom", ("mean", "din", "transformer"), True, "mlp"),
    "mmoe/din/no-dots": ("mmoe", ("din",), False, "mlp"),
    "shared_bottom/din/transformer-bottom": ("shared_bottom", ("din",), True, "transformer"),
}


def test_every_architecture_is_covered() -> None:
    assert set(ARCHS) == set(ARCHITECTURES)


@pytest.mark.parametrize("case", CASES)
def test_split_scores_equal_the_plain_path(case: str) -> None:
    rec = _recommender(*CASES[case])
    assert isinstance(rec.split, SplitScorer)
    cand = np.array([3, 0, 17, 39, 3, 25, 8], dtype=np.int64)  # any order, repeats
    clicks = [_assert_same(rec, u, cand, f"{case} user {u}") for u in range(N_USERS)]
    clicks.append(_assert_same(rec, 2, np.arange(N_ITEMS), f"{case} every item"))
    assert np.ptp(np.concatenate(clicks)) > 1e-4  # real, varied scores


def test_chunks_and_attention_blocks_give_the_same_scores() -> None:
    rec = _recommender("mmoe", ("din", "transformer"))
    cand = np.resize(np.arange(N_ITEMS), 2 * FOLDED_BLOCK + 37)  # several folded blocks
    whole = rec.predict(4, cand)
    rec.cfg.chunk_size = 100
    chunked = rec.predict(4, cand)
    _assert_same(rec, 4, cand, "chunked")
    for name in whole:
        np.testing.assert_allclose(chunked[name], whole[name], atol=1e-6, rtol=1e-5)


def test_no_candidates_give_empty_scores() -> None:
    rec = _recommender("shared_bottom", ("din",))
    out = rec.predict(0, np.zeros(0, dtype=np.int64))
    assert all(len(v) == 0 for v in out.values())


def test_item_side_is_cached_and_rebuilt_when_the_catalog_or_weights_change() -> None:
    rec = _recommender("shared_bottom", ("din",))
    first = rec.item_side()
    assert rec.item_side() is first  # cached
    cand = np.arange(N_ITEMS)
    before = rec.predict(1, cand)["click"]
    # New weights in place (what a reload into the same module would do): rebuilt.
    with torch.no_grad():
        for p in rec.model.parameters():
            p.mul_(1.1)
    assert rec.item_side() is not first
    _assert_same(rec, 1, cand, "after a weight change")
    assert not np.allclose(rec.predict(1, cand)["click"], before)
    # A new catalog (other items): rebuilt, and the scores are the new items'.
    second = rec.item_side()
    g = torch.Generator().manual_seed(7)
    rec.catalog.items = _random_batch(rec.proc, N_ITEMS, g)
    assert rec.item_side() is not second
    _assert_same(rec, 1, cand, "after a catalog change")


def test_a_user_side_given_as_input_is_scored_too() -> None:
    rec = _recommender("ple", ("din", "mean"))
    user = rec.user_input("u3")
    assert user is not None
    _assert_same(rec, 3, np.arange(N_ITEMS), "catalog row")
    got = rec.predict(user, np.arange(N_ITEMS))
    want = rec.predict(3, np.arange(N_ITEMS))
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


@pytest.mark.parametrize("case", CASES)
def test_several_users_scored_together_get_their_own_scores(case: str) -> None:
    """predict_many (every user's rows through shared passes) equals the plain path per user,
    with users of different candidate counts, one with none, and chunks that span users."""
    rec = _recommender(*CASES[case])
    g = np.random.default_rng(3)
    users = [0, 3, 5, 1, 2]
    cands = [
        g.integers(0, N_ITEMS, 11),
        np.arange(N_ITEMS),
        np.zeros(0, dtype=np.int64),
        g.integers(0, N_ITEMS, 1),
        g.integers(0, N_ITEMS, 23),
    ]
    rec.cfg.chunk_size = 16  # chunks hold the rows of two and three users
    got = rec.predict_many(users, cands)
    assert len(got) == len(users)
    for u, cand, scores in zip(users, cands, got, strict=True):
        want = _plain(rec, u, cand)
        assert set(scores) == set(want)
        for name in want:
            assert scores[name].shape == want[name].shape == (len(cand), *want[name].shape[1:])
            np.testing.assert_allclose(
                scores[name], want[name], atol=1e-6, rtol=1e-5, err_msg=f"{case} user {u}"
            )


def test_recommend_many_answers_each_request_as_recommend_does() -> None:
    from mtrs.errors import MtrsUserError
    from mtrs.recommend.recommender import RecommendRequest

    rec = _recommender("mmoe", ("din",))
    requests = [
        RecommendRequest("u1", 5),
        RecommendRequest("u4", 3, candidates=["i3", "i9", "i12", "i0"]),
        RecommendRequest("stranger", 4),  # unknown user: popularity
        RecommendRequest("u2", 5, weights={"no_such_task": 1.0}),  # a bad request
        RecommendRequest("u2", 7, strategy="rrf"),
    ]
    out = rec.recommend_many(requests)
    assert len(out) == len(requests)
    bad = out[3]
    assert isinstance(bad, MtrsUserError) and "no_such_task" in str(bad)
    with pytest.raises(MtrsUserError, match="no_such_task"):
        rec.recommend("u2", 5, weights={"no_such_task": 1.0})
    for i in (0, 1, 2, 4):
        r = requests[i]
        alone = rec.recommend(r.user_id, r.k, r.strategy, r.weights, r.candidates)
        together = out[i]
        assert not isinstance(together, MtrsUserError)
        assert together.known_user == alone.known_user == (r.user_id != "stranger")
        for name, items in alone.lists.items():
            assert [x.item for x in together.lists[name]] == [x.item for x in items]
            np.testing.assert_allclose(
                [x.score or x.popularity for x in together.lists[name]],
                [x.score or x.popularity for x in items],
                rtol=1e-5,
            )
        assert [x.item for x in together.merged] == [x.item for x in alone.merged]
        assert together.profile.keys() == alone.profile.keys()
    first = out[1]
    assert not isinstance(first, MtrsUserError) and len(first.merged) == 3
    assert {x.item for x in first.merged} <= set(requests[1].candidates or [])


@pytest.mark.parametrize("arch", ARCHS)
def test_mlp_bottoms_cache_first_layer_pre_activations_not_input_rows(arch: str) -> None:
    """The item side of an MLP-bottom model holds each item's first-layer pre-activations
    (folded), a Transformer bottom's its input rows; both score as the plain path does."""
    for bottom, folded in (("mlp", True), ("transformer", False)):
        rec = _recommender(arch, ("din", "mean"), True, bottom)
        assert isinstance(rec.split, SplitScorer)
        side = rec.item_side()
        keys = {k.split(":")[-1] for k in side}
        assert ("pre" in keys, "x" in keys) == (folded, not folded), (arch, bottom, keys)
        if folded:
            maps = rec.split.input_maps(0)
            assert maps is not None
            pre = next(v for k, v in side.items() if k.split(":")[-1] == "pre")
            assert pre.shape == (N_ITEMS, maps.width)
        _assert_same(rec, 2, np.array([5, 1, 30, 5]), f"{arch}/{bottom}")


def test_a_folded_side_over_the_memory_budget_caches_input_rows() -> None:
    rec = _recommender("mmoe", ("din",), hidden=(40, 8))
    assert isinstance(rec.split, SplitScorer)
    maps = rec.split.input_maps(0)
    assert maps is not None
    width = rec.split.models[0].embedding.layout.dim  # type: ignore[union-attr]
    assert maps.width > width  # wider than the input rows: the budget decides
    assert "pre" in rec.item_side()
    rec.split.fold_budget_bytes = N_ITEMS * maps.width * 4 - 1
    rec._item_cache = None
    side = rec.item_side()
    assert "x" in side and "pre" not in side
    _assert_same(rec, 0, np.arange(N_ITEMS), "over the budget")


@pytest.mark.parametrize("arch", ["shared_bottom", "single", "ple"])
def test_profiles_run_the_user_side_pass_only(arch: str) -> None:
    """The profile of a torch model comes from the user-side pass alone, with the values of
    the full forward (which also runs the event tasks' pass)."""
    rec = _recommender(arch, ("din",))
    calls: list[bool] = []

    def seen(_: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        calls.append(bool(kwargs.get("user_only", False)))

    embeddings = [m for m in rec.model.modules() if type(m).__name__ == "FeatureEmbedding"]
    handles = [e.register_forward_pre_hook(seen, with_kwargs=True) for e in embeddings]
    try:
        got = rec.profile(3)
    finally:
        for h in handles:
            h.remove()
    assert calls and all(calls)  # user-side passes only
    row = rec._assemble(rec._user(3), rec.catalog.context, torch.zeros(1, dtype=torch.long))
    with torch.no_grad():
        want = rec.tasks.predict(rec.model(row).logits)
    assert set(got) == {"gender"}
    assert got["gender"] == pytest.approx(float(want["gender"][0]), rel=1e-6)
