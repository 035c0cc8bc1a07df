"""The service on the ratings example: a regression task, history side values, a user-id
feature, sampled negatives and a multi-hot display column."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from mtrs.artifact import load_model, save_job
from mtrs.config.load import config_from_dict
from mtrs.datasets.examples import write_ratings
from mtrs.job import run_job
from mtrs.recommend.recommender import Recommender
from mtrs.serve.app import create_app, current
from mtrs.serve.events import serving_input

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "examples" / "ratings.toml"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ratings")
    write_ratings(root, users=60, items=120, seed=2)
    raw = tomllib.loads(CONFIG.read_text("utf-8"))
    for key in ("interactions", "items"):
        raw["data"][key] = str(root / raw["data"][key])
    raw["train"].update({"epochs": 1, "progress": False, "device": "cpu"})
    return save_job(run_job(config_from_dict(raw)), root / "model")


@pytest.fixture(scope="module")
def rec(model_dir: Path) -> Recommender:
    return load_model(model_dir).recommender()


@pytest.fixture
def client(model_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(model_dir)) as c:
        yield c


def test_score_gives_regression_values_on_the_label_scale(
    client: TestClient, rec: Recommender
) -> None:
    user = rec.catalog.user_ids[0]
    items = rec.catalog.item_ids[:5]
    body = client.post("/v1/score", json={"user_id": user, "items": items}).json()
    assert set(body["scores"]) == {"rated", "like", "rating"}
    row = rec.catalog.user_row(user)
    assert row is not None
    want = rec.predict(row, rec.catalog.item_positions(items), tasks=["rated", "like", "rating"])
    for task, values in body["scores"].items():
        np.testing.assert_allclose(values, want[task], atol=1e-6, err_msg=task)
    # A rating, not a standardised value: within the stars' range give or take.
    assert all(-1.0 < v < 7.0 for v in body["scores"]["rating"])
    assert np.ptp(body["scores"]["rating"]) > 0
    lists = client.post("/v1/recommend", json={"user_id": user, "k": 3}).json()["lists"]
    assert set(lists) == {"rated", "like", "rating"}
    assert lists["rating"][0]["title"] and "genres" in lists["rating"][0]["display"]


def test_events_carry_the_history_value_and_the_filter(
    client: TestClient, rec: Recommender
) -> None:
    app = client.app
    user = "a-new-user"
    post = lambda item, labels: client.post(  # noqa: E731
        "/v1/events", json={"user_id": user, "item_id": item, "labels": labels}
    )
    item_a, item_b, item_c = rec.catalog.item_ids[:3]
    assert post(item_a, {"rated": 1, "rating": 5.0}).json()["entered_history"] == {"recent": True}
    assert post(item_b, {"rated": 0}).json()["entered_history"] == {"recent": False}
    assert post(item_c, {"rating": 1.5}).json()["entered_history"] == {"recent": True}
    got = serving_input(current(app).scorer, user, app.state.events.events(user))  # type: ignore[attr-defined]
    assert got is not None
    codes = got.features.hist["recent"][0].numpy()
    values = got.features.hist_value["recent"][0].numpy()
    np.testing.assert_array_equal(codes[-2:], rec.proc.encode_items(pd.Series([item_a, item_c])))
    assert not codes[:-2].any()
    scaled = rec.proc.scalers["recent"].transform(np.array([5.0, 1.5]))
    np.testing.assert_allclose(values[-2:], scaled, atol=1e-6)
    # No user-id embedding for a user the catalog lacks: the out-of-vocabulary code.
    user_col = [f.name for f in rec.proc.categorical].index("userId")
    assert int(got.features.cat[0, user_col]) == 1
    body = client.post("/v1/recommend", json={"user_id": user, "k": 50}).json()
    assert not body["fallback"] and not body["known_user"]
    assert {item_a, item_b, item_c}.isdisjoint(i["item"] for i in body["merged"])
