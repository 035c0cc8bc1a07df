"""Tests for the architectures: shapes, gates, shared parameters, end-to-end training, ESMM."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mtrs.arch import ArchContext, get_architecture
from mtrs.config.load import load_config
from mtrs.config.models import JobConfig, ModelConfig
from mtrs.datasets.synth import SynthSpec, generate, write
from mtrs.errors import MtrsUserError
from mtrs.eval.evaluator import predict
from mtrs.job import Job, run_job
from mtrs.layers.embedding import Field, InputLayout
from mtrs.prepare import Prepared, prepare
from mtrs.train.trainer import Trainer

TASKS = ("click", "purchase", "gender")
LAYOUT = InputLayout(
    (
        Field("age", "user", 0, 4),
        Field("hist", "behaviour", 4, 4),
        Field("item", "item", 8, 4),
        Field("price", "item", 12, 1),
        Field("hour", "context", 13, 4),
    )
)
TRANSFORMER = {"type": "transformer", "hidden": [32], "d_model": 16, "heads": 2}

# name → (architecture, [model] overrides)
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "single": ("single", {}),
    "shared_bottom": ("shared_bottom", {}),
    "omoe": ("omoe", {}),
    "mmoe": ("mmoe", {}),
    "ple_1": ("ple", {"experts": {"num_experts": 2, "task_experts": 1, "levels": 1}}),
    "ple_2": ("ple", {"experts": {"num_experts": 2, "task_experts": 1, "levels": 2}}),
    "esmm": ("esmm", {}),
    "shared_bottom_transformer": (
        "shared_bottom",
        {"shared": TRANSFORMER, "tower": {"type": "transformer", "hidden": [16]}},
    ),
    "mmoe_transformer": (
        "mmoe",
        {"shared": TRANSFORMER, "tower": {"type": "transformer", "hidden": [16]}},
    ),
}


def _model_cfg(arch: str, overrides: dict[str, Any]) -> ModelConfig:
    base = {"architecture": arch, "shared": {"hidden": [16, 8]}, "tower": {"hidden": [4]}}
    return ModelConfig.model_validate(base | overrides)


def _expected_experts(cfg: ModelConfig) -> int | None:
    e = cfg.experts
    return {
        "omoe": e.num_experts,
        "mmoe": e.num_experts,
        "ple": e.task_experts + e.num_experts,
    }.get(cfg.architecture)


@pytest.mark.parametrize("case", [c for c in CASES if c != "single"])
@pytest.mark.parametrize("user_only", [False, True])
def test_output_shapes_and_gates(case: str, user_only: bool) -> None:
    arch_name, overrides = CASES[case]
    cfg = _model_cfg(arch_name, overrides)
    torch.manual_seed(0)
    arch = get_architecture(arch_name)(ArchContext(LAYOUT, TASKS, cfg))
    out = arch(torch.randn(7, LAYOUT.dim), user_only)
    assert set(out.tasks) == set(TASKS)
    for t in TASKS:
        assert out.tasks[t].shape == (7, arch.out_dims[t])
    if arch.shared_dim is None:
        assert out.shared is None
    else:
        assert out.shared is not None and out.shared.shape == (7, arch.shared_dim)
    n = _expected_experts(cfg)
    if n is None:
        assert out.gates == {}
    else:
        assert set(out.gates) == set(TASKS)
        for g in out.gates.values():
            assert g.shape == (7, n)
            assert (g >= 0).all()
            torch.testing.assert_close(g.sum(-1), torch.ones(7))


@pytest.mark.parametrize("case", [c for c in CASES if c != "single"])
@pytest.mark.parametrize("wanted", [("purchase",), ("click", "gender"), ()])
def test_wanted_tasks_only_and_the_same_values(case: str, wanted: tuple[str, ...]) -> None:
    """``tasks=`` runs only those tasks' layers; what it computes equals the full pass."""
    arch_name, overrides = CASES[case]
    torch.manual_seed(0)
    arch = get_architecture(arch_name)(ArchContext(LAYOUT, TASKS, _model_cfg(arch_name, overrides)))
    arch.eval()
    x = torch.randn(9, LAYOUT.dim)
    full = arch(x)
    calls: list[str] = []
    towers = getattr(arch, "towers", None) or getattr(arch, "branches", None)
    assert towers is not None
    for t, module in towers.items():
        module.register_forward_hook(lambda *_, t=t: calls.append(t))
    part = arch(x, tasks=wanted)
    assert list(part.tasks) == list(wanted)
    assert calls == list(wanted)  # the other towers (or ESMM branches) never ran
    for t in wanted:
        torch.testing.assert_close(part.tasks[t], full.tasks[t], rtol=0, atol=1e-6)
        if full.gates:
            torch.testing.assert_close(part.gates[t], full.gates[t], rtol=0, atol=1e-6)
    assert set(part.gates) == (set(wanted) if full.gates else set())
    if full.shared is not None:
        assert part.shared is not None
        torch.testing.assert_close(part.shared, full.shared, rtol=0, atol=0)


