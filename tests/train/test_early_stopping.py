"""Early stopping and the kept state: patience, higher- and lower-is-better monitors, restore."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from mtrs.config.load import load_config
from mtrs.config.models import JobConfig
from mtrs.data.batch import Batch
from mtrs.datasets.synth import SynthSpec
from mtrs.job import build
from mtrs.prepare import Prepared, prepare
from mtrs.train.trainer import EpochRecord, Trainer


@pytest.fixture(scope="module")
def job_dir(synth_job: Callable[[SynthSpec], Path]) -> Path:
    return synth_job(SynthSpec(num_users=60, num_items=20, num_events=1500))


def _config(job_dir: Path, monitor: str, epochs: int, patience: int) -> JobConfig:
    cfg = load_config(job_dir / "job.toml")
    cfg.train.epochs = epochs
    cfg.train.patience = patience
    cfg.train.early_stop = monitor
    cfg.train.progress = False
    cfg.train.threads = 1
    cfg.train.batch_size = 256
    return cfg


@pytest.fixture(scope="module")
def prepared(job_dir: Path) -> Prepared:
    return prepare(_config(job_dir, "click/auc", 1, 1))


class Scripted(Trainer):
    """A trainer whose validation metrics follow a script, recording the state of each epoch."""

    def __init__(self, cfg: JobConfig, prepared: Prepared, task: str, metric: str,
                 values: list[float]) -> None:  # fmt: skip
        model, tasks = build(cfg, prepared)
        super().__init__(model, tasks, cfg)
        self.script = iter(values)
        self.key = (task, metric)
        self.states: list[dict[str, torch.Tensor]] = []
        self.epoch_callbacks.append(self._record)

    def evaluate(self, data: Batch) -> dict[str, dict[str, float]]:
        task, metric = self.key
        return {task: {metric: next(self.script)}}

    def _record(self, trainer: Trainer, rec: EpochRecord) -> None:
        self.states.append(copy.deepcopy(trainer.model.state_dict()))


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_patience_stops_and_the_best_higher_is_better_epoch_is_restored(
    job_dir: Path, prepared: Prepared
) -> None:
    cfg = _config(job_dir, "click/auc", epochs=6, patience=1)
    t = Scripted(cfg, prepared, "click", "auc", [0.60, 0.70, 0.65, 0.64, 0.90, 0.95])
    result = t.fit(prepared.train, prepared.valid)
    # Epochs 3 and 4 are worse than epoch 2: the second one exceeds patience 1 and stops.
    assert [e.epoch for e in result.history] == [1, 2, 3, 4]
    assert result.best_epoch == 2 and result.best_valid == {"click": {"auc": 0.70}}
    assert result.monitor == "click/auc"
    assert _same(t.model.state_dict(), t.states[1])
    assert not _same(t.model.state_dict(), t.states[3])


@pytest.mark.parametrize(
    ("values", "best"),
    [
        (
            [1.00, 0.80, 0.85, 0.90],
            2,
        ),  # logloss: lower is better, 0.80 beats the later 0.85 and 0.90
        ([1.00, 0.90, 0.95, 0.70], 4),
    ],
)
def test_a_lower_is_better_monitor_keeps_the_smallest_value(
    job_dir: Path, prepared: Prepared, values: list[float], best: int
) -> None:
    cfg = _config(job_dir, "click/logloss", epochs=4, patience=5)
    t = Scripted(cfg, prepared, "click", "logloss", values)
    result = t.fit(prepared.train, prepared.valid)
    assert len(result.history) == 4
    assert result.best_epoch == best
    assert result.best_valid == {"click": {"logloss": values[best - 1]}}
    assert _same(t.model.state_dict(), t.states[best - 1])


def test_a_nan_monitor_never_wins_and_without_validation_the_last_epoch_is_kept(
    job_dir: Path, prepared: Prepared
) -> None:
    cfg = _config(job_dir, "click/auc", epochs=3, patience=5)
    t = Scripted(cfg, prepared, "click", "auc", [float("nan"), 0.55, float("nan")])
    result = t.fit(prepared.train, prepared.valid)
    assert result.best_epoch == 2 and _same(t.model.state_dict(), t.states[1])
    # No validation rows: nothing to select on, every epoch runs, the last state stays.
    t = Scripted(cfg, prepared, "click", "auc", [])
    result = t.fit(prepared.train, None)
    assert result.monitor is None and result.best_epoch == 3
    assert _same(t.model.state_dict(), t.states[2])
