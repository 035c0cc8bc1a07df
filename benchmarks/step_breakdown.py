"""Where one mtrs training step on the reference workload goes, against its matmuls alone.

Runs the throughput workload's MMoE through ``Trainer`` for a number of steps and times the
forward, the backward and the optimizer step (medians over the steps after a warm-up). Then
it times, on their own, the expert pool's six matmuls of one step at the same shapes and
operand layouts the training step uses (first layer forward, weight gradient, input gradient;
second layer the same), which is about 97% of the step's FLOPs. The difference is everything
else: embedding lookup and scatter, ReLU passes, gates, mixes, towers, losses, Adam, Python.

    python benchmarks/step_breakdown.py [--threads 2] [--rows 81920]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _workload import Workload, generate, matmul_gflops, mmoe_flops, physical_cores
from systems import mtrs_setup


def _median_ms(fn: Callable[[], object], repeats: int = 20) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def expert_matmuls(w: Workload, d_in: int) -> dict[str, float]:
    """Milliseconds of each expert-pool matmul of one step, alone, at the training layouts."""
    b, e = w.batch_size, w.num_experts
    h1, h2 = w.expert_hidden
    gen = torch.Generator().manual_seed(0)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen)

    x1, w0b = r(b, d_in + 1), r(d_in + 1, e * h1)  # input with its ones column; [in+1, E·h1]
    g0, a1 = r(e * h1, b), r(e, h1, b)  # layer-1 gradient and activation, feature-major
    w1, g1, b1 = r(e, h1, h2), r(e, h2, b), r(e, h2, 1)
    return {
        "layer 1 forward": _median_ms(lambda: torch.mm(w0b.T, x1.T)),
        "layer 1 weight gradient": _median_ms(lambda: torch.mm(x1.T, g0.T)),
        "layer 1 input gradient": _median_ms(lambda: torch.mm(w0b[:d_in], g0)),
        "layer 2 forward": _median_ms(lambda: torch.baddbmm(b1, w1.transpose(1, 2), a1)),
        "layer 2 weight gradient": _median_ms(lambda: torch.bmm(a1, g1.transpose(1, 2))),
        "layer 2 input gradient": _median_ms(lambda: torch.bmm(w1, g1)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=physical_cores())
    parser.add_argument("--rows", type=int, default=81_920)
    args = parser.parse_args()
    w = Workload(rows=args.rows)
    if args.rows // w.batch_size <= 5:
        parser.error(f"--rows must cover more than 5 steps of {w.batch_size} (the warm-up)")
    torch.set_num_threads(args.threads)
    s = mtrs_setup(w, generate(w), "mmoe", args.threads)
    trainer, data = s.trainer, s.rows
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    parts: dict[str, list[float]] = {"forward": [], "backward": [], "optimizer step": []}
    steps = len(data) // w.batch_size
    for step in range(steps):
        batch = data.take(perm[step * w.batch_size : (step + 1) * w.batch_size])
        t0 = time.perf_counter()
        losses, _, _ = trainer.task_losses(batch)
        t1 = time.perf_counter()
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer.weighting.backward(losses, None, 1.0)
        t2 = time.perf_counter()
        trainer.optimizer.step()
        t3 = time.perf_counter()
        if step >= 5:
            parts["forward"].append((t1 - t0) * 1e3)
            parts["backward"].append((t2 - t1) * 1e3)
            parts["optimizer step"].append((t3 - t2) * 1e3)
    step_ms = {k: statistics.median(v) for k, v in parts.items()}
    total = sum(step_ms.values())
    d_in = 16 * w.embedding_dim + w.num_numeric
    mm = expert_matmuls(w, d_in)
    mm_total = sum(mm.values())
    flops = mmoe_flops(w).train * w.batch_size
    rate = matmul_gflops()["wall"]

    print(f"threads {torch.get_num_threads()}, batch {w.batch_size}, {steps - 5} timed steps")
    for k, v in step_ms.items():
        print(f"  {k:<28} {v:7.2f} ms")
    print(f"  {'step':<28} {total:7.2f} ms  ({w.batch_size / total * 1e3:,.0f} samples/s)")
    print("expert-pool matmuls alone, same shapes and layouts:")
    for k, v in mm.items():
        print(f"  {k:<28} {v:7.2f} ms")
    print(f"  {'sum':<28} {mm_total:7.2f} ms  ({mm_total / total:.0%} of the step)")
    print(f"  {'everything else':<28} {total - mm_total:7.2f} ms")
    print(f"fp32 matmul rate (2048² mm): {rate:.0f} GFLOP/s")
    print(
        f"compute bound: step {flops / total / 1e6 / rate:.1%}; "
        f"if everything but these matmuls were free {flops / mm_total / 1e6 / rate:.1%}"
    )


if __name__ == "__main__":
    main()
