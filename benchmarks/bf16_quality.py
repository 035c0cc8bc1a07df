"""MovieLens-100K benchmark runs in fp32 and in bf16 (``train.precision``), same seeds.

Trains one architecture for each seed twice — ``train.precision = "fp32"`` and ``"bf16"``
(CPU autocast) — with the benchmark's data, config and ranking (``BenchmarkRuns``), and
prints the per-seed metrics, their means and the bf16 − fp32 deltas beside the fp32
seed-to-seed standard deviation.

    python benchmarks/bf16_quality.py --data-dir ../shared/datasets/ml-100k \\
        [--arch shared_bottom] [--seeds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from mtrs.config.models import JobConfig
from mtrs.experiments.grid import Grid, run_grid
from mtrs.experiments.movielens import BenchmarkRuns

METRICS = (
    ("interact", "auc"),
    ("like", "auc"),
    ("rating", "rmse"),
    ("merged", "hit_rate@10"),
    ("merged", "ndcg@10"),
    ("merged", "recall@20"),
)


class PrecisionRuns(BenchmarkRuns):
    """The benchmark's runs with ``train.precision`` set."""

    def __init__(self, data_dir: Path, precision: str) -> None:
        super().__init__(data_dir, None, 4, None)
        self.precision = precision

    def config_for(self, arch: str, lam: float | None, seed: int) -> JobConfig:
        cfg = super().config_for(arch, lam, seed)
        cfg.train.precision = self.precision  # type: ignore[assignment]
        return cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--arch", default="shared_bottom")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    out: dict[str, dict[str, list[float]]] = {}
    seconds: dict[str, float] = {}
    for precision in ("fp32", "bf16"):
        spec = PrecisionRuns(args.data_dir, precision)
        t0 = time.perf_counter()
        records, _ = run_grid(
            Grid((args.arch,), args.seeds), spec.config_for, spec.data, score=spec.score
        )
        seconds[precision] = time.perf_counter() - t0
        out[precision] = {f"{t}/{m}": [r.metrics[t][m] for r in records] for t, m in METRICS}
        for r in records:
            values = {k: round(v[r.seed], 4) for k, v in out[precision].items()}
            print(precision, "seed", r.seed, values, f"{r.seconds:.0f} s", flush=True)
    print(f"\n{args.arch}, {args.seeds} seeds: metric | fp32 mean ± std | bf16 mean | delta")
    for key in out["fp32"]:
        a, b = out["fp32"][key], out["bf16"][key]
        std = statistics.stdev(a) if len(a) > 1 else float("nan")
        delta = statistics.mean(b) - statistics.mean(a)
        print(f"{key:20s} {statistics.mean(a):.4f} ± {std:.4f} | {statistics.mean(b):.4f} | "
              f"{delta:+.4f}")  # fmt: skip
    print({k: f"{v:.0f} s" for k, v in seconds.items()})
    if args.json:
        args.json.write_text(json.dumps({"metrics": out, "seconds": seconds}, indent=1))


if __name__ == "__main__":
    main()
