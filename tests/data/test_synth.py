"""Tests for the synthetic log generator and its ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from mtrs.datasets.synth import (
    CLICK_AFFINITY,
    LATENT_DIM,
    START_TIMESTAMP,
    SynthData,
    SynthSpec,
    generate,
    write,
)
from mtrs.errors import MtrsUserError

SMALL = SynthSpec(num_users=200, num_items=80, num_events=5_000, seed=3)
# Large enough for the statistical checks to be stable, small enough to run in well under a second.
MEDIUM = SynthSpec(num_users=1_000, num_items=500, num_events=50_000, seed=7)


@pytest.fixture(scope="module")
def small() -> SynthData:
    return generate(SMALL)


@pytest.fixture(scope="module")
def medium() -> SynthData:
    return generate(MEDIUM)


def _frames(data: SynthData) -> dict[str, pd.DataFrame]:
    return {
        "interactions": data.interactions,
        "users": data.users,
        "items": data.items,
        "truth": data.truth,
    }


def test_same_seed_gives_identical_frames(small: SynthData) -> None:
    again = generate(SMALL)
    for name, frame in _frames(small).items():
        pd.testing.assert_frame_equal(frame, _frames(again)[name], check_exact=True, obj=name)


def test_different_seed_gives_different_frames(small: SynthData) -> None:
    other = generate(SynthSpec(num_users=200, num_items=80, num_events=5_000, seed=4))
    assert not small.interactions.equals(other.interactions)
    assert not small.truth.equals(other.truth)
    assert not small.items.equals(other.items)


def test_columns_and_dtypes(small: SynthData) -> None:
    expected = {
        "interactions": {
            "event_id": "int64",
            "user_id": "int64",
            "item_id": "int64",
            "timestamp": "int64",
            "hour": "int64",
            "device": "str",
            "click": "int64",
            "purchase": "int64",
        },
        "users": {"user_id": "int64", "age_group": "str", "gender": "str", "city_tier": "int64"},
        "items": {"item_id": "int64", "category": "str", "brand": "str", "price": "float64"},
        "truth": {"event_id": "int64", "p_click": "float64", "p_purchase": "float64"},
    }
    for name, frame in _frames(small).items():
        assert {c: str(t) for c, t in frame.dtypes.items()} == expected[name], name


def test_value_domains(small: SynthData) -> None:
    it, users, items = small.interactions, small.users, small.items
    assert len(it) == SMALL.num_events
    assert users["user_id"].tolist() == list(range(SMALL.num_users))
    assert items["item_id"].tolist() == list(range(SMALL.num_items))
    assert it["user_id"].between(0, SMALL.num_users - 1).all()
    assert it["item_id"].between(0, SMALL.num_items - 1).all()
    assert set(it["device"]) == {"ios", "android", "web"}
    assert set(users["age_group"]) == {"18-24", "25-34", "35-44", "45-54", "55+"}
    assert set(users["gender"]) == {"F", "M"}
    assert set(users["city_tier"]) == {1, 2, 3, 4}
    assert items["category"].str.fullmatch(r"cat_\d{2}").all()
    assert items["brand"].str.fullmatch(r"brand_\d{3}").all()
    assert items["category"].nunique() == SMALL.num_categories
    assert (items["price"] > 0).all()
    assert set(it["click"]) <= {0, 1} and set(it["purchase"]) <= {0, 1}
    for col in ("p_click", "p_purchase"):
        assert small.truth[col].between(0.0, 1.0, inclusive="neither").all()


def test_time_order_and_hour(small: SynthData) -> None:
    it = small.interactions
    assert it["event_id"].tolist() == list(range(len(it)))
    assert it["timestamp"].is_monotonic_increasing
    assert it["timestamp"].min() >= START_TIMESTAMP
    assert it["timestamp"].max() < START_TIMESTAMP + SMALL.days * 86_400
    assert pd.Timestamp(START_TIMESTAMP, unit="s") == pd.Timestamp("2026-01-01")
    hours = pd.to_datetime(it["timestamp"], unit="s").dt.hour.to_numpy()
    np.testing.assert_array_equal(hours, it["hour"].to_numpy())
    # The daily profile is not flat: evenings carry more traffic than the small hours.
    counts = np.bincount(it["hour"], minlength=24)
    assert counts[18:22].sum() > 3 * counts[2:6].sum()


def test_purchase_requires_click(medium: SynthData) -> None:
    it = medium.interactions
    assert (it.loc[it["click"] == 0, "purchase"] == 0).all()
    assert it["purchase"].sum() > 0


def test_click_rate_matches_true_probability(medium: SynthData) -> None:
    p = medium.truth["p_click"].to_numpy()
    clicks = medium.interactions["click"].to_numpy()
    std = np.sqrt(np.sum(p * (1 - p))) / len(p)
    assert abs(clicks.mean() - p.mean()) < 4 * std
    assert 0.08 <= p.mean() <= 0.15


def test_purchase_rate_among_clicks_matches_truth(medium: SynthData) -> None:
    clicked = medium.interactions["click"].to_numpy() == 1
    q = medium.truth["p_purchase"].to_numpy()[clicked]
    bought = medium.interactions["purchase"].to_numpy()[clicked]
    std = np.sqrt(np.sum(q * (1 - q))) / len(q)
    assert abs(bought.mean() - q.mean()) < 4 * std
    assert 0.15 <= q.mean() <= 0.30


def test_oracle_auc_is_informative_not_trivial(medium: SynthData) -> None:
    auc = roc_auc_score(medium.interactions["click"], medium.truth["p_click"])
    assert 0.65 <= auc <= 0.85


def test_click_factors_rebuild_the_true_click_probability(medium: SynthData) -> None:
    f = medium.factors
    assert f is not None
    it = medium.interactions
    assert f.user_latent.shape == (1_000, LATENT_DIM)
    assert f.item_latent.shape == (500, LATENT_DIM)
    u, i = it["user_id"].to_numpy(), it["item_id"].to_numpy()
    affinity = np.sum(f.user_latent[u] * f.item_latent[i], axis=1) / np.sqrt(LATENT_DIM)
    logit = CLICK_AFFINITY * affinity + f.rest_logit
    np.testing.assert_allclose(1.0 / (1.0 + np.exp(-logit)), medium.truth["p_click"], atol=1e-12)
    # The affinity is a real part of the signal: without it the truth ranks clicks worse.
    full = roc_auc_score(it["click"], logit)
    assert roc_auc_score(it["click"], f.rest_logit) < full - 0.05


def test_tasks_are_related_but_distinct(medium: SynthData) -> None:
    corr = np.corrcoef(medium.truth["p_click"], medium.truth["p_purchase"])[0, 1]
    assert 0.2 < corr < 0.9


def test_gender_is_predictable_from_clicked_categories(medium: SynthData) -> None:
    it, users, items = medium.interactions, medium.users, medium.items
    clicked = it.loc[it["click"] == 1, ["user_id", "item_id"]].merge(items, on="item_id")
    counts = pd.crosstab(clicked["user_id"], clicked["category"])
    counts = counts.reindex(index=users["user_id"], fill_value=0)
    x = counts.to_numpy(dtype=np.float64)
    x = x / np.maximum(x.sum(axis=1, keepdims=True), 1.0)
    y = (users["gender"] == "F").to_numpy().astype(np.int64)
    half = len(y) // 2
    model = LogisticRegression(max_iter=1_000).fit(x[:half], y[:half])
    auc = roc_auc_score(y[half:], model.predict_proba(x[half:])[:, 1])
    assert auc > 0.65


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_write_round_trips(
    small: SynthData, tmp_path: Path, fmt: Literal["csv", "parquet"]
) -> None:
    out = tmp_path / "nested" / "synth"
    paths = write(small, out, fmt=fmt)
    assert set(paths) == {"interactions", "users", "items", "truth"}
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.{fmt}" for n in paths)
    for name, frame in _frames(small).items():
        path = paths[name]
        assert path == out / f"{name}.{fmt}"
        back = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
        pd.testing.assert_frame_equal(back, frame, check_exact=True, obj=name)


def test_write_rejects_unknown_format(small: SynthData, tmp_path: Path) -> None:
    bad_format: Any = "json"
    with pytest.raises(MtrsUserError, match="json"):
        write(small, tmp_path, fmt=bad_format)
    assert list(tmp_path.iterdir()) == []


def test_invalid_spec_names_field() -> None:
    with pytest.raises(MtrsUserError, match="num_events"):
        generate(SynthSpec(num_events=0))
