"""The training job: prepared data → model and tasks → trained with validation → test metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from mtrs.arch.registry import check_architecture
from mtrs.config.models import JobConfig
from mtrs.data.tables import Tables
from mtrs.eval.evaluator import evaluate
from mtrs.model import build_model, count_parameters
from mtrs.outdir import pause_point
from mtrs.prepare import Prepared, prepare
from mtrs.recommend.catalog import Catalog
from mtrs.recommend.recommender import Recommender
from mtrs.tasks.taskset import TaskSet
from mtrs.train.trainer import Trainer, TrainResult, seed_everything


@dataclass
class Job:
    """A trained job: the model with its tasks, its data and its results."""

    cfg: JobConfig
    prepared: Prepared
    model: nn.Module
    tasks: TaskSet
    result: TrainResult
    test_metrics: dict[str, dict[str, float]]
    warnings: list[str] = field(default_factory=list)

    @property
    def catalog(self) -> Catalog:
        """The serving catalog of the job's log."""
        return self.prepared.catalog

    @property
    def num_parameters(self) -> int:
        """Trainable parameters of the model."""
        return count_parameters(self.model)

    def recommender(self, catalog: Catalog | None = None) -> Recommender:
        """A recommender with the config's defaults, over the job's catalog (or ``catalog``)."""
        return Recommender(
            self.model,
            self.prepared.processor,
            self.tasks,
            catalog or self.catalog,
            self.cfg.recommend,
        )


def build(cfg: JobConfig, prepared: Prepared) -> tuple[nn.Module, TaskSet]:
    """The task set and the model for prepared data (seeded)."""
    check_architecture(cfg)
    seed_everything(cfg.train.seed)
    tasks = TaskSet.for_job(cfg, prepared.processor.tasks)
    tasks.check_monitor(cfg.train.early_stop)
    return build_model(prepared.processor, cfg, tasks), tasks


def run_job(
    cfg: JobConfig,
    tables: Tables | None = None,
    prepared: Prepared | None = None,
    configure: Callable[[Trainer], None] | None = None,
) -> Job:
    """Prepare, build, train with validation, and score the test split.

    Args:
        cfg: The job config.
        tables: Tables already in memory (else read from ``[data]``, streamed if it asks).
        prepared: Data already prepared with this config's split (shared across runs).
        configure: Called with the trainer before training (e.g. to attach diagnostics).
    """
    check_architecture(cfg)  # before any data is read
    prepared = prepared or prepare(cfg, tables)
    model, tasks = build(cfg, prepared)
    trainer = Trainer(model, tasks, cfg)
    if configure is not None:
        configure(trainer)
    pause_point("train")  # test hook (crash tests); nothing unless MTRS_TEST_PAUSE_AT is set
    result = trainer.fit(prepared.train, prepared.valid)
    test = prepared.test
    test_metrics = (
        evaluate(model, test, tasks, cfg.train.eval_batch_size, trainer.device)
        if test is not None
        else {}
    )
    model.cpu()
    return Job(
        cfg, prepared, model, tasks, result, test_metrics, job_warnings(cfg, prepared, result)
    )


def job_warnings(cfg: JobConfig, prepared: Prepared, result: TrainResult) -> list[str]:
    """What a job could not do that its config asked for (printed, and kept in metrics.json)."""
    out = []
    s = cfg.split
    for rows, name, fraction in ((prepared.valid, "validation", s.valid_fraction),
                                 (prepared.test, "test", s.test_fraction)):  # fmt: skip
        asked = fraction > 0 if s.method != "given" else False
        if asked and (rows is None or len(rows) == 0):
            what = (
                "no early stopping or validation metrics"
                if name == "validation"
                else ("no test metrics")
            )
            out.append(
                f"split: the {name} split is empty ({s.method} split, {name} fraction "
                f"{fraction:g}): {what}"
            )
    return out + result.warnings
