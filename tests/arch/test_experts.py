"""Tests for the batched expert pool, the softmax gate and the Transformer task layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtrs.config.models import TowerConfig
from mtrs.layers.expert_mix import mix
from mtrs.layers.experts import ExpertPool, Gate
from mtrs.layers.mlp import MLP
from mtrs.layers.task_attention import TaskAttention, TaskTower


def _grad(p: torch.Tensor) -> torch.Tensor:
    assert p.grad is not None
    return p.grad


def _mlps(in_dim: int, hidden: list[int], n: int, dropout: float = 0.0) -> list[MLP]:
    torch.manual_seed(0)
    return [MLP(in_dim, hidden, dropout) for _ in range(n)]


@pytest.mark.parametrize("hidden", [[8], [16, 8], [12, 6, 3]])
def test_batched_experts_equal_a_loop_over_separate_mlps(hidden: list[int]) -> None:
    mlps = _mlps(10, hidden, 4)
    pool = ExpertPool.from_mlps(mlps)
    x = torch.randn(32, 10)
    expected = torch.stack([m(x) for m in mlps], dim=1)
    got = pool(x)
    assert got.shape == (32, 4, hidden[-1])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_per_expert_inputs_equal_a_loop_over_separate_mlps() -> None:
    mlps = _mlps(6, [8, 5], 3)
    pool = ExpertPool.from_mlps(mlps)
    x = torch.randn(3, 20, 6)
    expected = torch.stack([m(x[e]) for e, m in enumerate(mlps)], dim=1)
    torch.testing.assert_close(pool(x), expected, rtol=1e-5, atol=1e-6)


def test_batched_experts_give_the_same_gradients_as_the_loop() -> None:
    mlps = _mlps(7, [9, 4], 3)
    pool = ExpertPool.from_mlps(mlps)
    x = torch.randn(16, 7)
    target = torch.randn(16, 3, 4)
    ((pool(x) - target) ** 2).sum().backward()
    loop = torch.stack([m(x) for m in mlps], dim=1)
    ((loop - target) ** 2).sum().backward()
    linears = [[m for m in mlp.net if isinstance(m, nn.Linear)] for mlp in mlps]
    for k in range(2):
        w_grad = torch.stack([_grad(ls[k].weight).T for ls in linears])
        b_grad = torch.stack([_grad(ls[k].bias) for ls in linears])
        grad = pool.weights[k].grad
        assert grad is not None
        if k == 0:  # the first layer is stored [in, E, out] (one addmm); compare as [E, in, out]
            grad = grad.transpose(0, 1)
        torch.testing.assert_close(grad, w_grad, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(pool.biases[k].grad, b_grad, rtol=1e-5, atol=1e-5)


def test_from_mlps_keeps_dropout_and_matches_in_eval_mode() -> None:
    mlps = _mlps(5, [6], 2, dropout=0.3)
    pool = ExpertPool.from_mlps(mlps).eval()
    for m in mlps:
        m.eval()
    x = torch.randn(8, 5)
    torch.testing.assert_close(pool(x), torch.stack([m(x) for m in mlps], 1))
    pool.train()
    torch.manual_seed(1)
    assert (pool(torch.ones(64, 5)) == 0).any()


def test_from_mlps_rejects_mlps_of_different_shapes() -> None:
    with pytest.raises(ValueError, match="same"):
        ExpertPool.from_mlps([MLP(4, [3]), MLP(4, [5])])


def test_pool_parameters_are_stacked_not_one_module_per_expert() -> None:
    pool = ExpertPool(10, [16, 8], 5)
    shapes = [tuple(p.shape) for p in pool.parameters()]
    # The first layer is stored [in, E, out] so one addmm computes it for every expert.
    assert shapes == [(10, 5, 16), (5, 16, 8), (5, 16), (5, 8)]
    assert pool.out_dim == 8


def test_pool_without_hidden_layers_is_the_identity_per_expert() -> None:
    pool = ExpertPool(4, [], 3)
    x = torch.randn(2, 4)
    assert torch.equal(pool(x), x.unsqueeze(1).expand(-1, 3, -1))


def test_per_expert_input_must_match_the_number_of_experts() -> None:
    with pytest.raises(ValueError, match="experts"):
        ExpertPool(4, [3], 2)(torch.randn(3, 5, 4))


def test_gate_weights_are_a_distribution_per_row() -> None:
    gate = Gate(6, 5)
    w = gate(torch.randn(40, 6) * 10)
    assert w.shape == (40, 5)
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(40))


def test_mix_is_the_gate_weighted_sum_of_experts() -> None:
    experts = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [4.0, 4.0]]])
    weights = torch.tensor([[0.5, 0.25, 0.25]])
    torch.testing.assert_close(mix(experts, weights), torch.tensor([[1.5, 1.5]]))


def test_task_attention_ignores_padded_tokens() -> None:
    torch.manual_seed(0)
    att = TaskAttention(8, heads=2).eval()
    tokens = torch.randn(4, 5, 8)
    pad = torch.tensor([[False, False, False, True, True]] * 4)
    out = att(tokens, pad)
    changed = tokens.clone()
    changed[:, 3:] = torch.randn(4, 2, 8) * 100
    assert out.shape == (4, 8)
    torch.testing.assert_close(att(changed, pad), out)
    assert not torch.allclose(att(changed), att(tokens))


def test_task_queries_are_learned_per_task() -> None:
    att = TaskAttention(8, heads=2)
    tokens = torch.randn(3, 4, 8)
    att(tokens).sum().backward()
    assert att.query.grad is not None and att.query.grad.abs().sum() > 0


def test_transformer_tower_reads_attention_and_vector() -> None:
    tower = TaskTower(6, TowerConfig(type="transformer", hidden=[5]), TaskAttention(8, 2))
    assert tower(torch.randn(3, 6), torch.randn(3, 4, 8)).shape == (3, 5)
    with pytest.raises(ValueError, match="token"):
        tower(torch.randn(3, 6))
    mlp_tower = TaskTower(6, TowerConfig(hidden=[5]), None)
    assert mlp_tower(torch.randn(3, 6)).shape == (3, 5)
