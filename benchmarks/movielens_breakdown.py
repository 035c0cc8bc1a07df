"""Where one MovieLens-100K benchmark run spends its time, and what it scores on validation.

For each architecture, one run of the benchmark's job on one seed, timed in its parts: training
(`run_job`, early stopping included), ``list_scores`` over the validation and test periods, the
merge fit on validation (``fit_merge``) and the test ranking. Prints one line per run with the
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

from mtrs.experiments.merge_fit import fit_merge
from mtrs.experiments.movielens import RANKING_KS, BenchmarkRuns, resolve_architectures
from mtrs.experiments.ranking import MERGED, evaluate_lists, list_scores
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
    test, valid = runs.setups(args.seed)
    print(f"data and ranking setups: {time.perf_counter() - start:.1f} s", flush=True)
    for arch in resolve_architectures(names):
        cfg = runs.config_for(arch, None, args.seed)
        if args.batch_size:
            cfg.train.batch_size = args.batch_size
        if args.lr:
            cfg.train.lr = args.lr
        t0 = time.perf_counter()
        job = run_job(cfg, prepared=prepared)
        t1 = time.perf_counter()
        rec = job.recommender(valid.catalog)
        probability = [t for t in rec.list_tasks if job.tasks.is_probability(t)]
        valid_scores = list_scores(rec, valid)
        t2 = time.perf_counter()
        fit = fit_merge(
            valid_scores, valid.seen_mask(), valid.relevant, probability, RANKING_KS,
            rrf_k=rec.cfg.rrf_k,
        )  # fmt: skip
        t3 = time.perf_counter()
        rec = job.recommender(test.catalog)
        test_scores = list_scores(rec, test)
        t4 = time.perf_counter()
        merges = {MERGED: (fit.strategy, fit.weights)}
        metrics = evaluate_lists(test_scores, test, merges, RANKING_KS, rec.cfg.rrf_k)
        t5 = time.perf_counter()
        print(
            f"{arch}: train {t1 - t0:.1f} s ({len(job.result.history)} epochs, best "
            f"{job.result.best_epoch}), list_scores {t2 - t1 + t4 - t3:.1f} s, fit_merge "
            f"{t3 - t2:.1f} s ({len(fit.tried)} merges), test ranking {t5 - t4:.1f} s, total "
            f"{t5 - t0:.1f} s | valid merged ndcg@10 {fit.value:.4f} ({fit.strategy} "
            f"{fit.weights}), test merged ndcg@10 {metrics[MERGED]['ndcg@10']:.4f}, test "
            f"interact auc {job.test_metrics['interact']['auc']:.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
