"""Tests for mtrs.config: TOML loading, unknown/missing keys, cross-checks and the round trip."""

from __future__ import annotations

import copy
import tempfile
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from mtrs.config.load import config_from_dict, dump_config, load_config, override
from mtrs.config.models import JobConfig, TrainConfig, seed_keys
from mtrs.errors import MtrsUserError

QUICKSTART = resources.files("mtrs").joinpath("configs/quickstart.toml")


def _minimal() -> dict[str, Any]:
    """A small valid config: two features, one history, two tasks, one relation."""
    return {
        "data": {"interactions": "/abs/events.csv"},
        "features": [
            {"name": "item_id", "kind": "categorical", "group": "item"},
            {"name": "price", "kind": "numeric", "group": "item"},
            {
                "name": "hist",
                "kind": "history",
                "group": "behaviour",
                "item_feature": "item_id",
                "history_filter": "click",
            },
        ],
        "tasks": [
            {"name": "click", "type": "binary", "label": "click"},
            {"name": "buy", "type": "binary", "label": "buy", "condition": "click"},
        ],
        "relations": [{"parent": "click", "child": "buy"}],
    }


def _write(tmp: Path, raw: dict[str, Any], name: str = "job.toml") -> Path:
    path = tmp / name
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    return path


def _error(tmp: Path, raw: dict[str, Any]) -> str:
    path = _write(tmp, raw)
    with pytest.raises(MtrsUserError) as info:
        load_config(path)
    msg = str(info.value)
    assert str(path) in msg, f"message does not name the file: {msg}"
    return msg


# ----- the packaged quickstart config ---------------------------------------------------------
def test_packaged_quickstart_config_loads() -> None:
    with resources.as_file(QUICKSTART) as path:
        cfg = load_config(path)
        base = Path(path).resolve().parent
    assert [t.name for t in cfg.tasks] == ["click", "purchase", "gender"]
    assert cfg.tasks[1].condition == "click"
    assert cfg.tasks[2].scope == "user" and cfg.tasks[2].positive_value == "F"
    hist = next(f for f in cfg.features if f.kind == "history")
    assert (hist.name, hist.item_feature, hist.history_filter, hist.max_length) == (
        "clicked_items",
        "item_id",
        "click",
        20,
    )
    assert [r.joint_name for r in cfg.relations] == ["click_purchase"]
    assert cfg.train.early_stop == "click/auc"
    assert cfg.split.method == "temporal"
    assert cfg.recommend.weights == {"click": 1.0, "purchase": 2.0}
    # Relative table paths are resolved against the config's own directory.
    assert cfg.data.interactions == str(base / "interactions.csv")
    assert cfg.data.users == str(base / "users.csv")


# ----- unknown, missing and invalid keys ------------------------------------------------------
def test_unknown_top_level_key_is_named(tmp_path: Path) -> None:
    raw = _minimal() | {"trian": {"epochs": 3}}
    msg = _error(tmp_path, raw)
    assert "unknown key 'trian'" in msg


def test_unknown_nested_key_is_named(tmp_path: Path) -> None:
    raw = _minimal() | {"model": {"architecure": "mmoe"}}
    msg = _error(tmp_path, raw)
    assert "unknown key 'model.architecure'" in msg


def test_unknown_key_in_a_feature_table_is_named(tmp_path: Path) -> None:
    raw = _minimal()
    raw["features"][1]["log1P"] = True
    msg = _error(tmp_path, raw)
    assert "features.1.log1P" in msg


def test_missing_required_key(tmp_path: Path) -> None:
    raw = _minimal()
    del raw["tasks"][1]["name"]
    msg = _error(tmp_path, raw)
    assert "missing required key 'tasks.1.name'" in msg


def test_a_log_is_required_as_one_table_or_given_files(tmp_path: Path) -> None:
    raw = _minimal()
    del raw["data"]["interactions"]
    assert "data: name the log, as interactions = FILE or as given train = FILE" in _error(
        tmp_path, raw
    )
    raw["data"] = {"interactions": "/abs/e.csv", "train": "/abs/t.csv"}
    assert "give either interactions (split by [split]) or train/valid/test" in _error(
        tmp_path, raw
    )


