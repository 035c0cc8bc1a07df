"""The experiment grid: architectures × λ values × seeds, each run on the same prepared data."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from mtrs.arch.registry import get_architecture, missing_relation
from mtrs.config.models import JobConfig
from mtrs.eval.gates import mean_gate_weights
from mtrs.experiments.record import RunRecord
from mtrs.job import Job, run_job
from mtrs.prepare import Prepared
from mtrs.train.diagnostics import GradientSimilarity
from mtrs.train.trainer import Trainer

# (architecture, λ or None for the config's own, seed) → the run's config.
ConfigFor = Callable[[str, float | None, int], JobConfig]
# A run's extra metrics (e.g. ranked lists): task or list → metric → value.
Scorer = Callable[[Job, int], dict[str, dict[str, float]]]


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
) -> tuple[list[RunRecord], dict[str, str]]:
    """Train every (architecture, λ, seed) with the same budget on the same data per seed.

    Seeds run in order and every architecture of a seed reads that seed's prepared data, so
    within a seed all systems see the same rows and the same split.

    Args:
        grid: Architectures, λ values and seeds.
        config_for: The config of one run.
        data: The prepared data of a seed (called once per seed).
        score: Extra metrics of a trained run, merged into its record's metrics.
        diagnostics: Record gradient cosines on shared parameters and mean gate weights.
        on_start: Called with (architecture, seed) before each run (progress output).
        on_run: Called with each finished record.

    Returns:
        ``(records, skipped)``: one record per run; architecture → reason for skipped ones.
    """
    skipped = {
        a: reason
        for a in grid.architectures
        if (reason := skip_reason(config_for(a, None, 0), a)) is not None
    }
    archs = [a for a in grid.architectures if a not in skipped]
    records: list[RunRecord] = []
    for seed in range(grid.seeds):
        if not archs:
            break
        prepared = data(seed)
        for arch in archs:
            for lam in grid.lambdas or (None,):
                if on_start is not None:
                    on_start(arch, seed)
                cfg = config_for(arch, lam, seed)
                t0, cpu0 = time.perf_counter(), time.process_time()
                job = run_job(
                    cfg, prepared=prepared, configure=_attach_diagnostics if diagnostics else None
                )
                metrics = {t: dict(m) for t, m in job.test_metrics.items()}
                for name, values in (score(job, seed) if score else {}).items():
                    metrics.setdefault(name, {}).update(values)
                valid = prepared.valid
                rec = RunRecord(
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
                        if diagnostics and valid is not None
                        else {}
                    ),
                )
                records.append(rec)
                if on_run is not None:
                    on_run(rec)
    return records, skipped
