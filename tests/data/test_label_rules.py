"""Derived labels: rules computed in the data stage, checked by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from mtrs.config.models import LabelRule, TaskConfig
from mtrs.data.labels import apply_rule, derive_labels
from mtrs.errors import MtrsUserError

RATINGS = pd.Series([0.5, 3.5, 4.0, None, 5.0, 2.0], name="rating")


def _rule(**kw: object) -> LabelRule:
    return LabelRule.model_validate({"column": "rating", **kw})


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"at_least": 4}, [0, 0, 1, np.nan, 1, 0]),
        ({"above": 4}, [0, 0, 0, np.nan, 1, 0]),
        ({"at_most": 2}, [1, 0, 0, np.nan, 0, 1]),
        ({"below": 2}, [1, 0, 0, np.nan, 0, 0]),
        ({"at_least": 2, "below": 4}, [0, 1, 0, np.nan, 0, 1]),
        ({"equals": 4}, [0, 0, 1, np.nan, 0, 0]),
        ({"equals": "4"}, [0, 0, 1, np.nan, 0, 0]),
        ({"one_of": [0.5, 5]}, [1, 0, 0, np.nan, 1, 0]),
    ],
)
def test_comparisons_by_hand(kw: dict[str, object], expected: list[float]) -> None:
    got = apply_rule(RATINGS, _rule(**kw), "tasks.like.label", "events.csv").to_numpy()
    np.testing.assert_array_equal(got, np.array(expected, dtype=float))


def test_text_values_compare_as_text() -> None:
    col = pd.Series(["F", "M", None, "F"], name="gender")
    rule = LabelRule(column="gender", one_of=["F"])
    got = apply_rule(col, rule, "tasks.g.label", "users.csv").to_numpy()
    np.testing.assert_array_equal(got, [1.0, 0.0, np.nan, 1.0])


def test_map_gives_classes_and_drops_unmapped_values() -> None:
    rule = _rule(map={"1": "low", "2": "low", "4": "high", "5": "high"})
    col = pd.Series([1.0, 2.0, 3.0, None, 5.0, 4.0], name="rating")
    got = apply_rule(col, rule, "tasks.taste.label", "events.csv").tolist()
    assert got[:2] == ["low", "low"] and got[4:] == ["high", "high"]
    assert pd.isna(got[2]) and pd.isna(got[3])  # 3 is unmapped, the 4th value is missing


def test_numeric_comparison_on_text_names_task_column_value_and_row() -> None:
    col = pd.Series([4.0, "four", 1.0], name="rating", dtype=object)
    with pytest.raises(MtrsUserError) as err:
        apply_rule(col, _rule(at_least=4), "tasks.like.label", "events.csv")
    msg = str(err.value)
    assert "tasks.like.label" in msg and "'rating'" in msg and "'four'" in msg
    assert "data row 2" in msg


def test_derive_labels_adds_label_and_condition_columns() -> None:
    task = TaskConfig.model_validate(
        {
            "name": "like",
            "type": "binary",
            "label": {"column": "rating", "at_least": 4},
            "condition": {"column": "watched", "equals": 1},
        }
    )
    df = pd.DataFrame({"rating": [5.0, 1.0, 4.0], "watched": [1, 1, 0]})
    out = derive_labels(df, [task], "events.csv")
    assert task.label_column == "like:label" and task.condition_column == "like:condition"
    assert out["like:label"].tolist() == [1.0, 0.0, 1.0]
    assert out["like:condition"].tolist() == [1.0, 1.0, 0.0]
    assert task.source_columns == ["rating", "watched"]


@pytest.mark.parametrize(
    ("task", "fragment"),
    [
        ({"type": "regression", "label": {"column": "r", "at_least": 1}}, "regression label"),
        ({"type": "binary", "label": {"column": "r", "map": {"1": "a", "2": "b"}}}, "not a map"),
        ({"type": "multiclass", "label": {"column": "r", "at_least": 1}}, "derived by a map"),
        ({"type": "binary", "label": {"column": "r"}}, "give a comparison"),
        ({"type": "multiclass", "label": {"column": "r", "map": {"1": "a"}}}, "two classes"),
        (
            {"type": "binary", "label": {"column": "r", "at_least": 1}, "positive_value": "x"},
            "not both",
        ),
    ],
)
def test_bad_rules_are_config_errors(task: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        TaskConfig.model_validate({"name": "t", **task})