def test_mmoe_gates_differ_between_tasks_and_omoe_shares_one() -> None:
    x = torch.randn(5, LAYOUT.dim)
    mmoe = get_architecture("mmoe")(ArchContext(LAYOUT, TASKS, _model_cfg("mmoe", {})))
    omoe = get_architecture("omoe")(ArchContext(LAYOUT, TASKS, _model_cfg("omoe", {})))
    g = mmoe(x).gates
    assert not torch.allclose(g["click"], g["purchase"])
    o = omoe(x).gates
    assert torch.equal(o["click"], o["purchase"])


@pytest.mark.parametrize("levels", [1, 2])
def test_ple_shared_parameters(levels: int) -> None:
    cfg = _model_cfg("ple", {"experts": {"num_experts": 2, "task_experts": 1, "levels": levels}})
    arch: Any = get_architecture("ple")(ArchContext(LAYOUT, TASKS, cfg))
    shared = {id(p) for p in arch.shared_parameters()}
    last = arch.levels[-1]
    # The last level's task experts and gates, and the towers, belong to one task each.
    for m in (last.task_experts, last.task_gates, arch.towers):
        assert not any(id(p) in shared for p in m.parameters())
    assert all(id(p) in shared for p in last.shared_experts.parameters())
    if levels == 2:
        first = arch.levels[0]
        for m in (first.task_experts, first.shared_experts, first.shared_gate):
            assert all(id(p) in shared for p in m.parameters())


@pytest.mark.parametrize("case", ["shared_bottom", "omoe", "mmoe", "ple_1"])
def test_shared_parameters_get_gradient_from_every_task(case: str) -> None:
    arch_name, overrides = CASES[case]
    arch = get_architecture(arch_name)(ArchContext(LAYOUT, TASKS, _model_cfg(arch_name, overrides)))
    x = torch.randn(9, LAYOUT.dim)
    params = arch.shared_parameters()
    assert params
    for t in TASKS:
        arch.zero_grad()
        arch(x).tasks[t].sum().backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params), t


def test_esmm_shares_nothing_but_the_embeddings() -> None:
    arch = get_architecture("esmm")(ArchContext(LAYOUT, TASKS, _model_cfg("esmm", {})))
    assert arch.requires_relation == "esmm"
    assert arch.shared_parameters() == []
    assert arch.shared_dim is None
    x = torch.randn(4, LAYOUT.dim)
    arch(x).tasks["purchase"].sum().backward()
    click_grads = [p.grad for n, p in arch.named_parameters() if ".click." in f".{n}."]
    assert click_grads and all(g is None for g in click_grads)


@pytest.mark.parametrize("arch_name", ["shared_bottom", "omoe", "mmoe", "ple", "esmm"])
def test_transformer_towers_need_a_transformer_shared_layer(arch_name: str) -> None:
    cfg = _model_cfg(arch_name, {"tower": {"type": "transformer"}})
    with pytest.raises(MtrsUserError, match=r"model\.tower\.type.*model\.shared\.type"):
        get_architecture(arch_name)(ArchContext(LAYOUT, TASKS, cfg))


# --- end to end on synthetic data --------------------------------------------------------------


@pytest.fixture(scope="module")
def base_cfg(tmp_path_factory: pytest.TempPathFactory) -> JobConfig:
    root = tmp_path_factory.mktemp("synth")
    write(generate(SynthSpec(num_users=500, num_items=100, num_events=20_000, seed=0)), root)
    src = resources.files("mtrs") / "configs" / "quickstart.toml"
    with resources.as_file(src) as path:
        shutil.copy(path, root / "quickstart.toml")
    cfg = load_config(Path(root) / "quickstart.toml")
    cfg.train.progress = False
    cfg.train.device = "cpu"
    # Few, larger steps: enough for every architecture to clear the bar on this small log.
    cfg.train.epochs = 3
    cfg.train.batch_size = 256
    cfg.train.lr = 0.005
    return cfg


