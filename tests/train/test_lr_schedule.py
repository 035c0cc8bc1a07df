"""The learning-rate schedule: constant, linear and cosine decay, warm-up, set every step."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest

from mtrs.config.load import load_config
from mtrs.config.models import JobConfig
from mtrs.data.batch import Batch
from mtrs.datasets.synth import SynthSpec
from mtrs.job import build
from mtrs.prepare import Prepared, prepare
from mtrs.train.trainer import Trainer


@pytest.fixture(scope="module")
def cfg(synth_job: Callable[[SynthSpec], Path]) -> JobConfig:
    out = synth_job(SynthSpec(num_users=40, num_items=20, num_events=1000))
    c = load_config(out / "job.toml")
    c.train.epochs, c.train.batch_size, c.train.lr = 2, 200, 0.01
    c.train.progress, c.train.threads = False, 1
    return c


@pytest.fixture(scope="module")
def prepared(cfg: JobConfig) -> Prepared:
    return prepare(cfg)


class Recorder(Trainer):
    """Records the learning rate each optimizer step ran with."""

    rates: list[float]

    def train_step(self, batch: Batch, sums: dict[str, float]) -> float:
        total = super().train_step(batch, sums)
        self.rates.append(self.optimizer.param_groups[0]["lr"])
        return total


def _rates(cfg: JobConfig, prepared: Prepared, schedule: str, warmup: int = 0) -> list[float]:
    c = cfg.model_copy(deep=True)
    c.train.lr_schedule, c.train.warmup_steps = schedule, warmup  # type: ignore[assignment]
    model, tasks = build(c, prepared)
    t = Recorder(model, tasks, c)
    t.rates = []
    t.fit(prepared.train, None)
    return t.rates


def test_schedules_by_hand(cfg: JobConfig, prepared: Prepared) -> None:
    assert isinstance(prepared.train, Batch)
    steps = math.ceil(len(prepared.train) / 200)
    total = 2 * steps
    # Step s of the run (0-based) sees the share s / total of training done.
    const = _rates(cfg, prepared, "constant")
    assert const == [0.01] * total
    linear = _rates(cfg, prepared, "linear")
    assert linear == pytest.approx([0.01 * (1 - s / total) for s in range(total)])
    cosine = _rates(cfg, prepared, "cosine")
    expected = [0.01 * 0.5 * (1 + math.cos(math.pi * s / total)) for s in range(total)]
    assert cosine == pytest.approx(expected)
    assert cosine[steps] == pytest.approx(0.005)  # half way: half the rate


def test_warmup_rises_linearly_then_follows_the_schedule(
    cfg: JobConfig, prepared: Prepared
) -> None:
    rates = _rates(cfg, prepared, "constant", warmup=4)
    assert rates[:5] == pytest.approx([0.0025, 0.005, 0.0075, 0.01, 0.01])
