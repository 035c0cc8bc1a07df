"""Where one MovieLens-100K benchmark run spends its time, and what it scores on validation.

For each architecture, one run of the benchmark's job on one seed, timed in its parts: training
(`run_job`, early stopping included), then the benchmark's own scoring
(``BenchmarkRuns.score``, which times ``list_scores`` over the validation and test periods, the
merge fit on validation and the test ranking). Prints one line per run with the
merged list's validation NDCG@10 (what the benchmark selects on) and its test NDCG@10, so a
faster setting can be checked for what it costs before it becomes a default.

    python benchmarks/movielens_breakdown.py --data-dir ../shared/datasets/ml-100k \\
        [--architectures shared_bottom,single] [--seed 0] [--epochs N] [--batch-size N]
        [--lr X]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mtrs.experiments.movielens import BenchmarkRuns, resolve_architectures
from mtrs.experiments.ranking import MERGED
from mtrs.job import run_job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--architectures", default="")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    args = parser.parse_args()
    names = [a for a in args.architectures.split(",") if a] or None
    runs = BenchmarkRuns(Path(args.data_dir), args.epochs, 4, None)
    start = time.perf_counter()
    prepared = runs.data(args.seed)
    runs.setups(args.seed)
    print(f"data and ranking setups: {time.perf_counter() - start:.1f} s", flush=True)
    for arch in resolve_architectures(names):
        cfg = runs.config_for(arch, None, args.seed)
        if args.batch_size:
            cfg.train.batch_size = args.batch_size
        if args.lr:
            cfg.train.lr = args.lr
        start = time.perf_counter()
        job = run_job(cfg, prepared=prepared)
        trained = time.perf_counter() - start
        # The benchmark's own scoring (merge fitted on validation, test ranked), phases timed.
        scored = runs.score(job, args.seed)
        merge, seconds = scored.notes["merge"], scored.notes["seconds"]
        print(
            f"{arch}: train {trained:.1f} s ({len(job.result.history)} epochs, best "
            f"{job.result.best_epoch}), list_scores {seconds['list_scores']:.1f} s, fit_merge "
            f"{seconds['fit_merge']:.1f} s, test ranking {seconds['ranking']:.1f} s, total "
            f"{time.perf_counter() - start:.1f} s | valid merged ndcg@10 "
            f"{merge['valid']['ndcg@10']:.4f} ({merge['strategy']} {merge['weights']}), test "
            f"merged ndcg@10 {scored.metrics[MERGED]['ndcg@10']:.4f}, test interact auc "
            f"{job.test_metrics['interact']['auc']:.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