def test_missing_task_label(tmp_path: Path) -> None:
    raw = _minimal()
    del raw["tasks"][0]["label"]
    msg = _error(tmp_path, raw)
    assert "missing required key 'tasks.0.label'" in msg


def test_label_used_as_feature_names_task_and_column(tmp_path: Path) -> None:
    raw = _minimal()
    raw["features"].append({"name": "bought", "column": "buy", "kind": "numeric", "group": "item"})
    msg = _error(tmp_path, raw)
    assert "tasks.buy.label" in msg
    assert "'buy'" in msg
    assert "feature" in msg


def test_duplicate_feature_names(tmp_path: Path) -> None:
    raw = _minimal()
    raw["features"].append({"name": "price", "kind": "numeric", "group": "context"})
    msg = _error(tmp_path, raw)
    assert "duplicate feature name" in msg and "price" in msg


def test_duplicate_task_names(tmp_path: Path) -> None:
    raw = _minimal()
    raw["tasks"].append({"name": "click", "type": "binary", "label": "other"})
    msg = _error(tmp_path, raw)
    assert "duplicate task name" in msg and "click" in msg


def test_history_feature_without_item_feature(tmp_path: Path) -> None:
    raw = _minimal()
    del raw["features"][2]["item_feature"]
    msg = _error(tmp_path, raw)
    assert "features.hist.item_feature" in msg


def test_history_item_feature_must_be_categorical(tmp_path: Path) -> None:
    raw = _minimal()
    raw["features"][2]["item_feature"] = "price"
    msg = _error(tmp_path, raw)
    assert "features.hist.item_feature" in msg


def test_unknown_relation_task(tmp_path: Path) -> None:
    raw = _minimal()
    raw["relations"] = [{"parent": "click", "child": "purchase"}]
    msg = _error(tmp_path, raw)
    assert "relations" in msg and "'purchase'" in msg


def test_relation_must_join_binary_tasks(tmp_path: Path) -> None:
    raw = _minimal()
    raw["tasks"].append({"name": "rating", "type": "regression", "label": "rating"})
    raw["relations"] = [{"parent": "click", "child": "rating"}]
    msg = _error(tmp_path, raw)
    assert "relations" in msg and "'rating'" in msg and "binary" in msg


def test_relation_joint_name_may_not_shadow_a_task(tmp_path: Path) -> None:
    raw = _minimal()
    raw["relations"] = [{"parent": "click", "child": "buy", "name": "buy"}]
    msg = _error(tmp_path, raw)
    assert "joint name 'buy'" in msg


def test_relation_parent_and_child_differ(tmp_path: Path) -> None:
    raw = _minimal()
    raw["relations"] = [{"parent": "click", "child": "click"}]
    assert "'click'" in _error(tmp_path, raw)


def test_merge_weights_may_name_a_relation_but_not_a_profile_task(tmp_path: Path) -> None:
    raw = _minimal() | {"recommend": {"weights": {"click_buy": 1.0, "click": 0.5}}}
    cfg = load_config(_write(tmp_path, raw))
    assert cfg.recommend.weights == {"click_buy": 1.0, "click": 0.5}
    raw = _minimal()
    raw["tasks"].append({"name": "gender", "type": "binary", "label": "g", "scope": "user"})
    raw["recommend"] = {"weights": {"gender": 1.0}}
    msg = _error(tmp_path, raw)
    assert "recommend.weights" in msg and "'gender'" in msg


def test_early_stop_needs_task_slash_metric(tmp_path: Path) -> None:
    raw = _minimal() | {"train": {"early_stop": "click_auc"}}
    msg = _error(tmp_path, raw)
    assert "train.early_stop" in msg


def test_unknown_merge_weight_task(tmp_path: Path) -> None:
    raw = _minimal() | {"recommend": {"weights": {"clik": 1.0}}}
    msg = _error(tmp_path, raw)
    assert "recommend.weights" in msg and "'clik'" in msg


def test_wrong_type_names_key(tmp_path: Path) -> None:
    raw = _minimal() | {"train": {"epochs": "ten"}}
    msg = _error(tmp_path, raw)
    assert "train.epochs" in msg


