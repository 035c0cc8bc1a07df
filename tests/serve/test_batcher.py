"""The recommend batcher: requests that wait together are scored together, each answered as
alone, a bad one failing only itself, and each on the model it was submitted against."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from mtrs.errors import MtrsUserError
from mtrs.recommend.recommender import Recommendation, Recommender, RecommendRequest
from mtrs.serve.batcher import RecommendBatcher
from mtrs.serve.state import load_served

from .conftest import Models


def _lists(rec: Recommendation) -> dict[str, list[tuple[str, float | None]]]:
    out = {t: [(x.item, x.score) for x in v] for t, v in rec.lists.items()}
    out["_merged"] = [(x.item, x.score) for x in rec.merged]
    return out


def _same(got: Recommendation, want: Recommendation) -> None:
    a, b = _lists(got), _lists(want)
    assert a.keys() == b.keys()
    for name in b:
        assert [i for i, _ in a[name]] == [i for i, _ in b[name]], name
        for (_, x), (_, y) in zip(a[name], b[name], strict=True):
            assert (x is None and y is None) or abs((x or 0.0) - (y or 0.0)) < 1e-5


def test_concurrent_requests_are_batched_and_answered_as_alone(
    models: Models, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = load_served(models.a)
    sc = served.scorer
    users = [str(u) for u in sc.catalog.user_ids[:12]] + ["nobody"]
    requests = [RecommendRequest(u, 4) for u in users]
    requests.append(RecommendRequest(users[0], 4, weights={"not_a_task": 1.0}))
    sizes: list[int] = []
    gate = threading.Event()
    real = type(sc).recommend_many

    def counted(self: Recommender, batch: Any) -> list[Recommendation | MtrsUserError]:
        gate.wait(10)  # hold the first batch so that the others queue behind it
        sizes.append(len(batch))
        return real(self, batch)

    monkeypatch.setattr(type(sc), "recommend_many", counted)
    batcher = RecommendBatcher(max_batch=8)
    try:
        futures: list[Future[Recommendation]] = [batcher.submit(served, r) for r in requests]
        gate.set()
        answers: list[Recommendation | BaseException] = []
        for f in futures:
            err = f.exception(timeout=30)
            answers.append(err if err is not None else f.result())
    finally:
        batcher.close()
    monkeypatch.undo()
    # 14 requests, at most 8 per pass: the first alone or with the few already queued, then
    # the rest in passes of up to 8, never one pass per request.
    assert sum(sizes) == len(requests) and max(sizes) <= 8 and len(sizes) < len(requests)
    assert batcher.requests == len(requests) and batcher.batches == len(sizes)
    bad = answers[-1]
    assert isinstance(bad, MtrsUserError) and "not_a_task" in str(bad)
    for r, got in zip(requests[:-1], answers[:-1], strict=True):
        assert isinstance(got, Recommendation)
        _same(got, sc.recommend(r.user_id, r.k))
    fallback = answers[-2]
    assert isinstance(fallback, Recommendation) and not fallback.known_user


def test_each_request_is_scored_on_the_model_it_was_submitted_against(models: Models) -> None:
    a, b = load_served(models.a), load_served(models.b)
    user = str(a.scorer.catalog.user_ids[0])
    batcher = RecommendBatcher()
    try:
        with ThreadPoolExecutor(4) as pool:
            futures = [
                pool.submit(lambda s=s: batcher.submit(s, RecommendRequest(user, 5)).result(30))
                for s in (a, b, a, b, a, b)
            ]
            got = [f.result() for f in futures]
    finally:
        batcher.close()
    for served, rec in zip((a, b, a, b, a, b), got, strict=True):
        _same(rec, served.scorer.recommend(user, 5))
    assert _lists(got[0]) != _lists(got[1])  # the two models do rank differently


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        RecommendBatcher(0)
