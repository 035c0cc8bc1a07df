"""The metric names each task produces, and their direction; no numpy, pandas or torch.

Config validation (``train.early_stop``, ``tune.metric``) checks names against these lists,
so a misspelt or inapplicable metric is an error before any data is read. The evaluator
(:meth:`mtrs.tasks.taskset.TaskSet.metrics`) produces exactly these names for every task;
``tests/eval/test_metric_names.py`` fails if the two disagree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

__all__ = [
    "HIGHER_IS_BETTER",
    "JOINT_METRICS",
    "JOINT_TYPE",
    "MERGED",
    "RANKING_CHOICES",
    "RANKING_METRICS",
    "TASK_METRICS",
    "USER_TASK_METRICS",
    "check_ranking_metric",
    "check_task_metric",
    "is_higher_better",
    "is_ranking_metric",
    "metric_names",
]

HIGHER_IS_BETTER: dict[str, bool] = {
    "auc": True,
    "gauc": True,
    "logloss": False,
    "rmse": False,
    "mae": False,
    "accuracy": True,
    "macro_f1": True,
    "hit_rate": True,
    "ndcg": True,
    "recall": True,
}

# Event tasks, by task type. gAUC is the AUC within each user, weighted by the user's rows.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("auc", "gauc", "logloss"),
    "regression": ("rmse", "mae"),
    "multiclass": ("accuracy", "macro_f1"),
}
# User-scoped (profiling) tasks are scored once per user, so there is no per-user gAUC.
USER_TASK_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("auc", "logloss"),
    "regression": ("rmse", "mae"),
    "multiclass": ("accuracy", "macro_f1"),
}
# A relation's joint task (e.g. ESMM's click_purchase) is scored as an event binary task.
JOINT_TYPE = "binary"
JOINT_METRICS: tuple[str, ...] = TASK_METRICS[JOINT_TYPE]
# Ranking metrics of a list, each at a cut-off: ``ndcg@10``.
RANKING_METRICS: tuple[str, ...] = ("hit_rate", "ndcg", "recall")
RANKING_CHOICES = "ranking metrics: " + ", ".join(f"{m}@<k>" for m in RANKING_METRICS)
# The list merged from the task lists (ranking evaluations and ``tune.metric``).
MERGED = "merged"


def metric_names(task_type: str, scope: str = "event", by_user: bool = True) -> tuple[str, ...]:
    """The metrics the evaluator reports for a task.

    Args:
        task_type: ``binary``, ``regression`` or ``multiclass``.
        scope: ``event``, or ``user`` for a profiling task.
        by_user: Whether rows carry user ids; without them there is no per-user ``gauc``.

    Returns:
        The metric names, in the order the evaluator reports them.
    """
    table = USER_TASK_METRICS if scope == "user" else TASK_METRICS
    return tuple(m for m in table[task_type] if by_user or m != "gauc")


def is_higher_better(name: str) -> bool:
    """Direction of a metric, accepting the keyed forms used in results.

    Args:
        name: A bare metric name (``"auc"``), a task-keyed one (``"ctr/auc"``) or a ranking one
            with a cut-off (``"ndcg@10"``, ``"click/recall@50"``).

    Returns:
        True when a larger value is better.

    Raises:
        ValueError: If the metric is unknown.
    """
    base = re.sub(r"@\d+$", "", name.rsplit("/", 1)[-1])
    if base not in HIGHER_IS_BETTER:
        known = ", ".join(sorted(HIGHER_IS_BETTER))
        raise ValueError(f"Unknown metric {name!r}; known metrics: {known}.")
    return HIGHER_IS_BETTER[base]


def check_task_metric(key: str, value: str, metrics: Mapping[str, Sequence[str]]) -> None:
    """``value`` must be ``"<task>/<metric>"`` with a metric that task reports.

    Args:
        key: The config key being checked, for the message (``"train.early_stop"``).
        value: Its value.
        metrics: Task (and joint task) name → the metrics it reports.

    Raises:
        ValueError: Naming ``key`` and listing the valid tasks or that task's metrics.
    """
    task, sep, metric = value.partition("/")
    if not sep:
        raise ValueError(f"{key}: expected '<task>/<metric>', e.g. 'click/auc' (got '{value}')")
    if task not in metrics:
        raise ValueError(f"{key}: unknown task '{task}' in '{value}' (tasks: {', '.join(metrics)})")
    if metric not in metrics[task]:
        raise ValueError(
            f"{key}: task '{task}' has no metric '{metric}' "
            f"(its metrics: {', '.join(metrics[task])})"
        )


def check_ranking_metric(key: str, value: str, lists: Sequence[str]) -> None:
    """``value`` must be ``"<list>/<metric>@<k>"`` over a list that exists.

    Args:
        key: The config key being checked, for the message (``"tune.metric"``).
        value: Its value.
        lists: The names of the ranked lists (``merged`` is always valid too).

    Raises:
        ValueError: Naming ``key`` and listing the valid lists or metrics.
    """
    name, sep, ranked = value.partition("/")
    if not sep:
        raise ValueError(
            f"{key}: expected '<list>/<metric>@<k>', e.g. 'merged/ndcg@10' (got '{value}')"
        )
    valid = [*lists, MERGED]
    if name not in valid:
        raise ValueError(
            f"{key}: '{name}' in '{value}' has no ranked list (lists: {', '.join(valid)})"
        )
    if not is_ranking_metric(ranked):
        raise ValueError(f"{key}: '{ranked}' is not a ranking metric ({RANKING_CHOICES})")


def is_ranking_metric(name: str) -> bool:
    """True for ``"<ranking metric>@<k>"`` with k ≥ 1, e.g. ``"ndcg@10"``."""
    metric, _, k = name.partition("@")
    return metric in RANKING_METRICS and k.isdigit() and int(k) >= 1