def test_invalid_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[data]\ninteractions = "a.csv\n', encoding="utf-8")
    with pytest.raises(MtrsUserError, match="not valid TOML") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MtrsUserError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


# ----- path resolution ------------------------------------------------------------------------
def test_relative_data_paths_resolve_against_config_directory(tmp_path: Path) -> None:
    sub = tmp_path / "jobs" / "a"
    sub.mkdir(parents=True)
    raw = _minimal()
    raw["data"] = {
        "interactions": "data/events.csv",
        "users": "../shared/users.parquet",
        "items": "/abs/items.csv",
    }
    cfg = load_config(_write(sub, raw))
    assert cfg.data.interactions == str((sub / "data" / "events.csv").resolve())
    assert cfg.data.users == str((tmp_path / "jobs" / "shared" / "users.parquet").resolve())
    assert cfg.data.items == "/abs/items.csv"


def test_relative_paths_do_not_depend_on_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = tmp_path / "cfg"
    sub.mkdir()
    raw = _minimal()
    raw["data"] = {"interactions": "events.csv"}
    path = _write(sub, raw)
    monkeypatch.chdir(tmp_path)
    cfg = load_config(Path("cfg") / "job.toml")
    assert cfg.data.interactions == str(sub.resolve() / "events.csv")
    assert cfg.data.users is None and cfg.data.items is None
    assert path.is_file()


# ----- property: unknown keys in [train] ------------------------------------------------------
_TRAIN_FIELDS = set(TrainConfig.model_fields)


@settings(max_examples=60, deadline=None)
@given(
    key=st.text(
        alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
        min_size=1,
        max_size=20,
    ).filter(lambda k: k not in _TRAIN_FIELDS),
    value=st.one_of(st.integers(-5, 5), st.booleans(), st.text(max_size=5)),
)
def test_any_unknown_train_key_is_rejected_and_named(key: str, value: Any) -> None:
    raw = _minimal() | {"train": {"epochs": 2, key: value}}
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp), raw)
        with pytest.raises(MtrsUserError) as info:
            load_config(path)
    msg = str(info.value)
    assert "unknown key" in msg
    assert f"train.{key}" in msg


# ----- dump → load round trip -----------------------------------------------------------------
def test_dump_then_load_round_trip(tmp_path: Path) -> None:
    with resources.as_file(QUICKSTART) as path:
        cfg = load_config(path)
    cfg.train.seed = 7
    cfg.model.architecture = "mmoe"
    out = tmp_path / "resolved.toml"
    dump_config(cfg, out)
    again = load_config(out)
    assert again == cfg
    # The dump is the fully resolved config: defaults are written out.
    written = tomllib.loads(out.read_text(encoding="utf-8"))
    assert written["train"]["batch_size"] == 512
    assert written["model"]["experts"]["num_experts"] == cfg.model.experts.num_experts
    assert "users" in written["data"]


def test_round_trip_of_minimal_config_keeps_none_fields(tmp_path: Path) -> None:
    cfg = config_from_dict(copy.deepcopy(_minimal()))
    assert cfg.data.users is None and cfg.train.early_stop is None
    out = tmp_path / "resolved.toml"
    dump_config(cfg, out)
    again = load_config(out)
    assert isinstance(again, JobConfig)
    assert again == cfg


# ----- metric names: train.early_stop and tune.metric -----------------------------------------
def _with_gender() -> dict[str, Any]:
    raw = _minimal()
    raw["tasks"] += [
        {"name": "gender", "type": "binary", "label": "g", "scope": "user"},
        {"name": "rating", "type": "regression", "label": "r"},
        {"name": "age", "type": "multiclass", "label": "a", "scope": "user"},
    ]
    return raw


def test_early_stop_metric_the_task_does_not_report_lists_its_metrics(tmp_path: Path) -> None:
    raw = _minimal() | {"train": {"early_stop": "click/rmse"}}
    msg = _error(tmp_path, raw)
    assert "train.early_stop: task 'click' has no metric 'rmse'" in msg
    assert "(its metrics: auc, gauc, logloss)" in msg
    assert "(top level)" not in msg


