"""The service on a tiny trained model: every endpoint against the Recommender and the model."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mtrs.artifact import load_model
from mtrs.data.processor import HistoryInput
from mtrs.errors import MtrsUserError
from mtrs.eval.evaluator import predict
from mtrs.jsonio import json_safe
from mtrs.recommend.recommender import Recommendation, Recommender
from mtrs.serve.app import create_app, current
from mtrs.serve.events import Event, serving_input

from .conftest import Models

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LISTS = {"click", "purchase", "click_purchase"}


@pytest.fixture
def app(models: Models) -> FastAPI:
    """A fresh app (fresh events and metrics) per test."""
    return create_app(models.a, admin_token=TOKEN)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def rec(models: Models) -> Recommender:
    """An independent Recommender of the same directory: the reference."""
    return load_model(models.a).recommender()


def _log(models: Models) -> pd.DataFrame:
    return pd.read_csv(models.data / "interactions.csv")


def _busy_user(models: Models) -> str:
    ev = _log(models)
    return str(ev[ev["click"] == 1].groupby("user_id").size().idxmax())


def _as_json(rec: Recommendation) -> dict[str, Any]:
    """The parts of a Recommendation the service answers, in its shape."""
    doc = rec.to_json()

    def items(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {
                "item": e["item"],
                "score": e.get("score"),
                "popularity": e.get("popularity"),
                "title": e["title"],
                "display": e["display"],
            }
            for e in entries
        ]

    return {
        "lists": {t: items(v) for t, v in doc["lists"].items()},
        "merged": items(doc["merged"]),
        "merge": doc["merge"],
        "profile": doc["profile"],
        "fallback": doc["fallback"],
    }


def _same(got: Any, want: Any) -> None:
    """Equal structures, floats to 1e-6."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), (got, want)
        for k in want:
            _same(got[k], want[k])
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), (got, want)
        for a, b in zip(got, want, strict=True):
            _same(a, b)
    elif isinstance(want, float):
        assert got == pytest.approx(want, abs=1e-6)
    else:
        assert got == want


