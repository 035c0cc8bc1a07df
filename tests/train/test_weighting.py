"""Tests for the task-weighting methods: real training runs and hand-checked toy problems."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtrs.config.load import load_config
from mtrs.config.models import JobConfig
from mtrs.datasets.synth import SynthSpec
from mtrs.errors import MtrsUserError
from mtrs.job import run_job
from mtrs.prepare import Prepared, prepare
from mtrs.train.gradient_weighting import gradnorm_objective, project_conflicting
from mtrs.train.trainer import EpochRecord
from mtrs.train.weighting import (
    WEIGHTINGS,
    DwaWeighting,
    GradNormWeighting,
    PCGradWeighting,
    UncertaintyWeighting,
    Weighting,
    build_weighting,
)

METHODS = ["fixed", "uncertainty", "gradnorm", "dwa", "pcgrad"]


@pytest.fixture(scope="module")
def job_dir(synth_job: Callable[[SynthSpec], Path]) -> Path:
    return synth_job(SynthSpec(num_users=300, num_items=80, num_events=8000))


@pytest.fixture(scope="module")
def prepared(job_dir: Path) -> Prepared:
    return prepare(_config(job_dir, "fixed"))


def _config(job_dir: Path, weighting: str, architecture: str = "shared_bottom") -> JobConfig:
    cfg = load_config(job_dir / "job.toml")
    cfg.train.weighting = weighting
    cfg.train.epochs = 2
    cfg.train.patience = 5
    cfg.train.progress = False
    # One thread: the model is tiny, and spinning threads crawl when the CPUs are shared.
    cfg.train.threads = 1
    cfg.model.architecture = architecture
    return cfg


def test_registry_names_every_method() -> None:
    assert set(METHODS) <= set(WEIGHTINGS)


def test_unknown_method_is_a_user_error() -> None:
    with pytest.raises(MtrsUserError, match=r"train\.weighting: unknown method 'nope'"):
        build_weighting("nope", ["a"], {"a": 1.0}, [])


@pytest.mark.parametrize("method", METHODS)
def test_method_trains_a_real_model(method: str, job_dir: Path, prepared: Prepared) -> None:
    cfg = _config(job_dir, method)
    job = run_job(cfg, prepared=prepared)
    history = job.result.history
    assert len(history) == 2
    for rec in history:
        assert all(math.isfinite(v) for v in rec.train_loss.values())
        assert set(rec.weights) == {"click", "purchase", "gender"}
        assert all(math.isfinite(w) and w > 0 for w in rec.weights.values())
    # The model learned something: the click loss fell from the first epoch to the second.
    assert history[1].train_loss["click"] < history[0].train_loss["click"]
    moved = any(abs(w - 1.0) > 1e-4 for w in history[-1].weights.values())
    assert moved == (method in ("uncertainty", "gradnorm", "dwa"))


def _hard_parallel_epoch(job_dir: Path, prepared: Prepared, method: str) -> EpochRecord:
    cfg = _config(job_dir, method, "single")
    cfg.train.epochs = 1
    return run_job(cfg, prepared=prepared).result.history[0]


@pytest.fixture(scope="module")
def hard_parallel_fixed(job_dir: Path, prepared: Prepared) -> EpochRecord:
    return _hard_parallel_epoch(job_dir, prepared, "fixed")


@pytest.mark.parametrize("method", ["pcgrad", "gradnorm"])
def test_gradient_methods_fall_back_without_shared_parameters(
    method: str, job_dir: Path, prepared: Prepared, hard_parallel_fixed: EpochRecord
) -> None:
    """Hard parallel shares nothing: PCGrad and GradNorm then train exactly like ``fixed``."""
    a = hard_parallel_fixed
    b = _hard_parallel_epoch(job_dir, prepared, method)
    assert b.train_loss == pytest.approx(a.train_loss, rel=1e-6)
    assert b.weights == {"click": 1.0, "purchase": 1.0, "gender": 1.0}


# --- toy problem: two regression tasks on one shared layer, losses 100× apart ----------------


class Toy(nn.Module):
    """A shared linear layer and two linear heads; ``big``'s target is 10× ``small``'s.

    The small task's loss starts near 0.1 and the big one's near 10, so a method that balances
    by loss or gradient scale has to move the weights in opposite directions.
    """

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(256, 4, generator=g)
        direction = torch.randn(4, generator=g)
        y = self.x @ direction
        self.y = 0.3 * (y - y.mean()) / y.std()
        torch.manual_seed(0)
        self.shared = nn.Linear(4, 8)
        self.heads = nn.ModuleDict({"small": nn.Linear(8, 1), "big": nn.Linear(8, 1)})

    def losses(self) -> dict[str, Tensor]:
        z = torch.relu(self.shared(self.x))
        return {
            "small": F.mse_loss(self.heads["small"](z)[:, 0], self.y),
            "big": F.mse_loss(self.heads["big"](z)[:, 0], 10.0 * self.y),
        }


def _train_toy(method: str, steps: int, lr: float = 0.02) -> tuple[Weighting, Toy]:
    toy = Toy()
    weighting = build_weighting(
        method, ["small", "big"], {"small": 1.0, "big": 1.0}, list(toy.shared.parameters())
    )
    opt = torch.optim.Adam([*toy.parameters(), *weighting.parameters()], lr=lr)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        weighting.backward(toy.losses(), None, 1.0)
        opt.step()
    return weighting, toy


def test_toy_losses_differ_by_two_orders_of_magnitude() -> None:
    losses = {k: float(v.detach()) for k, v in Toy().losses().items()}
    assert losses["small"] < 1.0 < losses["big"]
    assert 50 < losses["big"] / losses["small"] < 200


def test_uncertainty_gives_the_big_loss_task_the_smaller_weight() -> None:
    weighting, _ = _train_toy("uncertainty", steps=60)
    assert isinstance(weighting, UncertaintyWeighting)
    w = weighting.current()
    assert w["big"] < 1.0 < w["small"]
    # current() reports exp(−s_i).
    assert w["big"] == pytest.approx(math.exp(-float(weighting.log_var.detach()[1])))


def test_uncertainty_total_is_the_kendall_form() -> None:
    weighting = UncertaintyWeighting(["a", "b"], {"a": 1.0, "b": 2.0}, [])
    with torch.no_grad():
        weighting.log_var.copy_(torch.tensor([0.0, math.log(4.0)]))
    loss_a = torch.tensor(3.0, requires_grad=True)
    loss_b = torch.tensor(8.0, requires_grad=True)
    total = weighting.backward({"a": loss_a, "b": loss_b}, torch.tensor(0.5), 0.5)
    # 0.5 + 0.5 · (1·(3 + 0) + 2·(8/4 + log 4))
    assert float(total) == pytest.approx(0.5 + 0.5 * (3.0 + 2.0 * (2.0 + math.log(4.0))))
    assert loss_b.grad is not None and float(loss_b.grad) == pytest.approx(0.5 * 2.0 / 4.0)


def test_gradnorm_lowers_the_weight_of_the_task_with_the_larger_gradient() -> None:
    toy = Toy()
    losses = toy.losses()
    grads = [
        torch.autograd.grad(losses[n], toy.shared.weight, retain_graph=True)[0].norm()
        for n in ("small", "big")
    ]
    assert grads[1] > grads[0]
    weighting, _ = _train_toy("gradnorm", steps=20)
    assert isinstance(weighting, GradNormWeighting)
    w = weighting.current()
    assert w["big"] < 1.0 < w["small"]
    assert w["big"] + w["small"] == pytest.approx(2.0)


def test_gradnorm_objective_by_hand() -> None:
    weights = torch.tensor([1.0, 1.0], requires_grad=True)
    norms = torch.tensor([1.0, 3.0])
    # Equal training rates: the target is the mean norm 2 for both tasks.
    value = gradnorm_objective(
        weights, norms, torch.tensor([0.5, 2.0]), torch.tensor([1.0, 4.0]), 1.5
    )
    assert value.item() == pytest.approx(abs(1 - 2) + abs(3 - 2))
    (grad,) = torch.autograd.grad(value, weights)
    assert grad.tolist() == pytest.approx([-1.0, 3.0])


def test_dwa_raises_the_weight_of_the_slower_task() -> None:
    weighting = DwaWeighting(["fast", "slow"], {"fast": 1.0, "slow": 1.0}, [])
    weighting.end_epoch({"fast": 1.0, "slow": 1.0})
    assert weighting.current() == {"fast": 1.0, "slow": 1.0}
    weighting.end_epoch({"fast": 0.5, "slow": 0.95})
    w = weighting.current()
    e_fast, e_slow = math.exp(0.5 / 2), math.exp(0.95 / 2)
    assert w["fast"] == pytest.approx(2 * e_fast / (e_fast + e_slow))
    assert w["slow"] == pytest.approx(2 * e_slow / (e_fast + e_slow))
    assert w["slow"] > 1.0 > w["fast"]


def test_dwa_on_the_toy_weights_the_task_that_learns_slower() -> None:
    """Three short 'epochs' on the toy; the weights follow the measured loss ratios."""
    toy = Toy()
    weighting = DwaWeighting(["small", "big"], {"small": 1.0, "big": 1.0}, [])
    opt = torch.optim.Adam(toy.parameters(), lr=0.02)
    epoch_losses = []
    for _ in range(3):
        sums = {"small": 0.0, "big": 0.0}
        for _ in range(10):
            opt.zero_grad(set_to_none=True)
            losses = toy.losses()
            weighting.backward(losses, None, 1.0)
            opt.step()
            for k, v in losses.items():
                sums[k] += v.item() / 10
        weighting.end_epoch(sums)
        epoch_losses.append(sums)
    rate = {k: epoch_losses[2][k] / epoch_losses[1][k] for k in ("small", "big")}
    slower = max(rate, key=rate.__getitem__)
    faster = min(rate, key=rate.__getitem__)
    assert rate[slower] > rate[faster]
    w = weighting.current()
    assert w[slower] > 1.0 > w[faster]


def test_pcgrad_projection_by_hand() -> None:
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    # g1·g2 = −1: g1 → g1 − (−1/2)·g2 = (0.5, 0.5); g2 → g2 − (−1/1)·g1 = (0, 1).
    out = project_conflicting([g1, g2], torch.Generator().manual_seed(0))
    assert out.tolist() == pytest.approx([0.5, 1.5])
    # Gradients that agree are left alone.
    same = project_conflicting([g1, torch.tensor([1.0, 1.0])], torch.Generator())
    assert same.tolist() == pytest.approx([2.0, 1.0])


def test_pcgrad_weighting_writes_the_projected_gradient() -> None:
    """Linear losses L_i = g_i · θ have gradients g_i on the shared θ; the head gets the sum."""
    theta = nn.Parameter(torch.tensor([0.3, -0.2]))
    head = nn.Parameter(torch.tensor(2.0))
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    losses = {"a": g1 @ theta + head, "b": g2 @ theta + 3 * head}
    weighting = PCGradWeighting(["a", "b"], {"a": 1.0, "b": 1.0}, [theta])
    extra = (theta**2).sum()
    total = weighting.backward(losses, extra, 1.0)
    expected = (g1 + g2) @ theta.detach() + 4 * 2.0 + extra.detach()
    assert float(total) == pytest.approx(float(expected))
    assert theta.grad is not None and head.grad is not None
    # Projected task gradients plus the unprojected gradient of extra (2θ).
    assert theta.grad.tolist() == pytest.approx([0.5 + 0.6, 1.5 - 0.4])
    assert float(head.grad) == pytest.approx(4.0)
