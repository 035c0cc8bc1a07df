"""The metric names config validation accepts are exactly the names the evaluator reports."""

from __future__ import annotations

import math

import numpy as np
import torch

from mtrs.config.models import RelationConfig, TaskConfig, task_metric_names
from mtrs.data.batch import Batch
from mtrs.data.encoders import Scaler
from mtrs.data.labels import TaskEncoding
from mtrs.eval import metrics as metric_functions
from mtrs.eval.names import HIGHER_IS_BETTER, RANKING_METRICS, TASK_METRICS, USER_TASK_METRICS
from mtrs.tasks.taskset import TaskSet

# Every task type in both scopes, and a funnel (its joint task "click_buy").
TASKS = [
    TaskConfig(name="click", type="binary", label="click"),
    TaskConfig(name="buy", type="binary", label="buy"),
    TaskConfig(name="gender", type="binary", label="gender", scope="user"),
    TaskConfig(name="rating", type="regression", label="rating"),
    TaskConfig(name="income", type="regression", label="income", scope="user"),
    TaskConfig(name="genre", type="multiclass", label="genre"),
    TaskConfig(name="age", type="multiclass", label="age", scope="user"),
]
RELATIONS = [RelationConfig(parent="click", child="buy")]
CLASSES = ["a", "b", "c"]


def _task_set() -> TaskSet:
    encodings = [
        TaskEncoding(
            t,
            classes=CLASSES if t.type == "multiclass" else None,
            scaler=Scaler() if t.type == "regression" else None,
        )
        for t in TASKS
    ]
    return TaskSet.build(encodings, RELATIONS)


def _evaluated(tasks: TaskSet) -> dict[str, dict[str, float]]:
    """The evaluator's metrics on 60 rows of 6 users, every label present."""
    rng = np.random.default_rng(0)
    n, users = 60, 6
    user = np.repeat(np.arange(users), n // users)
    labels = np.zeros((n, len(TASKS)), dtype=np.float32)
    preds: dict[str, np.ndarray] = {}
    for j, t in enumerate(TASKS):
        if t.type == "binary":
            # Both classes within every user (gAUC needs them) and across users.
            labels[:, j] = np.tile([0.0, 1.0], n // 2)
            if t.scope == "user":
                labels[:, j] = user % 2
            preds[t.name] = rng.random(n)
        elif t.type == "regression":
            labels[:, j] = rng.normal(size=n)
            preds[t.name] = rng.normal(size=n)
        else:
            labels[:, j] = (user if t.scope == "user" else np.arange(n)) % len(CLASSES)
            preds[t.name] = rng.dirichlet(np.ones(len(CLASSES)), size=n)
    preds["click_buy"] = rng.random(n)
    batch = Batch(
        cat=torch.zeros(n, 0, dtype=torch.int64),
        num=torch.zeros(n, 0),
        labels=torch.from_numpy(labels),
        mask=torch.ones(n, len(TASKS), dtype=torch.bool),
        user=torch.from_numpy(user),
    )
    return tasks.metrics(preds, batch)


def test_the_evaluator_reports_exactly_the_listed_names() -> None:
    tasks = _task_set()
    got = _evaluated(tasks)
    assert {name: tuple(ms) for name, ms in got.items()} == tasks.metric_names()
    # Config validation uses the same lists for the same tasks.
    assert task_metric_names(TASKS, RELATIONS) == tasks.metric_names()
    # And they are what the docs say (docs/config.md, "Metric names").
    assert tasks.metric_names() == {
        "click": ("auc", "gauc", "logloss"),
        "buy": ("auc", "gauc", "logloss"),
        "gender": ("auc", "logloss"),
        "rating": ("rmse", "mae"),
        "income": ("rmse", "mae"),
        "genre": ("accuracy", "macro_f1"),
        "age": ("accuracy", "macro_f1"),
        "click_buy": ("auc", "gauc", "logloss"),
    }
    for name, ms in got.items():
        for metric, value in ms.items():
            assert math.isfinite(value), f"{name}/{metric} = {value}"


def test_every_listed_metric_has_a_direction_and_every_task_type_a_metric_function() -> None:
    listed = {m for table in (TASK_METRICS, USER_TASK_METRICS) for ms in table.values() for m in ms}
    assert listed | set(RANKING_METRICS) == set(HIGHER_IS_BETTER)
    assert set(TASK_METRICS) == set(USER_TASK_METRICS) == set(metric_functions.TASK_METRICS)
    # The ranking metrics the evaluator computes carry these names at each cut-off.
    hits = np.array([[True, False, True]])
    got = metric_functions.ranking_metrics(hits, np.array([2]), [1, 3])
    assert set(got) == {f"{m}@{k}" for m in RANKING_METRICS for k in (1, 3)}