# ----- /v1/recommend ---------------------------------------------------------------------------
def test_recommend_equals_the_recommender(client: TestClient, rec: Recommender, models: Models):
    user = _busy_user(models)
    r = client.post("/v1/recommend", json={"user_id": int(user), "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    want = rec.recommend(user, k=5)
    _same({k: body[k] for k in ("lists", "merged", "merge", "profile", "fallback")}, _as_json(want))
    assert set(body["lists"]) == LISTS and len(body["merged"]) == 5
    assert body["user_id"] == user and body["known_user"] and not body["fallback"]
    assert body["merge"] == {
        "strategy": "weighted_product",
        "weights": {"click": 1.0, "purchase": 2.0},
    }
    assert body["server_ms"] > 0
    # Titles and display columns come from the items table.
    items = pd.read_csv(models.data / "items.csv").set_index("item_id")
    top = body["merged"][0]
    assert top["title"] == items.loc[int(top["item"]), "brand"]
    assert top["display"] == {
        "category": items.loc[int(top["item"]), "category"],
        "price": pytest.approx(items.loc[int(top["item"]), "price"]),
    }
    assert set(body["profile"]) == {"gender"} and 0 < body["profile"]["gender"] < 1


def test_recommend_merge_candidates_and_exclude_seen(
    client: TestClient, rec: Recommender, models: Models
) -> None:
    user = _busy_user(models)
    merge = {"strategy": "rrf", "weights": {"click_purchase": 1.0}}
    body = client.post("/v1/recommend", json={"user_id": user, "k": 4, "merge": merge}).json()
    _same(
        body["merged"], _as_json(rec.recommend(user, 4, "rrf", {"click_purchase": 1.0}))["merged"]
    )
    assert body["merge"] == merge
    # Candidates: only those, ranked.
    cands = ["3", "1", "4", "1"]
    body = client.post("/v1/recommend", json={"user_id": user, "candidates": cands}).json()
    assert {i["item"] for i in body["merged"]} <= {"1", "3", "4"}
    _same(body["lists"], _as_json(rec.recommend(user, candidates=cands))["lists"])
    # exclude_seen: the seen items are candidates only when it is false.
    row = rec.catalog.user_row(user)
    assert row is not None
    seen = {rec.catalog.item_ids[p] for p in rec.catalog.seen(row)}
    assert seen
    n = len(rec.catalog.item_ids)
    kept = client.post("/v1/recommend", json={"user_id": user, "k": 1000}).json()
    every = client.post(
        "/v1/recommend", json={"user_id": user, "k": 1000, "exclude_seen": False}
    ).json()
    assert {i["item"] for i in kept["lists"]["click"]} == set(rec.catalog.item_ids) - seen
    assert len(every["lists"]["click"]) == n and seen <= {i["item"] for i in every["merged"]}
    _same(every["lists"], _as_json(rec.recommend(user, k=1000, exclude_seen=False))["lists"])
    # The shared config is not changed by a request.
    assert rec.cfg.exclude_seen and current(client.app).scorer.cfg.exclude_seen  # type: ignore[attr-defined]


def test_recommend_context_overrides_the_default(
    client: TestClient, rec: Recommender, models: Models
) -> None:
    user = _busy_user(models)
    context = {"device": "ios", "hour": 3}
    body = client.post("/v1/recommend", json={"user_id": user, "context": context}).json()
    want = rec.recommend(user, context=rec.context_row(context))
    _same(body["lists"], _as_json(want)["lists"])
    default = rec.recommend(user)
    assert [i.score for i in want.lists["click"]] != [i.score for i in default.lists["click"]]
    r = client.post("/v1/recommend", json={"user_id": user, "context": {"weather": "sun"}})
    assert r.status_code == 422
    assert r.json()["field"] == "context.weather" and "hour, device" in r.json()["error"]


def test_unknown_user_gets_the_popularity_fallback(client: TestClient, rec: Recommender) -> None:
    body = client.post("/v1/recommend", json={"user_id": "nobody-ü", "k": 3}).json()
    assert body["fallback"] and not body["known_user"]
    assert body["merge"] == {"strategy": "popularity", "weights": {}}
    share = rec.catalog.popularity_share()
    best = [rec.catalog.item_ids[i] for i in np.argsort(-share, kind="stable")[:3]]
    assert [i["item"] for i in body["merged"]] == best
    assert body["merged"][0]["popularity"] == pytest.approx(share.max())
    assert body["merged"][0]["score"] is None and body["profile"] == {}


# ----- /v1/score -------------------------------------------------------------------------------
def test_score_equals_the_model_on_hand_built_rows(client: TestClient, models: Models) -> None:
    """The rows built by hand (items, the user's profile, the context, the catalog's history)
    and encoded as a batch: /v1/score must give the model's predictions of exactly them."""
    loaded = load_model(models.a)
    proc = loaded.processor
    user = _busy_user(models)
    wanted = ["7", "2", "7", "39", "0"]
    context = {"device": "ios", "hour": 5}
    r = client.post("/v1/score", json={"user_id": user, "items": wanted, "context": context})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["items"] == wanted
    assert set(body["scores"]) == {"click", "purchase", "click_purchase"}

    items = pd.read_csv(models.data / "items.csv").set_index("item_id")
    rows = items.loc[[int(i) for i in wanted]].reset_index()
    profile = pd.read_csv(models.data / "users.csv").set_index("user_id").loc[int(user)]
    for col in ("age_group", "gender", "city_tier"):
        rows[col] = profile[col]
    rows["user_id"] = int(user)
    rows["timestamp"] = 0
    rows["device"], rows["hour"] = context["device"], context["hour"]
    row = loaded.catalog.user_row(user)
    assert row is not None
    hist = loaded.catalog.users.hist["clicked_items"][row].numpy()
    given = HistoryInput({"clicked_items": np.tile(hist, (len(rows), 1))}, {}, {})
    expected = predict(loaded.model, proc.encode(rows, history=given), loaded.tasks)
    for task in body["scores"]:
        np.testing.assert_allclose(body["scores"][task], expected[task], atol=1e-6, err_msg=task)
    assert body["scores"]["click"][0] == body["scores"]["click"][2]  # the same item twice
    assert body["profile"]["gender"] == pytest.approx(float(expected["gender"][0]), abs=1e-6)


def test_score_refuses_unknown_users_and_items(client: TestClient, models: Models) -> None:
    r = client.post("/v1/score", json={"user_id": "nobody", "items": ["1"]})
    assert r.status_code == 404 and r.json()["field"] == "user_id"
    assert "unknown user 'nobody'" in r.json()["error"]
    r = client.post("/v1/score", json={"user_id": _busy_user(models), "items": ["1", "nope"]})
    assert r.status_code == 422
    assert r.json() == {"error": "items[1]: unknown item id 'nope'", "field": "items[1]"}


# ----- /v1/events ------------------------------------------------------------------------------
def _unseen_top(client: TestClient, user: str) -> str:
    """The user's top merged item now (unseen, so an event on it changes something)."""
    return str(
        client.post("/v1/recommend", json={"user_id": user, "k": 1}).json()["merged"][0]["item"]
    )


def test_an_event_enters_the_history_and_the_seen_items(
    app: FastAPI, client: TestClient, rec: Recommender, models: Models
) -> None:
    user = _busy_user(models)
    before = client.post("/v1/recommend", json={"user_id": user, "k": 1000}).json()
    item = _unseen_top(client, user)
    r = client.post("/v1/events", json={"user_id": user, "item_id": item, "labels": {"click": 1}})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "user_id": user,
        "item_id": item,
        "known_item": True,
        "entered_history": {"clicked_items": True},
        "served_events": 1,
    }
    # The history the model reads now ends with the item's code, the rest shifted left.
    scorer = current(app).scorer
    got = serving_input(scorer, user, app.state.events.events(user))
    assert got is not None
    old = rec.catalog.users.hist["clicked_items"][rec.catalog.user_row(user)].numpy()
    new = got.features.hist["clicked_items"][0].numpy()
    code = int(rec.proc.encode_items(pd.Series([item]))[0])
    assert new[-1] == code and code > 1
    np.testing.assert_array_equal(new[:-1], old[1:])
    # The next lists reflect it: the item is seen (excluded) and the scores moved.
    after = client.post("/v1/recommend", json={"user_id": user, "k": 1000}).json()
    assert after["served_events"] == 1
    assert item in {i["item"] for i in before["merged"]}
    assert item not in {i["item"] for i in after["merged"]}
    assert len(after["merged"]) == len(before["merged"]) - 1
    scores = lambda b: {i["item"]: i["score"] for i in b["lists"]["click"]}  # noqa: E731
    moved = [k for k in scores(after) if abs(scores(after)[k] - scores(before)[k]) > 1e-7]
    assert moved, "the new history must change the scores"
    # ... and equal the Recommender given the same input.
    want = rec.recommend(user, k=1000, user=got)
    _same(after["lists"], _as_json(want)["lists"])
    # Not excluded when exclude_seen is false.
    every = client.post("/v1/recommend", json={"user_id": user, "exclude_seen": False, "k": 1000})
    assert item in {i["item"] for i in every.json()["merged"]}


def test_a_non_click_event_is_seen_but_not_history(
    app: FastAPI, client: TestClient, rec: Recommender, models: Models
) -> None:
    user = _busy_user(models)
    item = _unseen_top(client, user)
    r = client.post("/v1/events", json={"user_id": user, "item_id": item, "labels": {"click": 0}})
    assert r.json()["entered_history"] == {"clicked_items": False}
    got = serving_input(current(app).scorer, user, app.state.events.events(user))
    assert got is not None
    row = rec.catalog.user_row(user)
    np.testing.assert_array_equal(
        got.features.hist["clicked_items"][0].numpy(),
        rec.catalog.users.hist["clicked_items"][row].numpy(),
    )
    assert rec.catalog.item_positions([item])[0] in set(got.seen)
    merged = client.post("/v1/recommend", json={"user_id": user, "k": 1000}).json()["merged"]
    assert item not in {i["item"] for i in merged}


def test_events_give_an_unknown_user_model_lists(
    app: FastAPI, client: TestClient, rec: Recommender
) -> None:
    user = "new-user-1"
    assert client.post("/v1/recommend", json={"user_id": user}).json()["fallback"]
    for item in ("5", "9"):
        client.post("/v1/events", json={"user_id": user, "item_id": item, "timestamp": 10})
    body = client.post("/v1/recommend", json={"user_id": user, "k": 1000}).json()
    assert not body["fallback"] and not body["known_user"] and body["served_events"] == 2
    assert {"5", "9"}.isdisjoint(i["item"] for i in body["merged"])
    assert body["merge"]["strategy"] == "weighted_product" and "gender" in body["profile"]
    got = serving_input(current(app).scorer, user, app.state.events.events(user))
    assert got is not None
    hist = got.features.hist["clicked_items"][0].numpy()
    np.testing.assert_array_equal(hist[-2:], rec.proc.encode_items(pd.Series(["5", "9"])))
    assert not hist[:-2].any()
    assert (got.features.cat[0].numpy()[rec._cat_cols["user"]] == 1).all()  # OOV user features
    _same(body["lists"], _as_json(rec.recommend(user, k=1000, user=got))["lists"])
    # /v1/score now knows the user too.
    assert client.post("/v1/score", json={"user_id": user, "items": ["1"]}).status_code == 200


def test_event_store_is_bounded(rec: Recommender) -> None:
    from mtrs.serve.events import EventStore

    store = EventStore(per_user=3, max_users=2)
    for i in range(5):
        store.append("a", Event(str(i)))
    assert [e.item_id for e in store.events("a")] == ["2", "3", "4"]
    store.append("b", Event("1"))
    store.append("c", Event("1"))
    assert store.events("a") == () and len(store) == 2
    # More events than the history holds: the last max_length ones, in order.
    events = tuple(Event(str(i % 40)) for i in range(30))
    got = serving_input(rec, "nobody", events)
    assert got is not None
    want = rec.proc.encode_items(pd.Series([str(i % 40) for i in range(10, 30)]))
    np.testing.assert_array_equal(got.features.hist["clicked_items"][0].numpy(), want)


def test_event_errors(client: TestClient) -> None:
    r = client.post("/v1/events", json={"user_id": "u", "item_id": "nope"})
    assert r.status_code == 422 and r.json()["field"] == "item_id"
    r = client.post("/v1/events", json={"user_id": "u", "item_id": "1", "labels": {"clikc": 1}})
    assert r.status_code == 422 and r.json()["field"] == "labels.clikc"
    assert "click" in r.json()["error"]
    r = client.post("/v1/events", json={"user_id": "u", "item_id": "1", "timestamp": -1})
    assert r.status_code == 422 and r.json()["field"] == "timestamp"


# ----- /v1/model, health, metrics ----------------------------------------------------------------
def test_model_endpoint(client: TestClient, models: Models) -> None:
    body = client.get("/v1/model").json()
    manifest = (models.a / "manifest.json").read_bytes()
    assert body["model_id"] == hashlib.sha256(manifest).hexdigest()
    assert body["architecture"] == "shared_bottom" and body["backend"] == "torch"
    tasks = {t["name"]: (t["type"], t["scope"], t["has_list"]) for t in body["tasks"]}
    assert tasks == {
        "click": ("binary", "event", True),
        "purchase": ("binary", "event", True),
        "gender": ("binary", "user", False),
        "click_purchase": ("binary", "event", True),
    }
    joint = next(t for t in body["tasks"] if t["name"] == "click_purchase")
    assert joint["joint_of"] == ["click", "purchase"]
    metrics = json_safe(json.loads((models.a / "metrics.json").read_text()))
    assert body["metrics"] == metrics and "auc" in body["metrics"]["tasks"]["click"]
    assert body["context_features"] == ["hour", "device"]
    assert body["history_features"] == ["clicked_items"]
    assert (body["num_items"], body["directory"]) == (40, str(models.a))
    assert body["loaded_at"].endswith("+00:00")


def test_health_ready_root_and_openapi(client: TestClient, models: Models) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "model_id": None}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "/v1/recommend" in r.text  # the page calls the JSON API
    users = client.get("/v1/users", params={"limit": 5}).json()
    known = client.get("/v1/model").json()["num_users"]
    assert users["total"] == known > 5 and len(users["user_ids"]) == 5
    assert client.post("/v1/recommend", json={"user_id": users["user_ids"][0]}).json()["known_user"]
    assert client.get("/v1/users", params={"limit": 0}).status_code == 422
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/recommend", "/v1/score", "/v1/events", "/v1/model", "/v1/admin/reload"} <= set(
        paths
    )
    assert client.get("/docs").status_code == 200
    empty = create_app(None, admin_token=TOKEN)
    with TestClient(empty) as c:
        assert c.get("/readyz").status_code == 503
        r = c.post("/v1/recommend", json={"user_id": "1"})
        assert r.status_code == 503 and "no model is loaded" in r.json()["error"]
        assert (
            c.post("/v1/admin/reload", json={"model_dir": str(models.a)}, headers=AUTH).json()[
                "previous_model_id"
            ]
            is None
        )
        assert c.get("/readyz").status_code == 200


