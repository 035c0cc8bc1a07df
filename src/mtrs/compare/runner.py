"""Run the comparison grid: architectures × λ values × seeds on one prepared split."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from mtrs.arch.registry import get_architecture
from mtrs.config.models import JobConfig
from mtrs.data.split import VALID
from mtrs.eval.gates import mean_gate_weights
from mtrs.pipeline import Prepared, prepare, run_job
from mtrs.train.trainer import Trainer


@dataclass(frozen=True)
class CompareSpec:
    """What to compare: architectures, λ values and the number of seeds."""

    architectures: tuple[str, ...]
    seeds: int = 3
    lambdas: tuple[float, ...] | None = None


@dataclass
class RunRecord:
    """One trained run: its settings, test metrics, size, time and diagnostics."""

    architecture: str
    lambda_shared: float
    seed: int
    metrics: dict[str, dict[str, float]]
    num_parameters: int
    train_seconds: float
    best_epoch: int
    weights: list[dict[str, float]] = field(default_factory=list)
    grad_cosine: list[dict[str, float]] = field(default_factory=list)
    gates: dict[str, list[float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


def skip_reason(cfg: JobConfig, architecture: str) -> str | None:
    """Why an architecture cannot run on this config (None when it can)."""
    cls = get_architecture(architecture)
    if cls.requires_relation and not any(r.type == cls.requires_relation for r in cfg.relations):
        return f"needs a [[relations]] funnel of type '{cls.requires_relation}' in the config"
    return None


def _attach_diagnostics(trainer: Trainer) -> None:
    try:
        from mtrs.train.diagnostics import GradientSimilarity
    except ImportError:  # diagnostics are optional for a comparison
        return
    GradientSimilarity().attach(trainer)


def run_comparison(
    cfg: JobConfig,
    spec: CompareSpec,
    prepared: Prepared | None = None,
    on_run: Callable[[RunRecord], None] | None = None,
) -> tuple[list[RunRecord], dict[str, str]]:
    """Train every (architecture, λ, seed) on the same split with the same budget.

    Args:
        cfg: The base job config (its split, features, tasks and training budget are shared).
        spec: Architectures, λ values (default: the config's) and seeds (0 … seeds−1).
        prepared: Already prepared data (else prepared once here).
        on_run: Called after each run (progress output).

    Returns:
        ``(records, skipped)``: one record per run; architecture → reason for skipped ones.
    """
    prepared = prepared or prepare(cfg)
    valid = prepared.part(VALID)
    lambdas = spec.lambdas or (cfg.model.lambda_shared,)
    records: list[RunRecord] = []
    skipped: dict[str, str] = {}
    for arch in spec.architectures:
        reason = skip_reason(cfg, arch)
        if reason:
            skipped[arch] = reason
            continue
        for lam in lambdas:
            for seed in range(spec.seeds):
                c = cfg.model_copy(deep=True)
                c.model.architecture = arch
                c.model.lambda_shared = lam
                c.train.seed = seed
                t0 = time.perf_counter()
                job = run_job(c, prepared=prepared, configure=_attach_diagnostics)
                rec = RunRecord(
                    architecture=arch,
                    lambda_shared=lam,
                    seed=seed,
                    metrics=job.test_metrics,
                    num_parameters=job.num_parameters,
                    train_seconds=time.perf_counter() - t0,
                    best_epoch=job.result.best_epoch,
                    weights=[e.weights for e in job.result.history],
                    grad_cosine=[
                        cast(dict[str, float], e.extra["grad_cosine"])
                        for e in job.result.history
                        if "grad_cosine" in e.extra
                    ],
                    gates=mean_gate_weights(job.model, valid, c.train.eval_batch_size)
                    if len(valid)
                    else {},
                )
                records.append(rec)
                if on_run is not None:
                    on_run(rec)
    return records, skipped
