"""Tests for the auxiliary objectives on the shared representation Z."""

from __future__ import annotations

import math
import shutil
from collections.abc import Collection
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from mtrs.arch.base import Architecture, ArchOutput
from mtrs.config.load import load_config
from mtrs.config.models import JobConfig
from mtrs.data.batch import Batch
from mtrs.datasets.synth import SynthSpec, generate, write
from mtrs.errors import MtrsUserError
from mtrs.job import build, run_job
from mtrs.layers.embedding import Field, InputLayout
from mtrs.model import MultiTaskModel
from mtrs.prepare import Prepared, prepare
from mtrs.tasks.objectives import (
    SHARED_OBJECTIVES,
    Contrastive,
    DeepSupervision,
    ObjectiveContext,
    ObjectiveInput,
    Reconstruction,
    build_objective,
)

QUICKSTART = Path(__file__).parents[2] / "src" / "mtrs" / "configs" / "quickstart.toml"


class LinearArch(Architecture):
    """Z = tanh(W x); enough of an architecture for the objectives to run on."""

    def __init__(self, d: int, k: int) -> None:
        super().__init__()
        self.lin = nn.Linear(d, k)
        self.shared_dim = k

    def forward(
        self, x: Tensor, user_only: bool = False, tasks: Collection[str] | None = None
    ) -> ArchOutput:
        return ArchOutput({}, shared=torch.tanh(self.lin(x)))


def _layout(widths: list[int]) -> InputLayout:
    fields, pos = [], 0
    for i, w in enumerate(widths):
        fields.append(Field(f"f{i}", "item", pos, w))
        pos += w
    return InputLayout(tuple(fields))


def _empty_batch(n: int) -> Batch:
    return Batch(
        cat=torch.zeros(n, 0, dtype=torch.long),
        num=torch.zeros(n, 0),
        labels=torch.zeros(n, 0),
        mask=torch.zeros(n, 0, dtype=torch.bool),
        user=torch.zeros(n, dtype=torch.long),
    )


def test_registry_and_unknown_name() -> None:
    assert {"reconstruction", "contrastive", "deep_supervision"} <= set(SHARED_OBJECTIVES)
    with pytest.raises(MtrsUserError, match=r"model\.shared_objective: unknown objective 'x'"):
        build_objective("x", _layout([2]), 3, [])
    assert build_objective("contrastive", _layout([2]), None, []) is None


def test_reconstruction_by_hand() -> None:
    objective = Reconstruction(ObjectiveContext(_layout([2]), 1))
    with torch.no_grad():
        objective.decoder.weight.copy_(torch.tensor([[1.0], [2.0]]))
        objective.decoder.bias.zero_()
    z = torch.tensor([[1.0], [0.0]])
    x = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    out = ArchOutput({}, shared=z)
    loss = objective(ObjectiveInput(x, out, LinearArch(2, 1), _empty_batch(2)))
    # Decoded [[1, 2], [0, 0]] against [[1, 1], [0, 1]]: squared errors 0, 1, 0, 1 → mean 0.5.
    assert loss.item() == pytest.approx(0.5)


def test_contrastive_masks_whole_fields() -> None:
    objective = Contrastive(ObjectiveContext(_layout([3, 1, 2]), 4), mask_rate=0.5)
    torch.manual_seed(0)
    view = objective.view(torch.ones(64, 6))
    # Every row keeps or zeroes each field as a block.
    for start, stop in ((0, 3), (3, 4), (4, 6)):
        block = view[:, start:stop]
        assert torch.all((block == 0).all(1) | (block == 1).all(1))
    assert 0 < float((view == 0).float().mean()) < 1


def test_contrastive_is_finite_and_decreases() -> None:
    torch.manual_seed(0)
    centres = torch.randn(8, 12) * 2
    x = centres.repeat_interleave(8, dim=0) + 0.1 * torch.randn(64, 12)
    arch = LinearArch(12, 8)
    objective = Contrastive(ObjectiveContext(_layout([2] * 6), 8))
    opt = torch.optim.Adam([*arch.parameters(), *objective.parameters()], lr=0.01)
    batch = _empty_batch(64)
    values = []
    for _ in range(40):
        opt.zero_grad()
        loss = objective(ObjectiveInput(x, arch(x), arch, batch))
        assert math.isfinite(loss.item())
        loss.backward()
        opt.step()
        values.append(loss.item())
    # InfoNCE over 64 rows starts near log 64 and falls as the views learn to agree.
    assert values[0] == pytest.approx(math.log(64), abs=1.0)
    assert sum(values[-5:]) / 5 < 0.8 * sum(values[:5]) / 5


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> tuple[JobConfig, Prepared]:
    out = tmp_path_factory.mktemp("synth")
    write(generate(SynthSpec(num_users=300, num_items=80, num_events=8000)), out)
    shutil.copy(QUICKSTART, out / "job.toml")
    cfg = load_config(out / "job.toml")
    cfg.train.epochs = 2
    cfg.train.patience = 5
    cfg.train.progress = False
    cfg.train.threads = 1
    cfg.model.lambda_shared = 0.3
    return cfg, prepare(cfg)


def test_deep_supervision_adds_gradient_to_the_shared_layer(
    job: tuple[JobConfig, Prepared],
) -> None:
    cfg, prepared = job
    cfg = cfg.model_copy(deep=True)
    cfg.model.shared_objective = "deep_supervision"
    model, tasks = build(cfg, prepared)
    assert isinstance(model, MultiTaskModel) and isinstance(model.objective, DeepSupervision)
    assert set(model.objective.probes) == {t.name for t in tasks if t.direct_loss}
    model.train()
    batch = prepared.train.take(torch.arange(256))
    out = model(batch)
    assert out.shared_loss is not None and math.isfinite(out.shared_loss.item())
    shared = model.arch.shared_parameters()
    grads = torch.autograd.grad(out.shared_loss, shared, allow_unused=True)
    assert any(g is not None and float(g.abs().sum()) > 0 for g in grads)
    # The probe loss is the mean of the tasks' own masked losses on the probes' logits.
    z = model.arch(model.embedding(batch)).shared
    assert z is not None
    expected = torch.stack(
        [
            t.loss(model.objective.probes[t.name](z), batch.labels, batch.mask)
            for t in model.objective.tasks
        ]
    ).mean()
    assert out.shared_loss.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("name", ["contrastive", "deep_supervision"])
def test_objective_trains_a_real_model(name: str, job: tuple[JobConfig, Prepared]) -> None:
    cfg, prepared = job
    cfg = cfg.model_copy(deep=True)
    cfg.model.shared_objective = name
    history = run_job(cfg, prepared=prepared).result.history
    assert len(history) == 2
    for rec in history:
        assert all(math.isfinite(v) for v in rec.train_loss.values())
    # The total includes λ·L_shared, so it exceeds the (1 − λ)-weighted task losses.
    tasks = sum(v for k, v in history[-1].train_loss.items() if k != "total")
    assert history[-1].train_loss["total"] > (1 - cfg.model.lambda_shared) * tasks
