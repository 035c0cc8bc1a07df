"""Tests for mtrs.recommend.recommender on a tiny trained model: lists, merge, profile."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd
import pytest

from mtrs.artifact import LoadedModel, load_model, save_job
from mtrs.config.load import config_from_dict
from mtrs.data.processor import FittedProcessor, HistoryInput
from mtrs.data.split import TRAIN
from mtrs.datasets.synth import SynthData, SynthSpec, generate, write
from mtrs.errors import MtrsUserError
from mtrs.eval.evaluator import predict
from mtrs.job import Job, run_job
from mtrs.recommend.catalog import build_catalog
from mtrs.recommend.merge import merge, top_k
from mtrs.recommend.recommender import Recommender

LIST_TASKS = {"click", "purchase", "click_purchase"}


@dataclass
class Trained:
    data: SynthData
    job: Job
    loaded: LoadedModel
    rec: Recommender


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    out = tmp_path_factory.mktemp("synth")
    data = generate(SynthSpec(num_users=100, num_items=50, num_events=5_000, seed=1))
    write(data, out)
    raw = tomllib.loads(resources.files("mtrs").joinpath("configs/quickstart.toml").read_text())
    for key in ("interactions", "users", "items"):
        raw["data"][key] = str(out / raw["data"][key])
    raw["train"].update({"epochs": 1, "progress": False, "device": "cpu"})
    job = run_job(config_from_dict(raw))
    loaded = load_model(save_job(job, out / "model"))
    return Trained(data, job, loaded, loaded.recommender())


def _clicked(t: Trained, user: int) -> set[str]:
    ev = t.data.interactions
    return {str(i) for i in ev.loc[(ev["user_id"] == user) & (ev["click"] == 1), "item_id"]}


def _busy_user(t: Trained) -> int:
    """The user with the most clicks (a long history, many seen items)."""
    ev = t.data.interactions
    return int(ev[ev["click"] == 1].groupby("user_id").size().idxmax())


def _unseen_positions(t: Trained, user: int) -> np.ndarray:
    ids = t.rec.catalog.item_ids
    seen = _clicked(t, user)
    return np.array([p for p, i in enumerate(ids) if i not in seen], dtype=np.int64)


# ----- a known user ---------------------------------------------------------------------------
def test_catalog_covers_every_item_and_user(trained: Trained) -> None:
    cat = trained.rec.catalog
    assert sorted(cat.item_ids, key=int) == [str(i) for i in range(50)]
    assert set(cat.user_ids) == {str(u) for u in trained.data.interactions["user_id"].unique()}


def test_known_user_gets_k_unseen_items_per_task(trained: Trained) -> None:
    user = _busy_user(trained)
    seen = _clicked(trained, user)
    assert len(seen) >= 3
    rec = trained.rec.recommend(str(user), k=7)
    assert rec.known_user and rec.to_json()["source"] == "model"
    assert set(rec.lists) == LIST_TASKS
    for task, items in [*rec.lists.items(), ("merged", rec.merged)]:
        ids = [i.item for i in items]
        scores = [i.score for i in items]
        assert len(ids) == 7 and len(set(ids)) == 7, task
        assert not set(ids) & seen, f"{task} recommends an already clicked item"
        assert scores == sorted(scores, reverse=True), task


def test_lists_and_merge_agree_with_the_task_scores(trained: Trained) -> None:
    user = _busy_user(trained)
    rec = trained.rec.recommend(str(user), k=5)
    cand = _unseen_positions(trained, user)
    row = trained.rec.catalog.user_row(str(user))
    assert row is not None
    scores, _ = trained.rec.score(row, cand)
    ids = trained.rec.catalog.item_ids
    for task in LIST_TASKS:
        best = top_k(scores[task], 5)
        got = [(i.item, i.score) for i in rec.lists[task]]
        assert got == [(ids[cand[i]], pytest.approx(scores[task][i])) for i in best]
    # The quickstart merge: weighted product with click 1, purchase 2.
    assert (rec.strategy, rec.weights) == ("weighted_product", {"click": 1.0, "purchase": 2.0})
    fused = merge("weighted_product", scores, {"click": 1.0, "purchase": 2.0})
    best = top_k(fused, 5)
    assert [(i.item, i.score) for i in rec.merged] == [
        (ids[cand[i]], pytest.approx(fused[i])) for i in best
    ]
    # p(click)·p(purchase)² by hand for the top item.
    i = best[0]
    assert fused[i] == pytest.approx(scores["click"][i] * scores["purchase"][i] ** 2, rel=1e-6)


def test_other_strategy_and_weights(trained: Trained) -> None:
    user = _busy_user(trained)
    rec = trained.rec.recommend(str(user), k=4, strategy="rrf", weights={"click_purchase": 1.0})
    cand = _unseen_positions(trained, user)
    row = trained.rec.catalog.user_row(str(user))
    assert row is not None
    scores, _ = trained.rec.score(row, cand)
    fused = merge("rrf", scores, {"click_purchase": 1.0})
    ids = trained.rec.catalog.item_ids
    # RRF with one task ranks exactly like that task.
    assert [i.item for i in rec.merged] == [i.item for i in rec.lists["click_purchase"]]
    assert [i.item for i in rec.merged] == [ids[cand[j]] for j in top_k(fused, 4)]


def test_candidates_restrict_the_lists(trained: Trained) -> None:
    user = _busy_user(trained)
    allowed = ["3", "17", "42"]
    rec = trained.rec.recommend(str(user), k=10, candidates=allowed)
    for items in [*rec.lists.values(), rec.merged]:
        assert sorted(i.item for i in items) == sorted(allowed)
    with pytest.raises(MtrsUserError, match="'999'"):
        trained.rec.recommend(str(user), candidates=["3", "999"])


def test_unknown_weight_task_is_a_user_error(trained: Trained) -> None:
    user = str(_busy_user(trained))
    with pytest.raises(MtrsUserError, match="'clik'"):
        trained.rec.recommend(user, weights={"clik": 1.0})
    # A profiling task has no list to merge either.
    with pytest.raises(MtrsUserError, match="'gender'"):
        trained.rec.recommend(user, weights={"gender": 1.0})


def test_unknown_merge_strategy_is_a_user_error(trained: Trained) -> None:
    with pytest.raises(MtrsUserError, match="merge"):
        trained.rec.recommend(str(_busy_user(trained)), strategy="borda")


def test_profile_holds_the_user_scoped_task(trained: Trained) -> None:
    rec = trained.rec.recommend(str(_busy_user(trained)))
    assert set(rec.profile) == {"gender"}
    assert 0.0 <= rec.profile["gender"] <= 1.0
    assert rec.to_json()["profile"] == rec.profile


# ----- an unknown user ------------------------------------------------------------------------
def test_unknown_user_gets_flagged_popularity_lists(trained: Trained) -> None:
    rec = trained.rec.recommend("no-such-user", k=5)
    doc = rec.to_json()
    assert not rec.known_user and rec.fallback and doc["fallback"] is True
    assert "popularity" in doc["source"]
    assert rec.profile == {}
    assert set(rec.lists) == LIST_TASKS
    assert (rec.strategy, rec.weights) == ("popularity", {})
    # The click list ranks items by their share of the clicks in the training split.
    job = trained.job
    train = job.prepared.in_memory().frame[job.prepared.in_memory().split == TRAIN]
    clicks = train.groupby("item_id")["click"].sum()
    share = clicks / clicks.sum()
    for entry in rec.lists["click"]:
        assert entry.score is None
        assert entry.popularity == pytest.approx(share.get(int(entry.item), 0.0))
    assert rec.lists["click"][0].popularity == pytest.approx(share.max())
    expected = sorted(share.to_numpy(), reverse=True)[:5]
    assert [i.popularity for i in rec.lists["click"]] == pytest.approx(expected)
    # Popularity, not scores, in the JSON.
    assert all("score" not in e and "popularity" in e for e in doc["lists"]["click"])
    assert len(rec.merged) == 5


# ----- serving path == batch path -------------------------------------------------------------
def test_serving_scores_equal_the_batch_prediction(trained: Trained) -> None:
    """Score a user's candidates by building the rows by hand and encoding them as a batch."""
    t, proc = trained, trained.loaded.processor
    user = _busy_user(t)
    cand = _unseen_positions(t, user)
    item_ids = [int(t.rec.catalog.item_ids[p]) for p in cand]
    log = t.job.prepared.in_memory().frame  # every event, time-sorted, with user and item columns
    rows = t.data.items.set_index("item_id").loc[item_ids].reset_index()
    profile = t.data.users.set_index("user_id").loc[user]
    for col in ("age_group", "gender", "city_tier"):
        rows[col] = profile[col]
    rows["user_id"] = user
    rows["timestamp"] = int(log["timestamp"].max()) + 1
    # Serving context: the most frequent value of each context column.
    rows["hour"] = log["hour"].mode().iloc[0]
    rows["device"] = log["device"].mode().iloc[0]
    # The user's latest history: the last 20 clicked items, oldest first, left-padded.
    clicked = log.loc[(log["user_id"] == user) & (log["click"] == 1), "item_id"].tail(20)
    codes = proc.encode_items(clicked.reset_index(drop=True))
    hist = np.zeros(20, dtype=np.int64)
    hist[20 - len(codes) :] = codes
    given = HistoryInput({"clicked_items": np.tile(hist, (len(rows), 1))}, {}, {})
    batch = proc.encode(rows, history=given)
    assert not batch.mask[:, :2].any()  # no click / purchase labels in these rows
    expected = predict(t.loaded.model, batch, t.loaded.tasks)

    row = t.rec.catalog.user_row(str(user))
    assert row is not None
    scores, profile = t.rec.score(row, cand)
    for task in LIST_TASKS:
        np.testing.assert_allclose(scores[task], expected[task], rtol=1e-5, atol=1e-7, err_msg=task)
    # The profile task reads the user side only: one value whatever the candidate item.
    assert np.ptp(expected["gender"]) < 1e-6
    assert profile["gender"] == pytest.approx(float(expected["gender"][0]), abs=1e-6)


