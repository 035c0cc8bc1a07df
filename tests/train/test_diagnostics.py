"""Tests for the gradient-similarity diagnostics."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from mtrs.config.load import load_config
from mtrs.datasets.synth import SynthSpec, generate, write
from mtrs.job import build
from mtrs.prepare import prepare
from mtrs.train.diagnostics import GradientSimilarity, attach, gradient_cosines
from mtrs.train.trainer import Trainer

QUICKSTART = Path(__file__).parents[2] / "src" / "mtrs" / "configs" / "quickstart.toml"


def _shared_toy() -> tuple[nn.Parameter, torch.Tensor]:
    theta = nn.Parameter(torch.tensor([0.5, -1.0, 2.0]))
    x = torch.tensor([[1.0, 2.0, 0.5], [0.3, -1.0, 1.0]])
    return theta, x


def test_identical_losses_have_cosine_one() -> None:
    theta, x = _shared_toy()
    loss = ((x @ theta) ** 2).mean()
    cos = gradient_cosines({"a": loss, "b": loss * 1.0}, [theta])
    assert cos == {"a|b": pytest.approx(1.0)}


def test_opposite_losses_have_cosine_minus_one() -> None:
    theta, x = _shared_toy()
    loss = ((x @ theta) ** 2).mean()
    cos = gradient_cosines({"a": loss, "b": -3.0 * loss}, [theta])
    assert cos == {"a|b": pytest.approx(-1.0)}


def test_orthogonal_gradients_and_unshared_tasks() -> None:
    theta = nn.Parameter(torch.tensor([1.0, 1.0]))
    other = nn.Parameter(torch.tensor(1.0))
    losses = {"a": theta[0] * 2.0, "b": theta[1] * 5.0, "c": other * 2.0}
    cos = gradient_cosines(losses, [theta])
    # c does not reach θ: its gradient is zero and its pairs are undefined, so left out.
    assert cos == {"a|b": pytest.approx(0.0)}
    assert gradient_cosines(losses, []) == {}


def test_tracker_reports_per_epoch_on_a_real_model(tmp_path: Path) -> None:
    write(generate(SynthSpec(num_users=300, num_items=80, num_events=8000)), tmp_path)
    shutil.copy(QUICKSTART, tmp_path / "job.toml")
    cfg = load_config(tmp_path / "job.toml")
    cfg.train.epochs = 2
    cfg.train.patience = 5
    cfg.train.progress = False
    cfg.train.threads = 1
    prepared = prepare(cfg)
    train, valid = prepared.train, prepared.valid

    model, tasks = build(cfg, prepared)
    trainer = Trainer(model, tasks, cfg)
    # As ``mtrs compare`` does it: the tracker reads the trainer's current mini-batch.
    tracker = attach(trainer, every_n_steps=4, batch_size=128)
    assert isinstance(tracker, GradientSimilarity)
    assert trainer.step_callbacks and trainer.epoch_callbacks
    watched = trainer.fit(train, valid).history

    pairs = {"click|purchase", "click|gender", "purchase|gender"}
    for rec in watched:
        cos = rec.extra["grad_cosine"]
        assert isinstance(cos, dict) and set(cos) == pairs
        assert all(-1.0 <= v <= 1.0 and math.isfinite(v) for v in cos.values())

    # Sampling from given rows instead of the current mini-batch.
    sampled = GradientSimilarity(batch_size=64).attach(trainer, data=train).measure(trainer)
    assert set(sampled) == pairs

    # Watching does not change training: a run without the tracker gives the same losses.
    model2, tasks2 = build(cfg, prepared)
    plain = Trainer(model2, tasks2, cfg).fit(train, valid).history
    assert [r.train_loss for r in plain] == [r.train_loss for r in watched]


def test_tracker_on_a_model_without_shared_parameters() -> None:
    class Unshared(nn.Module):
        def shared_parameters(self) -> list[nn.Parameter]:
            return []

    class FakeTrainer:
        model = Unshared()

    tracker = GradientSimilarity(every_n_steps=1)
    assert tracker.measure(FakeTrainer()) == {}  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        GradientSimilarity(every_n_steps=0)
