"""Aggregate runs over seeds: mean and sample standard deviation per task metric."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

from mtrs.experiments.record import RunRecord

Stat = dict[str, float]
# Row label → task (or ranked list) → metric → {"mean", "std"}.
Results = dict[str, dict[str, dict[str, Stat]]]
# Per seed: task (or list) → metric → value.
SeedMetrics = Mapping[str, Mapping[str, float]]


def mean_std(values: Sequence[float]) -> Stat:
    """Mean and sample standard deviation (ddof = 1; 0 for one value); NaNs are left out."""
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=np.float64)
    if v.size == 0:
        return {"mean": math.nan, "std": math.nan}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0}


def aggregate(
    runs: Sequence[RunRecord], extra: Mapping[str, Sequence[SeedMetrics]] | None = None
) -> Results:
    """Row label → task → metric → mean and spread over seeds.

    Args:
        runs: Trained runs; a row per architecture (per architecture and λ when several λ
            values were run).
        extra: Rows that are not trained runs (baselines): label → one metrics mapping per
            seed.
    """
    multiple = len({r.lambda_shared for r in runs}) > 1
    values: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for r in runs:
        for task, metrics in r.metrics.items():
            for metric, value in metrics.items():
                values[r.label(multiple)][task][metric].append(float(value))
    for label, per_seed in (extra or {}).items():
        for seed_metrics in per_seed:
            for task, by_metric in seed_metrics.items():
                for metric, value in by_metric.items():
                    values[label][task][metric].append(float(value))
    return {
        label: {t: {m: mean_std(v) for m, v in ms.items()} for t, ms in tasks.items()}
        for label, tasks in values.items()
    }


def run_stats(runs: Sequence[RunRecord]) -> dict[str, dict[str, float]]:
    """Per row label: seeds, parameters and the mean wall, training and CPU seconds per run."""
    multiple = len({r.lambda_shared for r in runs}) > 1
    by: dict[str, list[RunRecord]] = defaultdict(list)
    for r in runs:
        by[r.label(multiple)].append(r)
    return {
        label: {
            "seeds": float(len(rs)),
            "num_parameters": float(np.mean([r.num_parameters for r in rs])),
            "seconds": float(np.mean([r.seconds for r in rs])),
            "train_seconds": float(np.mean([r.train_seconds for r in rs])),
            "cpu_seconds": float(np.mean([r.cpu_seconds for r in rs])),
        }
        for label, rs in by.items()
    }
