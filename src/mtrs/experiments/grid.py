"""The experiment grid: architectures × λ values × seeds, each run on the same prepared data.

Runs are independent, so :func:`run_grid` can spread them over worker processes
(``jobs > 1``): on a small machine two one-thread runs side by side do more work than one
two-thread run, because a recommender's training step is mostly small, memory-bound
operations that two threads do not split well (docs/movielens.md has the measurement).
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, cast

import torch

from mtrs.arch.registry import get_architecture, missing_relation
from mtrs.config.models import JobConfig
from mtrs.eval.gates import mean_gate_weights
from mtrs.experiments.record import RunRecord
from mtrs.job import Job, run_job
from mtrs.prepare import Prepared
from mtrs.train.diagnostics import GradientSimilarity
from mtrs.train.trainer import Trainer

# Runs side by side by default: each worker holds its own copy of a seed's data (about 1 GB on
# MovieLens-100K), so a large machine still starts at most this many.
MAX_DEFAULT_JOBS = 4


def default_jobs(threads: int | None = None) -> int:
    """Runs trained at once by default: one per thread (``torch.get_num_threads()``), at most
    :data:`MAX_DEFAULT_JOBS`; a run's small steps use one thread nearly as well as two."""
    n = torch.get_num_threads() if threads is None else threads
    return max(1, min(n, MAX_DEFAULT_JOBS))


# (architecture, λ or None for the config's own, seed) → the run's config.
ConfigFor = Callable[[str, float | None, int], JobConfig]


@dataclass
class Scored:
    """What a scorer adds to a run: metrics (task or list → metric → value) and notes."""

    metrics: dict[str, dict[str, float]]
    notes: dict[str, Any] = field(default_factory=dict)


# A run's extra metrics (e.g. ranked lists) and notes (e.g. the merge it fitted).
Scorer = Callable[[Job, int], Scored]


@dataclass(frozen=True)
class Grid:
    """What to run: architectures, λ values (None: each config's own) and seeds 0 … seeds−1."""

    architectures: tuple[str, ...]
    seeds: int = 3
    lambdas: tuple[float, ...] | None = None


def skip_reason(cfg: JobConfig, architecture: str) -> str | None:
    """Why an architecture cannot run on this config (None when it can)."""
    return missing_relation(get_architecture(architecture), cfg.relations)


def _attach_diagnostics(trainer: Trainer) -> None:
    GradientSimilarity().attach(trainer)


def run_grid(
    grid: Grid,
    config_for: ConfigFor,
    data: Callable[[int], Prepared],
    *,
    score: Scorer | None = None,
    diagnostics: bool = False,
    on_start: Callable[[str, int], None] | None = None,
    on_run: Callable[[RunRecord], None] | None = None,
    jobs: int = 1,
) -> tuple[list[RunRecord], dict[str, str]]:
    """Train every (architecture, λ, seed) with the same budget on the same data per seed.

    Every architecture of a seed reads that seed's prepared data, so within a seed all
    systems see the same rows and the same split. The records come back in grid order
    (seed, architecture, λ) whatever ``jobs`` is.

    Args:
        grid: Architectures, λ values and seeds.
        config_for: The config of one run.
        data: The prepared data of a seed (called once per seed and process).
        score: Extra metrics and notes of a trained run, merged into its record.
        diagnostics: Record gradient cosines on shared parameters and mean gate weights.
        on_start: Called with (architecture, seed) before each run (progress output; with
            ``jobs > 1``, when the run is handed to a worker).
        on_run: Called with each finished record (in completion order).
        jobs: Worker processes. 1 runs everything here with this process's threads; more
            start that many spawned workers, each with ``threads // jobs`` threads (at least
            one), and then ``config_for``, ``data`` and ``score`` must be picklable
            (module-level functions or methods of picklable objects). The numbers of a
            run do not depend on which process runs it, only (in the last float digits) on
            its thread count.

    Returns:
        ``(records, skipped)``: one record per run; architecture → reason for skipped ones.
    """
    skipped = {
        a: reason
        for a in grid.architectures
        if (reason := skip_reason(config_for(a, None, 0), a)) is not None
    }
    archs = [a for a in grid.architectures if a not in skipped]
    todo = [
        (arch, lam, seed)
        for seed in range(grid.seeds if archs else 0)
        for arch in archs
        for lam in grid.lambdas or (None,)
    ]
    spec = _Spec(config_for, data, score, diagnostics)
    if jobs <= 1 or len(todo) <= 1:
        records = []
        for arch, lam, seed in todo:
            if on_start is not None:
                on_start(arch, seed)
            rec = spec.run(arch, lam, seed)
            records.append(rec)
            if on_run is not None:
                on_run(rec)
        return records, skipped
    return _run_parallel(spec, todo, min(jobs, len(todo)), on_start, on_run), skipped