def test_early_stop_unknown_task_lists_tasks_and_joint_tasks(tmp_path: Path) -> None:
    msg = _error(tmp_path, _minimal() | {"train": {"early_stop": "clik/auc"}})
    assert "train.early_stop: unknown task 'clik'" in msg
    assert "(tasks: click, buy, click_buy)" in msg


@pytest.mark.parametrize(
    ("monitor", "valid"),
    [
        ("click/gauc", "auc, gauc, logloss"),
        ("click_buy/logloss", "auc, gauc, logloss"),
        ("gender/auc", "auc, logloss"),
        ("rating/mae", "rmse, mae"),
        ("age/macro_f1", "accuracy, macro_f1"),
    ],
)
def test_early_stop_accepts_each_task_types_metrics(
    tmp_path: Path, monitor: str, valid: str
) -> None:
    cfg = load_config(_write(tmp_path, _with_gender() | {"train": {"early_stop": monitor}}))
    assert cfg.train.early_stop == monitor
    # Any other name for the same task is rejected, listing exactly these metrics.
    task = monitor.split("/")[0]
    msg = _error(tmp_path, _with_gender() | {"train": {"early_stop": f"{task}/nope"}})
    assert f"(its metrics: {valid})" in msg


def test_user_scoped_binary_task_has_no_gauc(tmp_path: Path) -> None:
    msg = _error(tmp_path, _with_gender() | {"train": {"early_stop": "gender/gauc"}})
    assert "task 'gender' has no metric 'gauc' (its metrics: auc, logloss)" in msg


def test_tune_metric_names_are_checked(tmp_path: Path) -> None:
    msg = _error(tmp_path, _minimal() | {"tune": {"metric": "buy/accuracy"}})
    assert "tune.metric: task 'buy' has no metric 'accuracy'" in msg
    msg = _error(tmp_path, _minimal() | {"tune": {"metric": "click/ndgc@10"}})
    assert "tune.metric: 'ndgc@10' is not a ranking metric" in msg
    assert "hit_rate@<k>, ndcg@<k>, recall@<k>" in msg
    msg = _error(tmp_path, _with_gender() | {"tune": {"metric": "gender/ndcg@10"}})
    assert (
        "tune.metric: 'gender'" in msg and "(lists: click, buy, rating, click_buy, merged)" in msg
    )
    for good in ("merged/ndcg@10", "click_buy/recall@20", "rating/rmse"):
        cfg = load_config(_write(tmp_path, _with_gender() | {"tune": {"metric": good}}))
        assert cfg.tune.metric == good


# ----- seeds and command-line overrides -------------------------------------------------------
def test_seed_keys_name_every_seed_of_the_job() -> None:
    cfg = config_from_dict(_minimal())
    assert seed_keys(cfg) == ["train.seed", "split.seed", "tune.seed"]


def test_override_sets_keys_and_runs_every_check_again() -> None:
    cfg = config_from_dict(_minimal())
    new = override(cfg, dict.fromkeys(seed_keys(cfg), 5) | {"train.epochs": 3}, "job.toml")
    assert (new.train.seed, new.split.seed, new.tune.seed, new.train.epochs) == (5, 5, 5, 3)
    assert (cfg.train.seed, cfg.train.epochs) == (0, 5), "the original is left as it was"
    with pytest.raises(MtrsUserError, match=r"job.toml: train.epochs: .*greater than or equal"):
        override(cfg, {"train.epochs": 0}, "job.toml")
    with pytest.raises(MtrsUserError, match=r"job.toml: train.early_stop: task 'click' has no"):
        override(cfg, {"train.early_stop": "click/rmse"}, "job.toml")
    with pytest.raises(MtrsUserError, match=r"unknown key 'trian.seed'"):
        override(cfg, {"trian.seed": 1}, "job.toml")


def test_without_user_ids_there_is_no_gauc(tmp_path: Path) -> None:
    raw = _minimal()
    raw["data"]["user_col"] = ""
    raw["features"] = [f for f in raw["features"] if f["kind"] != "history"]  # needs user ids
    msg = _error(tmp_path, raw | {"train": {"early_stop": "click_buy/gauc"}})
    assert "task 'click_buy' has no metric 'gauc' (its metrics: auc, logloss)" in msg
