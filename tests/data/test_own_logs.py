"""Logs as people have them: given split files, missing ids or times, labels as history values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from mtrs.config.models import JobConfig
from mtrs.data.log import FrameLog
from mtrs.errors import MtrsUserError
from mtrs.prepare import prepare


def _cfg(data: dict[str, Any], **extra: Any) -> JobConfig:
    raw: dict[str, Any] = {
        "data": data,
        "features": [{"name": "f", "kind": "categorical", "group": "context"}],
        "tasks": [{"name": "click", "type": "binary", "label": "click"}],
        **extra,
    }
    return JobConfig.model_validate(raw)


def _write(path: Path, n: int, start: int, **cols: Any) -> str:
    df = pd.DataFrame({"f": [f"v{(start + i) % 3}" for i in range(n)], "click": np.arange(n) % 2})
    for k, v in cols.items():
        df[k] = v
    df.to_csv(path, index=False)
    return str(path)


def test_given_files_are_the_split(tmp_path: Path) -> None:
    data = {
        "train": _write(tmp_path / "tr.csv", 10, 0),
        "valid": _write(tmp_path / "va.csv", 4, 10),
        "test": _write(tmp_path / "te.csv", 3, 14),
        "user_col": "",
        "item_col": "",
        "time_col": "",
    }
    cfg = _cfg(data)
    assert cfg.split.method == "given"
    log = FrameLog(cfg)
    np.testing.assert_array_equal(log.split_counts(), [10, 4, 3])
    # Without times the file order stays: the last three rows are test.csv's, in its order.
    assert log.frame["f"].tolist()[-3:] == ["v2", "v0", "v1"]
    assert log.split.tolist() == [0] * 10 + [1] * 4 + [2] * 3


def test_given_files_keep_their_split_when_sorted_by_time(tmp_path: Path) -> None:
    # The test file's events are earlier than some training events: each keeps its file's split.
    data = {
        "train": _write(tmp_path / "tr.csv", 4, 0, timestamp=[5, 6, 7, 8], user_id=1, item_id=1),
        "test": _write(tmp_path / "te.csv", 2, 0, timestamp=[1, 9], user_id=1, item_id=1),
    }
    log = FrameLog(_cfg(data))
    assert log.frame["timestamp"].tolist() == [1, 5, 6, 7, 8, 9]
    assert log.split.tolist() == [2, 0, 0, 0, 0, 2]


def test_given_files_need_the_same_columns_and_no_other_split(tmp_path: Path) -> None:
    data = {
        "train": _write(tmp_path / "tr.csv", 4, 0, user_id=1, item_id=1, timestamp=1),
        "test": _write(tmp_path / "te.csv", 2, 0, user_id=1, item_id=1, timestamp=1, extra=3),
    }
    with pytest.raises(MtrsUserError, match="column 'extra' is in only one of"):
        FrameLog(_cfg(data))
    with pytest.raises(ValidationError, match=r"the split is given by data\.train/valid/test"):
        _cfg(data, split={"method": "temporal"})


def test_a_named_key_column_that_is_missing_names_the_field(tmp_path: Path) -> None:
    path = _write(tmp_path / "e.csv", 5, 0, timestamp=1, item_id=2)
    with pytest.raises(MtrsUserError) as err:
        FrameLog(_cfg({"interactions": path}))
    msg = str(err.value)
    assert "data.user_col: column 'user_id' not found" in msg
    assert 'or set data.user_col = "" if it has none' in msg


@pytest.mark.parametrize(
    ("data", "extra", "fragment"),
    [
        (
            {"user_col": ""},
            {"features": [
                {"name": "item_id", "kind": "categorical", "group": "item"},
                {"name": "h", "kind": "history", "group": "behaviour", "item_feature": "item_id"},
            ]},
            "features.h: a behaviour history needs the log's user ids (data.user_col is empty)",
        ),
        ({"time_col": ""}, {"split": {"method": "temporal"}}, "'temporal' needs the log's event"),
        ({"user_col": ""}, {"split": {"method": "leave_last"}}, "'leave_last' needs the log's"),
        (
            {"user_col": ""},
            {"tasks": [{"name": "g", "type": "binary", "label": "g", "scope": "user"}]},
            "tasks.g: a user-scoped task needs the log's user ids",
        ),
        ({"user_col": "", "users": "u.csv"}, {}, "data.users: a users table needs data.user_col"),
        ({"item_col": "", "items": "i.csv"}, {}, "data.items: an items table needs data.item_col"),
    ],
)  # fmt: skip
def test_what_a_log_without_a_key_cannot_do_is_a_config_error(
    data: dict[str, Any], extra: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ValidationError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        _cfg({"interactions": "e.csv", **data}, **extra)


def test_a_label_as_history_value_never_leaks_the_current_event(tmp_path: Path) -> None:
    # One user rates items 1..4 at times 1..4 with ratings 1..4; item 5 at time 4 too.
    df = pd.DataFrame(
        {
            "user_id": [7] * 5,
            "item_id": [1, 2, 3, 4, 5],
            "timestamp": [1, 2, 3, 4, 4],
            "rating": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    path = tmp_path / "r.csv"
    df.to_csv(path, index=False)
    cfg = JobConfig.model_validate(
        {
            "data": {"interactions": str(path)},
            "features": [
                {"name": "item_id", "kind": "categorical", "group": "item"},
                {
                    "name": "past",
                    "kind": "history",
                    "group": "behaviour",
                    "item_feature": "item_id",
                    "history_value": "rating",
                    "max_length": 3,
                },
            ],
            "tasks": [{"name": "rating", "type": "regression", "label": "rating"}],
            "split": {"valid_fraction": 0.0, "test_fraction": 0.0},
            "train": {"progress": False},
        }
    )
    prep = prepare(cfg)
    batch = prep.all_rows()
    scaler = prep.processor.scalers["past"]
    values = np.where(
        batch.hist["past"].numpy() > 0,
        scaler.inverse(batch.hist_value["past"].numpy().astype(np.float64)),
        np.nan,
    )
    # Row k's history holds the ratings of strictly earlier events only: never its own.
    expected = [
        [np.nan, np.nan, np.nan],
        [np.nan, np.nan, 1.0],
        [np.nan, 1.0, 2.0],
        [1.0, 2.0, 3.0],
        [1.0, 2.0, 3.0],  # time 4 as well: the rating 4 at the same instant is not earlier
    ]
    np.testing.assert_allclose(values, expected, atol=1e-5)
    labels = batch.labels.numpy()[:, 0]
    for row in range(5):
        own = prep.processor.tasks[0].scaler.transform(np.array([df["rating"][row]]))[0]  # type: ignore[union-attr]
        assert np.isclose(labels[row], own)