@dataclass
class _Spec:
    """One run's recipe; pickled to the workers (its ``data`` keeps its own cache there)."""

    config_for: ConfigFor
    data: Callable[[int], Prepared]
    score: Scorer | None
    diagnostics: bool

    def run(self, arch: str, lam: float | None, seed: int) -> RunRecord:
        prepared = self.data(seed)
        cfg = self.config_for(arch, lam, seed)
        t0, cpu0 = time.perf_counter(), time.process_time()
        job = run_job(
            cfg, prepared=prepared, configure=_attach_diagnostics if self.diagnostics else None
        )
        metrics = {t: dict(m) for t, m in job.test_metrics.items()}
        scored = self.score(job, seed) if self.score else Scored({})
        for name, values in scored.metrics.items():
            metrics.setdefault(name, {}).update(values)
        valid = prepared.valid
        return RunRecord(
            architecture=arch,
            lambda_shared=cfg.model.lambda_shared,
            seed=seed,
            metrics=metrics,
            num_parameters=job.num_parameters,
            seconds=time.perf_counter() - t0,
            train_seconds=job.result.seconds,
            cpu_seconds=time.process_time() - cpu0,
            best_epoch=job.result.best_epoch,
            weights=[e.weights for e in job.result.history],
            grad_cosine=[
                cast(dict[str, float], e.extra["grad_cosine"])
                for e in job.result.history
                if "grad_cosine" in e.extra
            ],
            gates=(
                mean_gate_weights(job.model, valid, cfg.train.eval_batch_size)
                if self.diagnostics and valid is not None
                else {}
            ),
            notes=scored.notes,
        )


_WORKER_SPEC: _Spec | None = None


def _init_worker(spec: _Spec, threads: int) -> None:
    global _WORKER_SPEC
    torch.set_num_threads(threads)
    _WORKER_SPEC = spec


def _work(arch: str, lam: float | None, seed: int) -> RunRecord:
    assert _WORKER_SPEC is not None, "worker not initialised"
    return _WORKER_SPEC.run(arch, lam, seed)


def _run_parallel(
    spec: _Spec,
    todo: list[tuple[str, float | None, int]],
    jobs: int,
    on_start: Callable[[str, int], None] | None,
    on_run: Callable[[RunRecord], None] | None,
) -> list[RunRecord]:
    threads = max(1, torch.get_num_threads() // jobs)
    # spawn, not fork: a forked child of a process that has run OpenMP regions can hang.
    ctx = multiprocessing.get_context("spawn")
    done: dict[int, RunRecord] = {}
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker,
                             initargs=(spec, threads)) as pool:  # fmt: skip
        pending: dict[Future[RunRecord], int] = {}
        queue = list(enumerate(todo))
        while queue or pending:
            # Hand out one run per free worker, so on_start reports what is running.
            while queue and len(pending) < jobs:
                i, (arch, lam, seed) = queue.pop(0)
                if on_start is not None:
                    on_start(arch, seed)
                pending[pool.submit(_work, arch, lam, seed)] = i
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                i = pending.pop(fut)
                done[i] = fut.result()
                if on_run is not None:
                    on_run(done[i])
    return [done[i] for i in range(len(todo))]
