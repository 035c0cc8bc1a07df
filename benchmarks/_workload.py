"""The reference throughput workload (brief §6): sizes, synthetic data and FLOP count."""

from __future__ import annotations

import itertools
import os
import resource
import sys
import time
from dataclasses import dataclass, field

import numpy as np

# AliExpress-shaped: 16 categorical fields of these vocabularies, 63 numeric fields.
VOCABS: tuple[int, ...] = (
    10, 100, 1000, 10000, 50000, 100000, 20, 200, 2000, 5, 50, 500, 5000, 30, 300, 3000,
)  # fmt: skip
NUM_NUMERIC = 63
TASKS: tuple[str, ...] = ("a", "b")


@dataclass(frozen=True)
class Workload:
    """Every size the systems under test must agree on.

    ``rows`` and ``seed`` fix the data; the rest fix the model and the optimiser.
    """

    rows: int = 200_000
    seed: int = 0
    vocabs: tuple[int, ...] = VOCABS
    num_numeric: int = NUM_NUMERIC
    embedding_dim: int = 16
    num_experts: int = 8
    expert_hidden: tuple[int, ...] = (256, 128)
    tower_hidden: tuple[int, ...] = (64,)
    batch_size: int = 2048
    predict_batch_size: int = 2048 * 4
    lr: float = 1e-3
    epochs: int = 1
    tasks: tuple[str, ...] = field(default=TASKS)

    @property
    def input_dim(self) -> int:
        """Width of the flat input: one embedding per categorical field plus the numerics."""
        return len(self.vocabs) * self.embedding_dim + self.num_numeric


@dataclass
class Data:
    """The synthetic rows: codes ``cat`` [n, 16] (0..V-1), ``num`` [n, 63], ``labels`` [n, 2]."""

    cat: np.ndarray
    num: np.ndarray
    labels: np.ndarray
    prob: np.ndarray


def _skewed_codes(rng: np.random.Generator, vocab: int, n: int) -> np.ndarray:
    """Codes 0..vocab-1 with a Zipf-like (s = 1.05) popularity, ranks shuffled over the codes.

    Recommendation ids are long-tailed: a few items and users carry most events.
    """
    ranks = np.arange(1, vocab + 1, dtype=np.float64)
    p = ranks**-1.05
    p /= p.sum()
    by_rank = rng.choice(vocab, size=n, p=p)
    return rng.permutation(vocab)[by_rank].astype(np.int64)


def generate(w: Workload) -> Data:
    """The rows for ``w`` (deterministic in ``w.seed``), labels from a random logistic model.

    Each task's logit is a bias plus one random effect per categorical value plus a linear
    function of the numerics; task b shares half of its effects with task a, so the tasks are
    related but not identical (what multi-task learning needs).
    """
    rng = np.random.default_rng(w.seed)
    n = w.rows
    cat = np.stack([_skewed_codes(rng, v, n) for v in w.vocabs], axis=1)
    num = rng.standard_normal((n, w.num_numeric), dtype=np.float32)
    logits = np.zeros((n, len(w.tasks)), dtype=np.float64)
    shared_num = rng.standard_normal(w.num_numeric) / np.sqrt(w.num_numeric)
    for t in range(len(w.tasks)):
        own = rng.standard_normal(w.num_numeric) / np.sqrt(w.num_numeric)
        mix = 1.0 if t == 0 else 0.5
        logits[:, t] = num @ (mix * shared_num + (1 - mix) * own)
    for j, v in enumerate(w.vocabs):
        shared = rng.standard_normal(v) * 0.35
        own = rng.standard_normal(v) * 0.35
        logits[:, 0] += shared[cat[:, j]]
        logits[:, 1] += 0.5 * shared[cat[:, j]] + 0.5 * own[cat[:, j]]
    logits[:, 0] += -1.0
    logits[:, 1] += -2.0
    prob = 1.0 / (1.0 + np.exp(-logits))
    labels = (rng.random(prob.shape) < prob).astype(np.float32)
    return Data(cat, num, labels, prob.astype(np.float32))


@dataclass(frozen=True)
class FlopCount:
    """Dense FLOPs per sample of one MMoE forward pass, by part, and the training estimate."""

    experts: int
    gates: int
    mixing: int
    towers: int
    heads: int

    @property
    def forward(self) -> int:
        """All dense FLOPs of one forward pass for one sample."""
        return self.experts + self.gates + self.mixing + self.towers + self.heads

    @property
    def train(self) -> int:
        """Forward + backward ≈ 3× forward (input and weight gradients each cost one forward)."""
        return 3 * self.forward


def _mlp_flops(widths: list[int]) -> int:
    return sum(2 * a * b for a, b in itertools.pairwise(widths))


def mmoe_flops(w: Workload, num_experts: int | None = None, gated: bool = True) -> FlopCount:
    """Dense FLOPs per sample, counted analytically (2·in·out per Linear).

    Args:
        w: The workload sizes.
        num_experts: Experts to count (default ``w.num_experts``; 1 for a shared bottom).
        gated: Whether there are gates and a gate-weighted mix (False for a shared bottom).

    Embedding lookups, activations, softmax, losses and the optimiser are left out: they are
    memory-bound, not matmuls, and their FLOPs are < 1% of these.
    """
    e = w.num_experts if num_experts is None else num_experts
    t = len(w.tasks)
    d = w.input_dim
    expert = _mlp_flops([d, *w.expert_hidden])
    out = w.expert_hidden[-1]
    tower = _mlp_flops([out, *w.tower_hidden])
    return FlopCount(
        experts=e * expert,
        gates=t * 2 * d * e if gated else 0,
        mixing=t * 2 * e * out if gated else 0,
        towers=t * tower,
        heads=t * 2 * w.tower_hidden[-1],
    )


def matmul_gflops(n: int = 2048, repeats: int = 10, dtype: str = "fp32") -> dict[str, float]:
    """The machine's matmul rate with the current torch threads, best of ``repeats``.

    Times ``torch.mm`` of two n×n matrices (2·n³ FLOPs each) in ``dtype`` (fp32 or bf16).

    Returns:
        ``wall``: GFLOP/s by wall clock; ``main_cpu``: by the calling thread's CPU time, which
        a busy machine inflates less (see ``throughput.py``).
    """
    import torch

    gen = torch.Generator().manual_seed(0)
    dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    a = torch.randn(n, n, generator=gen).to(dt)
    b = torch.randn(n, n, generator=gen).to(dt)
    out = torch.empty(n, n, dtype=dt)
    for _ in range(2):
        torch.mm(a, b, out=out)
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        c0, t0 = time.thread_time(), time.perf_counter()
        torch.mm(a, b, out=out)
        best_wall = min(best_wall, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.thread_time() - c0)
    flop = 2 * n**3
    return {"wall": flop / best_wall / 1e9, "main_cpu": flop / max(best_cpu, 1e-9) / 1e9}


def physical_cores() -> int:
    """Physical cores (psutil when present, else ``os.cpu_count()``)."""
    try:
        import psutil

        n = psutil.cpu_count(logical=False)
        if n:
            return int(n)
    except ImportError:
        pass
    return os.cpu_count() or 1


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
