"""The training job: prepared data → model and tasks → trained with validation → test metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from mtrs.arch.registry import check_architecture
from mtrs.config.models import JobConfig
from mtrs.data.processor import FittedProcessor
from mtrs.data.stream import TrainStream
from mtrs.data.tables import Tables
from mtrs.model import build_model, count_parameters
from mtrs.outdir import pause_point
from mtrs.prepare import Prepared, prepare
from mtrs.recommend.catalog import Catalog
from mtrs.recommend.recommender import Recommender
from mtrs.tasks.taskset import TaskSet
from mtrs.train.checkpoint import Checkpoints
from mtrs.train.distributed import Distributed
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
    checkpoints: Checkpoints | None = None,
    dist: Distributed | None = None,
) -> Job:
    """Prepare, build, train with validation, and score the test split.

    Args:
        cfg: The job config.
        tables: Tables already in memory (else read from ``[data]``, streamed if it asks).
        prepared: Data already prepared with this config's split (shared across runs).
        configure: Called with the trainer before training (e.g. to attach diagnostics).
        checkpoints: Where training writes its checkpoints, and continues from the latest
            one if there is one (:class:`~mtrs.train.checkpoint.Checkpoints`).
        dist: This process's place in a data-parallel job (torchrun): rank 0 fits the
            processor and sends it to the others, each rank trains on its share of the rows,
            and validation and test metrics come from every rank's predictions gathered.
    """
    check_architecture(cfg)  # before any data is read
    share = None
    if dist is not None:
        ranks = dist

        def share(fit: Callable[[], FittedProcessor]) -> FittedProcessor:
            return FittedProcessor.from_json(ranks.broadcast_json(lambda: fit().to_json()), cfg)

    prepared = prepared or prepare(cfg, tables, share=share)
    if dist is not None and isinstance(prepared.train, TrainStream):
        prepared.train.shard = (dist.rank, dist.world)
    model, tasks = build(cfg, prepared)
    trainer = Trainer(model, tasks, cfg, dist)
    if configure is not None:
        configure(trainer)
    pause_point("train")  # test hook (crash tests); nothing unless MTRS_TEST_PAUSE_AT is set
    result = trainer.fit(prepared.train, prepared.valid, checkpoints)
    test = prepared.test
    test_metrics = trainer.evaluate(test) if test is not None else {}
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