def test_metrics_count_requests_by_endpoint_and_status(client: TestClient) -> None:
    client.post("/v1/recommend", json={"user_id": "1"})
    client.post("/v1/recommend", json={"user_id": "1"})
    client.post("/v1/recommend", json={"user_id": "1", "k": 0})
    client.get("/no/such/path")
    text = client.get("/metrics").text
    assert (
        'mtrs_http_requests_total{endpoint="/v1/recommend",method="POST",status="200"} 2.0' in text
    )
    assert (
        'mtrs_http_requests_total{endpoint="/v1/recommend",method="POST",status="422"} 1.0' in text
    )
    assert 'mtrs_http_requests_total{endpoint="unmatched",method="GET",status="404"} 1.0' in text
    assert 'mtrs_http_request_seconds_count{endpoint="/v1/recommend"} 3.0' in text
    assert "mtrs_http_request_seconds_bucket" in text


# ----- reload and auth ---------------------------------------------------------------------------
def test_reload_swaps_and_a_broken_directory_keeps_the_old_model(
    client: TestClient, models: Models, tmp_path: Path
) -> None:
    user = _busy_user(models)
    id_a = client.get("/v1/model").json()["model_id"]
    broken = tmp_path / "broken"
    shutil.copytree(models.b, broken)
    with (broken / "model.safetensors").open("r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    for bad in (broken, tmp_path / "missing"):
        r = client.post("/v1/admin/reload", json={"model_dir": str(bad)}, headers=AUTH)
        assert r.status_code == 409 and r.json()["field"] == "model_dir"
        assert "the current model keeps serving" in r.json()["error"]
    assert (
        "checksum does not match"
        in client.post("/v1/admin/reload", json={"model_dir": str(broken)}, headers=AUTH).json()[
            "error"
        ]
    )
    assert client.get("/v1/model").json()["model_id"] == id_a
    assert client.post("/v1/recommend", json={"user_id": user}).json()["model_id"] == id_a
    r = client.post("/v1/admin/reload", json={"model_dir": str(models.b)}, headers=AUTH)
    assert r.status_code == 200, r.text
    id_b = hashlib.sha256((models.b / "manifest.json").read_bytes()).hexdigest()
    assert r.json()["model_id"] == id_b != id_a and r.json()["previous_model_id"] == id_a
    assert client.get("/v1/model").json()["architecture"] == "single"
    body = client.post("/v1/recommend", json={"user_id": user, "k": 3}).json()
    assert body["model_id"] == id_b
    want = load_model(models.b).recommender().recommend(user, k=3)
    _same(body["lists"], _as_json(want)["lists"])
    text = client.get("/metrics").text
    assert 'mtrs_model_reloads_total{outcome="refused"} 3.0' in text
    assert 'mtrs_model_reloads_total{outcome="ok"} 1.0' in text


def test_a_request_in_flight_finishes_on_the_old_model(
    app: FastAPI, client: TestClient, models: Models, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reload lands while a request is scoring: that request answers from the old model."""
    from mtrs.serve.state import load_served

    old = current(app)
    new = load_served(models.b)
    real = type(old.scorer).recommend_many

    def swapped_mid_request(
        self: Recommender, *args: Any, **kwargs: Any
    ) -> list[Recommendation | MtrsUserError]:
        app.state.holder.swap(new)
        return real(self, *args, **kwargs)

    # The service scores /v1/recommend through recommend_many (its batcher).
    monkeypatch.setattr(type(old.scorer), "recommend_many", swapped_mid_request)
    user = _busy_user(models)
    body = client.post("/v1/recommend", json={"user_id": user, "k": 3}).json()
    monkeypatch.undo()
    assert body["model_id"] == old.model_id
    _same(body["lists"], _as_json(old.scorer.recommend(user, k=3))["lists"])
    assert client.post("/v1/recommend", json={"user_id": user}).json()["model_id"] == new.model_id


def test_admin_needs_the_token(models: Models, monkeypatch: pytest.MonkeyPatch) -> None:
    body = {"model_dir": str(models.a)}
    monkeypatch.delenv("MTRS_ADMIN_TOKEN", raising=False)
    with TestClient(create_app(models.a)) as c:
        r = c.post("/v1/admin/reload", json=body, headers=AUTH)
        assert r.status_code == 403 and "MTRS_ADMIN_TOKEN" in r.json()["error"]
    monkeypatch.setenv("MTRS_ADMIN_TOKEN", TOKEN)
    with TestClient(create_app(models.a)) as c:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            r = c.post("/v1/admin/reload", json=body, headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            assert r.json()["field"] == "Authorization"
        # The token is checked before the body: no token, no validation message either.
        assert c.post("/v1/admin/reload", json={"bogus": 1}).status_code == 401
        assert c.post("/v1/admin/reload", json=body, headers=AUTH).status_code == 200


# ----- bad requests ------------------------------------------------------------------------------
BAD = [
    ("/v1/recommend", {"user_id": "1", "k": 0}, 422, "k"),
    ("/v1/recommend", {"user_id": "1", "k": 1001}, 422, "k"),
    ("/v1/recommend", {"user_id": "1", "k": 10**30}, 422, "k"),
    ("/v1/recommend", {"user_id": "1", "k": "5"}, 422, "k"),
    ("/v1/recommend", {"user_id": "1", "bogus": 1}, 422, "bogus"),
    ("/v1/recommend", {"k": 3}, 422, "user_id"),
    ("/v1/recommend", {"user_id": True}, 422, "user_id"),
    ("/v1/recommend", {"user_id": ""}, 422, "user_id"),
    ("/v1/recommend", {"user_id": "1", "merge": {"strategy": "max"}}, 422, "merge.strategy"),
    ("/v1/recommend", {"user_id": "1", "merge": {"weights": {"clik": 1}}}, 422, "merge.weights"),
    (
        "/v1/recommend",
        {"user_id": "1", "merge": {"weights": {"click": -1}}},
        422,
        "merge.weights.click",
    ),
    ("/v1/recommend", {"user_id": "1", "merge": {"weights": {"click": 0}}}, 422, "merge.weights"),
    ("/v1/recommend", {"user_id": "1", "candidates": ["1", "zz"]}, 422, "candidates"),
    ("/v1/recommend", {"user_id": "1", "candidates": []}, 422, "candidates"),
    ("/v1/recommend", {"user_id": "1", "context": {"hour": [1]}}, 422, "context.hour"),
    ("/v1/recommend", {"user_id": "1", "context": {"hour": {"a": 1}}}, 422, "context.hour"),
    ("/v1/recommend", {"user_id": "1", "exclude_seen": "no"}, 422, "exclude_seen"),
    ("/v1/recommend", [1, 2], 422, "body"),
    ("/v1/score", {"user_id": "1", "items": []}, 422, "items"),
    ("/v1/score", {"user_id": "1", "items": ["1"] * 10_001}, 422, "items"),
    (
        "/v1/events",
        {"user_id": "1", "item_id": "1", "labels": {"click": "yes"}},
        422,
        "labels.click",
    ),
    ("/v1/events", {"user_id": "1", "item_id": [1]}, 422, "item_id"),
]


@pytest.mark.parametrize(("path", "body", "status", "field"), BAD)
def test_bad_requests_name_the_field(
    client: TestClient, path: str, body: Any, status: int, field: str
) -> None:
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field, r.json()
    assert r.json()["error"].startswith(field.split(".")[0]), r.json()


def test_non_finite_numbers_and_malformed_json(client: TestClient) -> None:
    headers = {"Content-Type": "application/json"}
    for text, field in (
        ('{"user_id": "1", "merge": {"weights": {"click": NaN}}}', "merge.weights.click"),
        ('{"user_id": "1", "merge": {"weights": {"click": Infinity}}}', "merge.weights.click"),
        ('{"user_id": "1", "context": {"hour": 1e999}}', "context.hour"),
    ):
        r = client.post("/v1/recommend", content=text, headers=headers)
        assert r.status_code == 422 and r.json()["field"] == field, r.text
    r = client.post("/v1/recommend", content='{"user_id": ', headers=headers)
    assert r.status_code == 400 and r.json()["error"].startswith("body: malformed JSON")
    r = client.post("/v1/recommend", content="[" * 100_000, headers=headers)
    assert (r.status_code == 400 and r.json()["field"] is None) or r.json()["field"] == "body"
    r = client.post(
        "/v1/recommend", content='{"user_id": "1"}', headers={"Content-Type": "text/plain"}
    )
    assert r.status_code == 422 and r.json()["field"] == "body"
    assert client.get("/v1/recommend").status_code == 405


def test_oversized_bodies_are_refused_before_parsing(models: Models) -> None:
    with TestClient(create_app(models.a, max_body_bytes=1000)) as c:
        big = {"user_id": "1", "candidates": ["1"] * 400}
        r = c.post("/v1/recommend", json=big)
        assert r.status_code == 413 and r.json()["field"] == "body"
        assert "1,000 bytes" in r.json()["error"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
            yield b'{"user_id": "1", "candidates": ['
            for _ in range(300):
                yield b'"1",'
            yield b'"1"]}'

        r = c.post("/v1/recommend", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413
        assert c.post("/v1/recommend", json={"user_id": "1"}).status_code == 200
        assert 'endpoint="/v1/recommend",method="POST",status="413"} 2.0' in c.get("/metrics").text


def test_concurrent_requests_during_reloads_never_mix_models(
    app: FastAPI, client: TestClient, models: Models
) -> None:
    """Threads recommend while the main thread swaps A and B: every answer is whole, and the
    lists are exactly those of the model its ``model_id`` names."""
    import threading

    user = _busy_user(models)
    want = {}
    for d in (models.a, models.b):
        digest = hashlib.sha256((d / "manifest.json").read_bytes()).hexdigest()
        want[digest] = _as_json(load_model(d).recommender().recommend(user, k=3))["lists"]
    answers: list[dict[str, Any]] = []
    failures: list[str] = []

    def worker() -> None:
        for _ in range(12):
            r = client.post("/v1/recommend", json={"user_id": user, "k": 3})
            if r.status_code != 200:
                failures.append(r.text)
            else:
                answers.append(r.json())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for d in (models.b, models.a, models.b, models.a):
        assert client.post("/v1/admin/reload", json={"model_dir": str(d)}, headers=AUTH).is_success
    for t in threads:
        t.join(timeout=120)
    assert not failures and len(answers) == 48
    for body in answers:
        _same(body["lists"], want[body["model_id"]])
