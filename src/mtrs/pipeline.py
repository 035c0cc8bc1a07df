"""The training job: tables → split → fitted processor → tensors → model → trained → metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from mtrs.config.models import JobConfig
from mtrs.data.batch import Batch
from mtrs.data.processor import FittedProcessor
from mtrs.data.profiles import hold_out_profiles
from mtrs.data.split import TEST, TRAIN, VALID, SplitInput, assign_split
from mtrs.data.stream import use_streaming
from mtrs.data.tables import Tables, check_columns, load_tables, merge_tables
from mtrs.errors import MtrsUserError
from mtrs.eval.evaluator import evaluate
from mtrs.eval.metrics import HIGHER_IS_BETTER
from mtrs.model import build_model, count_parameters
from mtrs.recommend.catalog import Catalog
from mtrs.tasks.relations import EsmmRelation
from mtrs.tasks.task import Task, job_tasks
from mtrs.train.trainer import Trainer, TrainResult, seed_everything


@dataclass
class Prepared:
    """A job's data after the split and the processor fit."""

    cfg: JobConfig
    frame: pd.DataFrame
    split: np.ndarray
    processor: FittedProcessor
    full: Batch
    items_table: pd.DataFrame | None = None

    def part(self, which: int) -> Batch:
        """The rows of one split (TRAIN, VALID or TEST)."""
        return self.full.take(torch.from_numpy(np.flatnonzero(self.split == which)))


@dataclass
class Job:
    """A trained job: the model with its tasks, relations and results."""

    cfg: JobConfig
    prepared: Prepared
    model: nn.Module
    tasks: list[Task]
    relations: list[EsmmRelation]
    result: TrainResult
    test_metrics: dict[str, dict[str, float]]
    # Set by the streaming path, whose log is never in memory for ``build_catalog``.
    catalog: Catalog | None = None

    @property
    def num_parameters(self) -> int:
        """Trainable parameters of the model."""
        return count_parameters(self.model)


def sort_events(df: pd.DataFrame, cfg: JobConfig) -> pd.DataFrame:
    """Events in time order (stable), the order histories and splits assume."""
    return df.sort_values(cfg.data.time_col, kind="stable").reset_index(drop=True)


def prepare(
    cfg: JobConfig, tables: Tables | None = None, processor: FittedProcessor | None = None
) -> Prepared:
    """Read, join, check, split and encode a job's data.

    Args:
        cfg: The job config.
        tables: Tables already in memory (else read from ``[data]``).
        processor: An already fitted processor (evaluating a saved model); else fitted here.

    Returns:
        The prepared data; the processor is fitted on the training split only.

    Raises:
        MtrsUserError: Bad data (missing column, wrong type, empty table or split).
    """
    tables = tables or load_tables(cfg)
    df = merge_tables(tables, cfg.data)
    check_columns(df, cfg)
    d = cfg.data
    if not pd.api.types.is_numeric_dtype(df[d.time_col]):
        try:
            df[d.time_col] = pd.to_datetime(df[d.time_col]).astype("int64") // 10**9
        except (ValueError, TypeError):
            raise MtrsUserError(
                f"{d.interactions}: time column '{d.time_col}' is neither numeric nor a date"
            ) from None
    df = sort_events(df, cfg)
    user = pd.factorize(df[d.user_col])[0]
    unit_col = cfg.split.unit
    if unit_col is not None and unit_col not in df.columns:
        raise MtrsUserError(f"{d.interactions}: split.unit column '{unit_col}' not found")
    unit = pd.factorize(df[unit_col])[0] if unit_col else np.arange(len(df))
    split = assign_split(SplitInput(user, df[d.time_col].to_numpy(), unit), cfg.split)
    if not (split == TRAIN).any():
        raise MtrsUserError(f"{d.interactions}: the training split is empty")
    processor = processor or FittedProcessor.fit(df[split == TRAIN], cfg)
    full = processor.encode(df)
    hold_out_profiles(full, df[d.user_col], split, cfg)
    return Prepared(cfg, df, split, processor, full, tables.items)


def check_monitor(cfg: JobConfig, tasks: list[Task], relations: list[EsmmRelation]) -> None:
    """``train.early_stop`` must name a task (or relation) and one of its metrics."""
    if cfg.train.early_stop is None:
        return
    task, metric = cfg.train.early_stop.split("/", 1)
    types = {t.name: t.type for t in tasks} | {r.name: "binary" for r in relations}
    if task not in types:
        raise MtrsUserError(f"train.early_stop: unknown task '{task}' (tasks: {', '.join(types)})")
    if metric not in HIGHER_IS_BETTER:
        raise MtrsUserError(f"train.early_stop: unknown metric '{metric}'")


def build(cfg: JobConfig, prepared: Prepared) -> tuple[nn.Module, list[Task], list[EsmmRelation]]:
    """Tasks, relations and the model for prepared data (seeded)."""
    seed_everything(cfg.train.seed)
    tasks, relations = job_tasks(cfg, prepared.processor)
    check_monitor(cfg, tasks, relations)
    model = build_model(prepared.processor, cfg, tasks)
    return model, tasks, relations


def run_job(
    cfg: JobConfig,
    tables: Tables | None = None,
    prepared: Prepared | None = None,
    configure: Callable[[Trainer], None] | None = None,
) -> Job:
    """Prepare, build, train with validation, and score the test split.

    Args:
        cfg: The job config.
        tables: Tables already in memory (else read from ``[data]``).
        prepared: Data already prepared with this config's split (shared across runs).
        configure: Called with the trainer before training (e.g. to attach diagnostics).
    """
    if prepared is None and tables is None and use_streaming(cfg):
        from mtrs.streaming import run_streaming_job

        return run_streaming_job(cfg, configure)
    prepared = prepared or prepare(cfg, tables)
    model, tasks, relations = build(cfg, prepared)
    trainer = Trainer(model, tasks, cfg, relations)
    if configure is not None:
        configure(trainer)
    valid = prepared.part(VALID)
    result = trainer.fit(prepared.part(TRAIN), valid if len(valid) else None)
    test = prepared.part(TEST)
    test_metrics = (
        evaluate(model, test, tasks, relations, cfg.train.eval_batch_size, trainer.device)
        if len(test)
        else {}
    )
    model.cpu()
    return Job(cfg, prepared, model, tasks, relations, result, test_metrics)