@pytest.fixture(scope="module")
def prepared(base_cfg: JobConfig) -> Prepared:
    return prepare(base_cfg)


@pytest.fixture(scope="module")
def trained(base_cfg: JobConfig, prepared: Prepared) -> Callable[[str], Job]:
    jobs: dict[str, Job] = {}

    def get(case: str) -> Job:
        if case not in jobs:
            arch_name, overrides = CASES[case]
            model = base_cfg.model.model_dump() | overrides | {"architecture": arch_name}
            cfg = base_cfg.model_copy(update={"model": ModelConfig.model_validate(model)})
            jobs[case] = run_job(cfg, prepared=prepared)
        return jobs[case]

    return get


@pytest.mark.parametrize("case", list(CASES))
def test_every_architecture_beats_a_constant_predictor(
    case: str, trained: Callable[[str], Job], prepared: Prepared
) -> None:
    job = trained(case)
    for t in TASKS:
        assert job.test_metrics[t]["auc"] > 0.55, (case, t, job.test_metrics[t])
    assert job.test_metrics["click_purchase"]["auc"] > 0.55
    if CASES[case][0] in ("omoe", "mmoe", "ple"):
        job.model.eval()
        with torch.no_grad():
            gates = job.model(prepared.test.take(torch.arange(256))).gates
        assert set(gates) == set(TASKS)
        for g in gates.values():
            torch.testing.assert_close(g.sum(-1), torch.ones(256))


def test_esmm_joint_probability_is_the_product_of_its_parts(
    trained: Callable[[str], Job], prepared: Prepared
) -> None:
    job = trained("esmm")
    preds = predict(job.model, prepared.test, job.tasks)
    np.testing.assert_allclose(preds["click_purchase"], preds["click"] * preds["purchase"])
    assert 0 < preds["click_purchase"].mean() < preds["click"].mean()


def test_esmm_conditional_task_gets_no_direct_loss(trained: Callable[[str], Job]) -> None:
    job = trained("esmm")
    direct = {t.name: t.direct_loss for t in job.tasks}
    assert direct == {"click": True, "purchase": False, "gender": True}
    assert [r.active for r in job.tasks.relations] == [True]
    # Without ESMM the same funnel is only reported: purchase keeps its own loss.
    assert all(t.direct_loss for t in trained("shared_bottom").tasks)


def test_esmm_purchase_tower_learns_only_through_the_joint_loss(
    trained: Callable[[str], Job], base_cfg: JobConfig, prepared: Prepared
) -> None:
    job = trained("esmm")
    cfg = job.cfg
    trainer = Trainer(job.model, job.tasks, cfg)
    batch = prepared.train.take(torch.arange(512))
    purchase = [p for n, p in job.model.named_parameters() if "purchase" in n]
    assert purchase

    losses, _, _ = trainer.task_losses(batch)
    assert set(losses) == {"click", "gender", "click_purchase"}
    job.model.zero_grad()
    (losses["click"] + losses["gender"]).backward()
    assert all(p.grad is None or not p.grad.any() for p in purchase)

    losses, _, _ = trainer.task_losses(batch)
    job.model.zero_grad()
    losses["click_purchase"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in purchase)


def test_hard_parallel_profile_part_embeds_the_user_side_only(
    trained: Callable[[str], Job],
) -> None:
    """A part whose only task is user-scoped runs no full-row pass (nothing would read it)."""
    job = trained("single")
    user_tasks = [t.name for t in job.tasks if t.user_scoped]
    assert user_tasks
    passes: dict[str, list[bool]] = {}
    for name, part in job.model.parts.items():  # type: ignore[union-attr]
        passes[name] = []
        part.embedding.register_forward_hook(
            lambda _m, _a, kw, _o, seen=passes[name]: seen.append(bool(kw.get("user_only"))),
            with_kwargs=True,
        )
    job.model.eval()
    with torch.no_grad():
        out = job.model(job.prepared.valid.take(torch.arange(16)))
    assert set(out.logits) == {t.name for t in job.tasks}
    for name, seen in passes.items():
        assert seen == ([True] if name in user_tasks else [False]), name
