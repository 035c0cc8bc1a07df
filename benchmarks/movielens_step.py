"""MovieLens-100K training steps: one process with T threads against P processes side by side.

Why ``mtrs benchmark --jobs`` exists: a MovieLens training step is mostly small, memory-bound
operations, which two threads split poorly, so two one-thread runs at once may train more rows
per second than one two-thread run. This script prepares the benchmark's data (seed 0), then
times ``--steps`` training steps of one architecture in each of ``--processes`` fresh
processes started at the same time, each with ``--threads`` threads, and prints every
process's milliseconds per step and the rows per second of all of them together.

    python benchmarks/movielens_step.py --data-dir ../shared/datasets/ml-100k \\
        [--arch single] [--threads 2 --processes 1 | --threads 1 --processes 2]
        [--precision fp32|bf16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def _worker(args: argparse.Namespace) -> None:
    import torch

    from mtrs.datasets.movielens import load_movielens_100k
    from mtrs.datasets.movielens_job import movielens_config, movielens_tables
    from mtrs.job import build
    from mtrs.prepare import prepare
    from mtrs.train.trainer import Trainer

    torch.set_num_threads(args.threads)
    cfg = movielens_config(args.arch, 0, 1)
    cfg.train.batch_size = args.batch_size
    cfg.train.precision = args.precision
    prepared = prepare(cfg, movielens_tables(load_movielens_100k(args.data_dir)))
    model, tasks = build(cfg, prepared)
    trainer = Trainer(model, tasks, cfg)
    data = prepared.train
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    bs = args.batch_size
    batches = [data.take(perm[i * bs : (i + 1) * bs]) for i in range(args.steps + 5)]
    sums: dict[str, float] = {}
    for b in batches[:5]:  # warm-up
        trainer.train_step(b, sums)
    start = time.perf_counter()
    for b in batches[5:]:
        trainer.train_step(b, sums)
    ms = (time.perf_counter() - start) / args.steps * 1e3
    print(json.dumps({"ms_per_step": ms, "rows_per_s": bs / ms * 1e3}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--arch", default="single")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    load = os.getloadavg()[0]
    argv = [sys.executable, __file__, "--worker", *sys.argv[1:]]
    procs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(args.processes)
    ]
    results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    for i, r in enumerate(results):
        print(f"process {i}: {r['ms_per_step']:.1f} ms/step")
    total = sum(r["rows_per_s"] for r in results)
    print(
        f"{args.arch} {args.precision}, {args.processes} process(es) × {args.threads} thread(s): "
        f"{total:,.0f} rows/s together (1-min load before {load:.2f}, after "
        f"{os.getloadavg()[0]:.2f})"
    )


if __name__ == "__main__":
    main()
