"""Tasks: each owns its head width, its loss on logits (masked) and its prediction transform."""

from __future__ import annotations

from mtrs.tasks.relations import EsmmRelation, Relation
from mtrs.tasks.task import Task
from mtrs.tasks.taskset import TaskSet

__all__ = ["EsmmRelation", "Relation", "Task", "TaskSet"]
