"""``[data.negatives]``: sampled negatives for a positive-only log, hand-checked on tiny logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tomli_w

from mtrs.cli.main import run
from mtrs.config.load import config_from_dict
from mtrs.config.models import JobConfig
from mtrs.data.encoders import as_keys
from mtrs.data.log import FrameLog, open_log
from mtrs.data.negatives import EVENT_COLUMN, add_negatives
from mtrs.data.tables import Tables
from mtrs.errors import MtrsUserError
from mtrs.prepare import prepare

ITEMS = ["A", "B", "C", "D", "E", "F"]
GENRE = {"A": "g1", "B": "g1", "C": "g2", "D": "g2", "E": "g3", "F": "g3"}


def _log() -> pd.DataFrame:
    """Three users, eight events; u1 logged A, B (twice); u2 A, C, D; u3 E, F."""
    return pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u2", "u1", "u3", "u2", "u3"],
            "item_id": ["A", "B", "A", "C", "B", "E", "D", "F"],
            "timestamp": [10, 20, 15, 30, 40, 50, 60, 70],
            "hour": [8, 9, 10, 11, 12, 13, 14, 15],
            "click": [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0],
            "rating": [5.0, 3.0, 4.0, 2.0, 1.0, 5.0, 3.0, 4.0],
        }
    )


def _tables(log: pd.DataFrame | None = None) -> Tables:
    items = pd.DataFrame({"item_id": ITEMS, "genre": [GENRE[i] for i in ITEMS]})
    users = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "age": [20.0, 30.0, 40.0]})
    return Tables(_log() if log is None else log, users, items)


def _raw(negatives: dict[str, Any] | None = None, **over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "data": {
            "interactions": "log.csv",
            "negatives": {"per_positive": 2, "label": "interact", "seed": 0, **(negatives or {})},
        },
        "features": [
            {
                "name": "history",
                "kind": "history",
                "group": "behaviour",
                "item_feature": "item_id",
                "max_length": 5,
            },
            {"name": "item_id", "kind": "categorical", "group": "item"},
            {"name": "genre", "kind": "categorical", "group": "item"},
            {"name": "user_id", "kind": "categorical", "group": "user"},
            {"name": "age", "kind": "numeric", "group": "user"},
            {"name": "hour", "kind": "categorical", "group": "context"},
        ],
        "tasks": [
            {"name": "interact", "type": "binary", "label": "interact"},
            {"name": "click", "type": "binary", "label": "click"},
            {"name": "rating", "type": "regression", "label": "rating"},
        ],
        "split": {"method": "random", "valid_fraction": 0.0, "test_fraction": 0.0},
        "train": {"epochs": 1, "progress": False},
    }
    for key, value in over.items():
        raw[key] = value
    return raw


def _cfg(negatives: dict[str, Any] | None = None, **over: Any) -> JobConfig:
    return config_from_dict(_raw(negatives, **over))


def _frame(cfg: JobConfig | None = None, tables: Tables | None = None) -> pd.DataFrame:
    return FrameLog(cfg or _cfg(), tables or _tables()).frame


# ----- the sampled rows -----------------------------------------------------------------------
def test_counts_blocks_and_never_interacted_distinct_items() -> None:
    out = add_negatives(_tables(), _cfg()).interactions
    assert len(out) == 8 * 3
    # Blocks [positive, 2 negatives] in the log's row order; the event is the positive's row.
    assert out["interact"].tolist() == [1, 0, 0] * 8
    assert out[EVENT_COLUMN].tolist() == np.repeat(np.arange(8), 3).tolist()
    pd.testing.assert_frame_equal(
        out[out["interact"] == 1][_log().columns].reset_index(drop=True), _log()
    )
    logged = {"u1": {"A", "B"}, "u2": {"A", "C", "D"}, "u3": {"E", "F"}}
    for _, block in out.groupby(EVENT_COLUMN):
        user = block["user_id"].iloc[0]
        sampled = block["item_id"].iloc[1:].tolist()
        assert len(set(sampled)) == 2  # distinct within the event
        assert not set(sampled) & logged[user]  # never an item the user logged anywhere
        assert set(sampled) <= set(ITEMS)


def test_sampled_rows_copy_time_user_context_and_leave_other_labels_missing() -> None:
    frame = _frame()
    pos = frame[frame["interact"] == 1]
    neg = frame[frame["interact"] == 0]
    assert len(pos) == 8 and len(neg) == 16
    # Time-sorted with each positive first in its block: every negative follows its positive.
    owner = (
        np.searchsorted(
            np.flatnonzero(frame["interact"] == 1), np.flatnonzero(frame["interact"] == 0)
        )
        - 1
    )
    for col in ("user_id", "timestamp", "hour", "age"):
        assert neg[col].tolist() == pos[col].iloc[owner].tolist(), col
    assert neg["click"].isna().all() and neg["rating"].isna().all()
    assert pos["click"].notna().all() and pos["rating"].notna().all()
    # Item-side columns are the sampled item's, from the items table.
    assert frame["genre"].tolist() == [GENRE[i] for i in frame["item_id"]]
    assert EVENT_COLUMN not in frame.columns


def test_item_side_log_columns_take_the_sampled_items_latest_value() -> None:
    log = _log().assign(price=[1.0, 2.0, 1.5, 3.0, 2.5, 4.0, 5.0, 6.0])
    raw = _raw()
    raw["features"].append({"name": "price", "kind": "numeric", "group": "item"})
    out = add_negatives(Tables(log), config_from_dict(raw)).interactions
    # No items table: the universe is the logged items; price is each item's latest.
    latest = {"A": 1.5, "B": 2.5, "C": 3.0, "D": 5.0, "E": 4.0, "F": 6.0}
    neg = out[out["interact"] == 0]
    assert neg["price"].tolist() == [latest[i] for i in neg["item_id"]]
    assert out[out["interact"] == 1]["price"].tolist() == log["price"].tolist()


def test_universe_is_the_logged_items_without_an_items_table() -> None:
    log = _log()
    out = add_negatives(Tables(log), _cfg({"per_positive": 1})).interactions
    assert set(out["item_id"]) == set(log["item_id"])
    items = pd.DataFrame({"item_id": [*ITEMS, "G", "H"], "genre": ["x"] * 8})
    wide = add_negatives(Tables(log, None, items), _cfg({"per_positive": 2, "seed": 3}))
    neg = wide.interactions[wide.interactions["interact"] == 0]
    # u3 logged E and F only: with the items table, G and H are candidates too.
    assert set(neg["item_id"]) - set(ITEMS)


def test_seeded_and_deterministic() -> None:
    a = add_negatives(_tables(), _cfg({"seed": 5})).interactions
    b = add_negatives(_tables(), _cfg({"seed": 5})).interactions
    pd.testing.assert_frame_equal(a, b)
    others = [add_negatives(_tables(), _cfg({"seed": s})).interactions for s in (6, 7, 8)]
    assert any(not o["item_id"].equals(a["item_id"]) for o in others)


def test_popularity_weighting_skews_draws_toward_popular_items() -> None:
    # 1000 users, user u logged only the hot item u % 10 (count 100 each); 90 cold items.
    n_users = 1000
    log = pd.DataFrame(
        {
            "user_id": np.arange(n_users),
            "item_id": np.arange(n_users) % 10,
            "timestamp": np.arange(n_users),
        }
    )
    items = pd.DataFrame({"item_id": np.arange(100), "genre": ["x"] * 100})
    tables = Tables(log, None, items)

    def hot_share(negatives: dict[str, Any]) -> float:
        out = add_negatives(tables, _cfg({"per_positive": 1, **negatives})).interactions
        neg = out[out["interact"] == 0]
        assert not (neg["item_id"].to_numpy() == neg["user_id"].to_numpy() % 10).any()
        return float((neg["item_id"] < 10).mean())

    # p ∝ (count + 1)^α, the user's own hot item excluded: 9·101 / (9·101 + 90) with α = 1,
    # 9·√101 / (9·√101 + 90) with α = 0.5, 9 / 99 uniformly. 1000 draws: σ ≤ 0.016.
    assert hot_share({"distribution": "popularity", "alpha": 1.0}) == pytest.approx(
        909 / 999, abs=0.03
    )
    half = 9 * np.sqrt(101)
    assert hot_share({"distribution": "popularity", "alpha": 0.5}) == pytest.approx(
        half / (half + 90), abs=0.05
    )
    assert hot_share({"distribution": "popularity"}) == pytest.approx(909 / 999, abs=0.03)
    assert hot_share({}) == pytest.approx(9 / 99, abs=0.03)


# ----- splits ---------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["random", "leave_last", "temporal"])
def test_a_positive_and_its_negatives_share_a_split(method: str) -> None:
    rng = np.random.default_rng(0)
    n = 400
    log = pd.DataFrame(
        {
            "user_id": rng.integers(0, 20, n),
            "item_id": rng.integers(0, 60, n),
            "timestamp": rng.permutation(n),
            "hour": rng.integers(0, 24, n),
            "click": rng.integers(0, 2, n).astype(float),
            "rating": rng.integers(1, 6, n).astype(float),
        }
    )
    items = pd.DataFrame({"item_id": np.arange(60), "genre": ["x"] * 60})
    users = pd.DataFrame({"user_id": np.arange(20), "age": np.arange(20.0)})
    split = {"method": method, "valid_fraction": 0.2, "test_fraction": 0.2, "seed": 1}
    with_neg = FrameLog(_cfg(split=split), Tables(log, users, items))
    frame = with_neg.frame
    event = np.cumsum(frame["interact"].to_numpy() == 1) - 1
    per_event = pd.Series(with_neg.split).groupby(event).nunique()
    assert (per_event == 1).all() and len(per_event) == n
    assert len(np.unique(with_neg.split)) == 3
    # A positive keeps the split it has in the log without negatives.
    raw = _raw(split=split)
    del raw["data"]["negatives"]
    raw["tasks"] = raw["tasks"][1:]
    plain = FrameLog(config_from_dict(raw), Tables(log, users, items))
    is_pos = frame["interact"].to_numpy() == 1
    np.testing.assert_array_equal(with_neg.split[is_pos], plain.split)


def test_a_given_split_unit_is_copied_onto_the_negatives() -> None:
    log = _log().assign(session=[1, 1, 2, 2, 3, 4, 5, 4])
    split = {"method": "random", "valid_fraction": 0.3, "test_fraction": 0.3, "unit": "session"}
    log_ = FrameLog(_cfg(split=split), _tables(log))
    per_session = pd.Series(log_.split).groupby(log_.frame["session"].to_numpy()).nunique()
    assert (per_session == 1).all() and set(log_.frame["session"]) == {1, 2, 3, 4, 5}


# ----- histories, catalog ---------------------------------------------------------------------
def test_histories_seen_items_and_popularity_exclude_negatives() -> None:
    cfg = _cfg()
    prepared = prepare(cfg, _tables())
    frame = prepared.in_memory().frame
    vocab = prepared.processor.vocabs["item_id"]
    pos = frame[frame["interact"] == 1]
    # Training rows (every row trains): a row's history is its user's earlier logged items.
    hist = prepared.train.hist["history"].numpy()  # type: ignore[union-attr]
    for i in range(len(frame)):
        mine = pos[(pos["user_id"] == frame["user_id"].iloc[i])]
        earlier = mine[mine["timestamp"] < frame["timestamp"].iloc[i]]["item_id"]
        expected = vocab.encode(as_keys(earlier.iloc[-5:]))
        np.testing.assert_array_equal(hist[i][hist[i] > 0], expected)
    cat = prepared.catalog
    logged = {"u1": ["A", "B", "B"], "u2": ["A", "C", "D"], "u3": ["E", "F"]}
    for row, uid in enumerate(cat.user_ids):
        assert sorted(cat.item_ids[i] for i in cat.seen(row)) == sorted(set(logged[uid]))
        latest = cat.users.hist["history"][row].numpy()
        np.testing.assert_array_equal(
            latest[latest > 0], vocab.encode(as_keys(pd.Series(logged[uid])))
        )
    pop = dict(zip(cat.item_ids, cat.popularity["_all"], strict=True))
    assert pop == {"A": 2.0, "B": 2.0, "C": 1.0, "D": 1.0, "E": 1.0, "F": 1.0}
    assert dict(zip(cat.item_ids, cat.popularity["interact"], strict=True)) == pop


def test_seen_items_exclude_negatives_without_a_history_feature() -> None:
    raw = _raw()
    raw["features"] = raw["features"][1:]
    prepared = prepare(config_from_dict(raw), _tables())
    cat = prepared.catalog
    logged = {"u1": {"A", "B"}, "u2": {"A", "C", "D"}, "u3": {"E", "F"}}
    assert {u: {cat.item_ids[i] for i in cat.seen(r)} for r, u in enumerate(cat.user_ids)} == logged


def test_a_filter_column_copied_onto_negatives_still_skips_them() -> None:
    # ``hour``-like context flags are copied onto the sampled rows; a history filtered on one
    # must still never hold a sampled item.
    log = _log().assign(weekend=1.0)
    raw = _raw()
    raw["features"][0]["history_filter"] = "weekend"
    raw["features"].append({"name": "weekend", "kind": "numeric", "group": "context"})
    prepared = prepare(config_from_dict(raw), _tables(log))
    frame = prepared.in_memory().frame
    assert (frame["weekend"] == 1.0).all()
    cat = prepared.catalog
    logged = {"u1": {"A", "B"}, "u2": {"A", "C", "D"}, "u3": {"E", "F"}}
    assert {u: {cat.item_ids[i] for i in cat.seen(r)} for r, u in enumerate(cat.user_ids)} == logged


# ----- errors ---------------------------------------------------------------------------------
def test_too_few_free_items_names_the_field_and_the_user() -> None:
    log = pd.DataFrame(
        {
            "user_id": ["a", "b", "b", "b", "b", "b"],
            "item_id": list("ABCDEF"),
            "timestamp": range(6),
        }
    )
    with pytest.raises(MtrsUserError, match=r"data\.negatives\.per_positive = 2: user_id 'b'"):
        add_negatives(Tables(log), _cfg())
    assert len(add_negatives(Tables(log), _cfg({"per_positive": 1})).interactions) == 12


def test_label_clashing_with_a_column_is_a_data_error() -> None:
    with pytest.raises(MtrsUserError, match=r"data\.negatives\.label: column 'click' already"):
        add_negatives(
            _tables(),
            _cfg({"label": "click"}, tasks=[{"name": "c", "type": "binary", "label": "click"}]),
        )
    tables = _tables()
    assert tables.users is not None
    tables.users["segment"] = ["x", "y", "x"]
    with pytest.raises(MtrsUserError, match=r"data\.negatives\.label: column 'segment' already"):
        add_negatives(tables, _cfg({"label": "segment"}))


@pytest.mark.parametrize(
    ("negatives", "match"),
    [
        ({"per_positive": 0}, r"data\.negatives\.per_positive"),
        ({"alpha": 0.5}, r"data\.negatives\.alpha: only applies to distribution = 'popularity'"),
        ({"distribution": "zipf"}, r"data\.negatives\.distribution"),
        ({"label": "user_id"}, r"data\.negatives\.label: 'user_id' is already data\.user_col"),
        ({"label": "hour"}, r"data\.negatives\.label: column 'hour' is an input of feature 'hour'"),
        ({"per_positve": 2}, r"unknown key 'data\.negatives\.per_positve'"),
    ],
)
def test_config_errors_name_the_field(negatives: dict[str, Any], match: str) -> None:
    with pytest.raises(MtrsUserError, match=match):
        _cfg(negatives)


def test_streamed_log_asks_for_the_log_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    _log().to_parquet(path)
    tables = _tables()
    assert tables.users is not None and tables.items is not None
    tables.users.to_parquet(tmp_path / "users.parquet")
    tables.items.to_parquet(tmp_path / "items.parquet")
    raw = _raw()
    raw["data"] |= {
        "interactions": str(path),
        "users": str(tmp_path / "users.parquet"),
        "items": str(tmp_path / "items.parquet"),
        "streaming": "always",
    }
    with pytest.raises(MtrsUserError, match=r"data\.negatives needs the log in memory.*'never'"):
        open_log(config_from_dict(raw))
    raw["data"]["streaming"] = "never"
    assert len(open_log(config_from_dict(raw)).frame) == 24  # type: ignore[union-attr]


# ----- end to end -----------------------------------------------------------------------------
def test_cli_trains_the_generated_label_on_a_positive_only_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two tastes: users of group g log only items of category g. The sampled negatives are
    # mostly the other category, which the model can tell from the ids.
    rng = np.random.default_rng(0)
    n_users, n_items, per_user = 120, 40, 25
    user = np.repeat(np.arange(n_users), per_user)
    group = user % 2
    item = 2 * rng.integers(0, n_items // 2, len(user)) + group
    log = pd.DataFrame({"user_id": user, "item_id": item, "timestamp": rng.permutation(len(user))})
    log.to_csv(tmp_path / "log.csv", index=False)
    items = pd.DataFrame({"item_id": np.arange(n_items), "category": np.arange(n_items) % 2})
    items.to_csv(tmp_path / "items.csv", index=False)
    raw = {
        "data": {
            "interactions": "log.csv",
            "items": "items.csv",
            "streaming": "never",
            "negatives": {"per_positive": 3, "label": "interact", "seed": 1},
        },
        "features": [
            {"name": "user_id", "kind": "categorical", "group": "user"},
            {"name": "item_id", "kind": "categorical", "group": "item"},
            {"name": "category", "kind": "categorical", "group": "item"},
        ],
        "tasks": [{"name": "interact", "type": "binary", "label": "interact"}],
        "model": {"embedding_dim": 8, "shared": {"hidden": [32]}, "tower": {"hidden": [16]}},
        "train": {"epochs": 4, "batch_size": 256, "lr": 0.01, "seed": 0, "progress": False},
        "split": {"method": "random", "valid_fraction": 0.1, "test_fraction": 0.2},
    }
    (tmp_path / "mtrs.toml").write_text(tomli_w.dumps(raw))
    model = tmp_path / "model"
    assert run(["train", str(tmp_path / "mtrs.toml"), "--out", str(model), "--json"]) == 0
    metrics = json.loads((model / "metrics.json").read_text())["tasks"]
    assert metrics["interact"]["auc"] > 0.75
    saved = (model / "config.toml").read_text()
    assert "[data.negatives]" in saved and "per_positive = 3" in saved
    # Re-evaluating re-reads the log and draws the same negatives: the same test metrics.
    capsys.readouterr()
    assert run(["evaluate", str(model), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)["tasks"]
    assert again["interact"]["auc"] == pytest.approx(metrics["interact"]["auc"], abs=1e-9)
    # Serving reads the saved catalog only: the log may be gone.
    (tmp_path / "log.csv").unlink()
    assert run(["recommend", str(model), "--user", "0", "--k", "5", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    top = [int(r["item"]) for r in rec["lists"]["interact"]]
    assert len(top) == 5 and sum(i % 2 == 0 for i in top) >= 4  # user 0 is in group 0
