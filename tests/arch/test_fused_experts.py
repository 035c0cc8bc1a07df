"""The hand-written expert-pool backward and the multi-gate mix against plain autograd."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtrs.layers.expert_mix import concat_experts, expert_mean, mix, mix_many
from mtrs.layers.experts import ExpertPool, Gate, stacked_gates
from mtrs.layers.fused_experts import SharedInputExperts
from mtrs.layers.row_gather import gather_rows


def _reference(pool: ExpertPool, x: torch.Tensor) -> torch.Tensor:
    """Expert e's MLP written out one expert at a time: [B, E, d]."""
    outs = []
    for e in range(pool.num_experts):
        h = x
        for k, (w, b) in enumerate(zip(pool.weights, pool.biases, strict=True)):
            we = w[:, e] if k == 0 else w[e]
            h = torch.relu(h @ we + b[e])
        outs.append(h)
    return torch.stack(outs, 1)


@pytest.mark.parametrize("hidden", [[5], [6, 4], [6, 4, 3]])
def test_shared_input_experts_pass_gradcheck(hidden: list[int]) -> None:
    torch.manual_seed(0)
    pool = ExpertPool(7, hidden, 3).double()
    x = torch.randn(9, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, *p: SharedInputExperts.apply(x, *p), (x, *pool._params())
    )


@pytest.mark.parametrize("hidden", [[16], [16, 8], [12, 6, 3]])
def test_training_path_matches_per_expert_reference_outputs_and_gradients(
    hidden: list[int],
) -> None:
    torch.manual_seed(1)
    pool = ExpertPool(10, hidden, 4)
    x = torch.randn(32, 10, requires_grad=True)
    assert pool._fused_ok(x)
    target = torch.randn(32, 4, hidden[-1])
    got = pool(x)
    ((got - target) ** 2).sum().backward()
    fused_grads = [p.grad.clone() for p in pool._params()]  # type: ignore[union-attr]
    fused_x = x.grad.clone()  # type: ignore[union-attr]
    pool.zero_grad()
    x.grad = None
    ref = _reference(pool, x)
    ((ref - target) ** 2).sum().backward()
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x.grad, fused_x, rtol=1e-4, atol=1e-5)
    for p, g in zip(pool._params(), fused_grads, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-5)


def test_inference_and_dropout_take_the_autograd_path_with_equal_results() -> None:
    torch.manual_seed(2)
    pool = ExpertPool(6, [8, 4], 3)
    x = torch.randn(5, 6)
    with torch.no_grad():
        assert not pool._fused_ok(x)
        inference = pool(x)
    torch.testing.assert_close(pool(x), inference)
    assert not ExpertPool(6, [8], 3, dropout=0.2)._fused_ok(x)


def test_mix_many_passes_gradcheck_and_matches_the_formula() -> None:
    torch.manual_seed(3)
    pool = ExpertPool(5, [4], 3).double()
    x = torch.randn(6, 5, dtype=torch.float64)
    w1 = torch.softmax(torch.randn(6, 3, dtype=torch.float64), -1).requires_grad_()
    w2 = torch.softmax(torch.randn(6, 3, dtype=torch.float64), -1).requires_grad_()

    def f(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, *p: torch.Tensor) -> torch.Tensor:
        e = SharedInputExperts.apply(x, *p).permute(2, 0, 1)
        a, b = mix_many(e, [w1, w2])
        return a * 2 + b**2

    assert torch.autograd.gradcheck(f, (x, w1, w2, *pool._params()))
    e = pool(x)
    assert e.permute(1, 2, 0).is_contiguous()  # the feature-major layout the fast path reads
    plain = e.contiguous()
    for w in (w1, w2):
        expected = (w.unsqueeze(-1) * plain).sum(1)
        torch.testing.assert_close(mix(e, w), expected)
        torch.testing.assert_close(mix(plain, w), expected)
    torch.testing.assert_close(expert_mean(e), plain.mean(1))


def test_row_gather_equals_embedding_in_values_and_gradients() -> None:
    torch.manual_seed(4)
    weight = torch.randn(50, 6, requires_grad=True)
    codes = torch.randint(0, 8, (40, 5))  # many repeated rows: the scatter must add them up
    grad = torch.randn(40, 5, 6)
    got = gather_rows(weight, codes)
    got.backward(grad)
    fast = weight.grad.clone()  # type: ignore[union-attr]
    weight.grad = None
    ref = torch.nn.functional.embedding(codes, weight)
    ref.backward(grad)
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(fast, weight.grad)
    again = torch.zeros_like(fast)
    for _ in range(3):  # and the scatter is deterministic
        weight.grad = None
        gather_rows(weight, codes).backward(grad)
        again = weight.grad.clone()  # type: ignore[union-attr]
        assert torch.equal(again, fast)
    # A padded row that never occurs gets exactly zero gradient.
    assert torch.count_nonzero(again[8:]) == 0


def test_stacked_gates_equal_each_gate_on_its_own() -> None:
    torch.manual_seed(5)
    gates = nn.ModuleDict({"click": Gate(6, 4), "buy": Gate(6, 4), "rate": Gate(6, 4)})
    x = torch.randn(10, 6)
    got = stacked_gates(gates, x)
    assert list(got) == ["click", "buy", "rate"]
    for name, gate in gates.items():
        torch.testing.assert_close(got[name], gate(x))


def test_concat_experts_keeps_the_feature_major_layout() -> None:
    torch.manual_seed(6)
    a = ExpertPool(5, [4], 3)(torch.randn(7, 5))
    b = ExpertPool(5, [4], 2)(torch.randn(7, 5))
    got = concat_experts([a[:, 1:], b])
    torch.testing.assert_close(got, torch.cat([a[:, 1:].contiguous(), b.contiguous()], 1))
    assert got.permute(1, 2, 0).is_contiguous()  # mix_many's fast path applies
    plain = concat_experts([a.contiguous(), b.contiguous()])
    torch.testing.assert_close(plain, torch.cat([a, b], 1))
