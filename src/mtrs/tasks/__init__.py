"""Tasks: each owns its head width, its loss on logits (masked) and its prediction transform."""

from __future__ import annotations

from mtrs.tasks.relations import EsmmRelation, Relation, build_relations
from mtrs.tasks.task import Task, build_tasks

__all__ = ["EsmmRelation", "Relation", "Task", "build_relations", "build_tasks"]
