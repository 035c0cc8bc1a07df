"""The job's tasks and the relations between them, addressed by name: one owner for both.

The trainer, the evaluator, the recommender and the model directory take a :class:`TaskSet`
instead of a list of tasks and a list of relations, so losses, prediction transforms and
metrics are defined once, here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from torch import Tensor

from mtrs.arch.registry import get_architecture
from mtrs.config.models import JobConfig, RelationConfig
from mtrs.data.batch import Batch
from mtrs.data.labels import TaskEncoding
from mtrs.errors import MtrsUserError
from mtrs.eval.metrics import task_metrics
from mtrs.eval.names import JOINT_TYPE, check_task_metric, metric_names
from mtrs.tasks.relations import RELATIONS, EsmmRelation
from mtrs.tasks.task import Task

PRIMARY_METRIC = {"binary": "auc", "regression": "rmse", "multiclass": "accuracy"}


@dataclass(frozen=True)
class TaskSet:
    """Tasks in label-column order and the relations bound to them.

    Attributes:
        tasks: One per ``[[tasks]]`` table; ``tasks[j].column`` is ``j``.
        relations: Derived tasks over them (ESMM funnels); an active relation trains its
            child through the joint probability and gives the child no loss of its own.
        by_user: Whether rows carry real user ids, so per-user metrics (gAUC) mean something.
    """

    tasks: tuple[Task, ...]
    relations: tuple[EsmmRelation, ...] = ()
    by_user: bool = True

    @classmethod
    def build(
        cls,
        encodings: list[TaskEncoding],
        relations: list[RelationConfig],
        architecture_relation: str | None = None,
    ) -> TaskSet:
        """Tasks from their fitted encodings, relations bound by name.

        Args:
            encodings: The processor's label encodings, in label-column order.
            relations: The ``[[relations]]`` tables.
            architecture_relation: The relation type the architecture trains through
                (``esmm`` for the ESMM architecture); it activates relations whose ``loss``
                is unset.
        """
        active = [
            c.loss if c.loss is not None else c.type == architecture_relation for c in relations
        ]
        no_direct = {c.child for c, on in zip(relations, active, strict=True) if on}
        tasks = tuple(
            Task(enc.config.name, j, enc, direct_loss=enc.config.name not in no_direct)
            for j, enc in enumerate(encodings)
        )
        by_name = {t.name: t for t in tasks}
        bound = tuple(
            RELATIONS[c.type].from_config(c, by_name, on)
            for c, on in zip(relations, active, strict=True)
        )
        return cls(tasks, bound)

    @classmethod
    def for_job(cls, cfg: JobConfig, encodings: list[TaskEncoding]) -> TaskSet:
        """The job's task set: relations are active as its architecture requires."""
        arch_relation = get_architecture(cfg.model.architecture).requires_relation
        built = cls.build(encodings, cfg.relations, arch_relation)
        return built if cfg.data.user_col else replace(built, by_user=False)

    # ----- access ---------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, name: str) -> Task:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        """Task names in label-column order."""
        return [t.name for t in self.tasks]

    @property
    def event_tasks(self) -> list[Task]:
        """Tasks about an event (everything but the user-scoped profiling tasks)."""
        return [t for t in self.tasks if not t.user_scoped]

    @property
    def user_tasks(self) -> list[Task]:
        """User-scoped (profiling) tasks."""
        return [t for t in self.tasks if t.user_scoped]

    @property
    def loss_relations(self) -> list[EsmmRelation]:
        """Relations with a loss of their own."""
        return [r for r in self.relations if r.active]

    @property
    def list_names(self) -> list[str]:
        """What gets a ranked list: event tasks with one score per item, then relations."""
        return [t.name for t in self.event_tasks if t.type != "multiclass"] + [
            r.name for r in self.relations
        ]

    def is_probability(self, name: str) -> bool:
        """True for binary tasks and relations (scores in [0, 1])."""
        return name not in self.names or self[name].type == "binary"

    def types(self) -> dict[str, str]:
        """Task (and relation) name → task type."""
        return {t.name: t.type for t in self.tasks} | {r.name: "binary" for r in self.relations}

    # ----- training -------------------------------------------------------------------------
    def loss_weights(self) -> dict[str, float]:
        """Every loss term's fixed weight w_i: direct tasks, then active relations.

        A relation's term carries its child's weight (it is the child's only loss).
        """
        out = {t.name: t.weight for t in self.tasks if t.direct_loss}
        out.update({r.name: r.child.weight for r in self.loss_relations})
        return out

    def losses(self, logits: dict[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        """Every loss term on a batch, by name (masked where a label does not count)."""
        out = {
            t.name: t.loss(logits[t.name], batch.labels, batch.mask)
            for t in self.tasks
            if t.direct_loss
        }
        for r in self.loss_relations:
            out[r.name] = r.loss(logits, batch.labels, batch.mask)
        return out

    def loss_rows(self, mask: Tensor) -> dict[str, float]:
        """Per loss term of :meth:`losses`, the rows it averages over (``mask``: a batch's).

        Data-parallel training weights each rank's share of a term by these counts, so that
        the ranks together follow the gradient of the global mini-batch's masked mean. An
        empty mask (a rank without rows) counts 0 everywhere.
        """
        if mask.numel() == 0:
            return {name: 0.0 for name in self.loss_weights()}
        out = {t.name: float(t.loss_rows(mask)) for t in self.tasks if t.direct_loss}
        for r in self.loss_relations:
            out[r.name] = float(r.loss_rows(mask))
        return out

    def default_monitor(self) -> str:
        """``<first event task>/<its primary metric>`` (a profiling task only if all are)."""
        event = [t for t in self.event_tasks if t.direct_loss] or list(self.tasks)
        return f"{event[0].name}/{PRIMARY_METRIC[event[0].type]}"

    def check_monitor(self, monitor: str | None) -> None:
        """``train.early_stop`` must name a task (or relation) and one of its metrics."""
        if monitor is None:
            return
        try:
            check_task_metric("train.early_stop", monitor, self.metric_names())
        except ValueError as err:
            raise MtrsUserError(str(err)) from None

    def metric_names(self) -> dict[str, tuple[str, ...]]:
        """Task (and relation) name → the metrics :meth:`metrics` reports for it."""
        by_user = self.by_user
        out = {
            t.name: metric_names(t.type, "user" if t.user_scoped else "event", by_user)
            for t in self
        }
        return out | {r.name: metric_names(JOINT_TYPE, "event", by_user) for r in self.relations}

    # ----- prediction -----------------------------------------------------------------------
    def predict(self, logits: dict[str, Tensor]) -> dict[str, Tensor]:
        """Predictions from logits for every task present, then every computable relation.

        Binary: probability [B]; regression: standardised value [B]; multiclass: class
        probabilities [B, C]; relation: probability [B].
        """
        out = {
            t.name: t.kind.predict(logits[t.name].float()) for t in self.tasks if t.name in logits
        }
        for r in self.relations:
            if r.parent.name in out and r.child.name in out:
                out[r.name] = r.predict(out)
        return out

    def to_output(self, name: str, pred: np.ndarray) -> np.ndarray:
        """A prediction on its label's own scale (regression values de-standardised)."""
        return self[name].to_output(pred) if name in self.names else pred

    # ----- metrics --------------------------------------------------------------------------
    def metrics(self, preds: dict[str, np.ndarray], batch: Batch) -> dict[str, dict[str, float]]:
        """Per-task metrics where each task's label counts, then the relations'.

        User-scoped tasks are scored once per user (the user's label against the mean of the
        predictions over the user's rows), so heavy users do not dominate a profiling metric.
        """
        labels = batch.labels.numpy()
        mask = batch.mask.numpy()
        user = batch.user.numpy()
        groups = user if self.by_user else None
        out: dict[str, dict[str, float]] = {}
        for t in self.tasks:
            m = mask[:, t.column]
            y = labels[m, t.column]
            p = preds[t.name][m]
            if t.type == "regression":
                y = t.to_output(y)
            if t.user_scoped:
                y, p = _per_user(user[m], y, p)
                out[t.name] = task_metrics(t.type, y, p, None)
            else:
                g = groups[m] if groups is not None and t.type == "binary" else None
                out[t.name] = task_metrics(t.type, y, p, g)
        for r in self.relations:
            y_t, valid = r.target(batch.labels, batch.mask)
            v = valid.numpy()
            g = groups[v] if groups is not None else None
            out[r.name] = task_metrics("binary", y_t.numpy()[v], preds[r.name][v], g)
        return out


def _per_user(user: np.ndarray, y: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One row per user: the user's label and the mean of their predictions."""
    if pred.ndim == 1:
        frame = pd.DataFrame({"u": user, "y": y, "p": pred})
        g = frame.groupby("u", sort=True)
        return g["y"].first().to_numpy(), g["p"].mean().to_numpy()
    cols = [f"p{i}" for i in range(pred.shape[1])]
    frame = pd.DataFrame(pred, columns=cols)
    frame["u"], frame["y"] = user, y
    g = frame.groupby("u", sort=True)
    return g["y"].first().to_numpy(), g[cols].mean().to_numpy()
