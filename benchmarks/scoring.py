"""Latency of recommending for one user over 1,682 and 100,000 candidate items.

Trains a one-epoch model on a synthetic log with 100,000 items, saves and loads it, then times
``Recommender.recommend`` (batched scoring per chunk, per-task top-K, merge) for random known
users. Prints a table and, with ``--json PATH``, writes the numbers.

    python benchmarks/scoring.py [--items 100000] [--repeats 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

import mtrs
from mtrs.datasets.quickstart import write_synth
from mtrs.datasets.synth import SynthSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    console = Console()
    tmp = Path(tempfile.mkdtemp(prefix="mtrs-scoring-"))
    try:
        config = write_synth(
            tmp / "data",
            SynthSpec(num_users=5000, num_items=args.items, num_events=args.events, seed=0),
        )
        cfg = mtrs.load_config(config)
        cfg.train.epochs = 1
        cfg.train.progress = False
        mtrs.save(mtrs.train(cfg), tmp / "model")
        model = mtrs.load(tmp / "model")
        rec = model.recommender()
        ids = model.catalog.item_ids
        rng = np.random.default_rng(0)
        users = [
            model.catalog.user_ids[i]
            for i in rng.integers(0, len(model.catalog.user_ids), args.repeats)
        ]
        results = {}
        for n in (1682, min(100_000, len(ids))):
            cands = [ids[i] for i in rng.choice(len(ids), n, replace=False)]
            rec.recommend(users[0], k=10, candidates=cands)  # warm-up
            times = []
            for u in users:
                t0 = time.perf_counter()
                rec.recommend(u, k=10, candidates=cands)
                times.append(time.perf_counter() - t0)
            ms = np.array(times) * 1000
            results[n] = {
                "median_ms": float(np.median(ms)),
                "p95_ms": float(np.percentile(ms, 95)),
                "items_per_s": float(n / np.median(ms) * 1000),
            }
        table = Table(
            title=f"recommend latency (threads={torch.get_num_threads()}, "
            f"{len(model.tasks)} tasks, k=10)"
        )
        for col in ("candidates", "median ms", "p95 ms", "items/s"):
            table.add_column(col, justify="right")
        for n, r in results.items():
            table.add_row(
                f"{n:,}", f"{r['median_ms']:.1f}", f"{r['p95_ms']:.1f}", f"{r['items_per_s']:,.0f}"
            )
        console.print(table)
        doc = {
            "threads": torch.get_num_threads(),
            "items_in_catalog": len(ids),
            "results": {str(k): v for k, v in results.items()},
        }
        print(json.dumps(doc))
        if args.json:
            args.json.write_text(json.dumps(doc, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