def test_serving_history_is_the_latest_clicks(trained: Trained) -> None:
    t = trained
    user = _busy_user(t)
    row = t.rec.catalog.user_row(str(user))
    assert row is not None
    log = t.job.prepared.in_memory().frame
    clicked = log.loc[(log["user_id"] == user) & (log["click"] == 1), "item_id"].tail(20)
    codes = t.loaded.processor.encode_items(clicked.reset_index(drop=True))
    got = t.rec.catalog.users.hist["clicked_items"][row].numpy()
    np.testing.assert_array_equal(got[got != 0], codes[codes != 0])
    assert (got != 0).sum() == min(20, int((codes != 0).sum()))
    assert pd.Series(got).iloc[-1] == codes[-1]


# ----- catalog popularity from a text label ---------------------------------------------------
def test_catalog_popularity_counts_positive_value_labels() -> None:
    cfg = config_from_dict(
        {
            "data": {"interactions": "/x.csv"},
            "features": [{"name": "item_id", "kind": "categorical", "group": "item"}],
            "tasks": [{"name": "like", "type": "binary", "label": "like", "positive_value": "yes"}],
        }
    )
    frame = pd.DataFrame(
        {
            "user_id": ["a", "a", "b", "b", "c"],
            "timestamp": [1, 2, 3, 4, 5],
            "item_id": ["i1", "i2", "i1", "i1", "i2"],
            "like": ["yes", "no", "yes", None, "yes"],
        }
    )
    proc = FittedProcessor.fit(frame, cfg)
    train = np.array([True, True, True, True, False])  # the last "yes" is not training
    cat = build_catalog(frame, train, proc)
    assert cat.item_ids == ["i1", "i2"]
    np.testing.assert_array_equal(cat.popularity["like"], [2.0, 0.0])
    np.testing.assert_array_equal(cat.popularity["_all"], [3, 1])
