"""Latency of recommending for one user over 1,682 and 100,000 candidate items.

Trains a one-epoch model on a synthetic log with 100,000 items, saves and loads it, then times
``Recommender.recommend`` (batched scoring per chunk, per-task top-K, merge) for random known
users: with 1,682 and 100,000 candidate ids in the request, and over the whole catalogue
(no id list). Prints a table and, with ``--json PATH``, writes the numbers. ``--backend onnx`` also
exports the model (``mtrs export --format onnx``) and times the same lists scored by
onnxruntime (:func:`mtrs.export.onnx.recommender_from_onnx`, as many threads as torch);
``--backend both`` times the two side by side.

    python benchmarks/scoring.py [--items 100000] [--repeats 30] [--backend torch|onnx|both]
        [--json out.json]
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
    parser.add_argument("--backend", choices=("torch", "onnx", "both"), default="torch")
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
        recs = {}
        if args.backend in ("torch", "both"):
            recs["torch"] = model.recommender()
        if args.backend in ("onnx", "both"):
            from mtrs.export.onnx import export_onnx, recommender_from_onnx

            export_onnx(tmp / "model", tmp / "onnx")
            threads = torch.get_num_threads()
            recs["onnx"] = recommender_from_onnx(tmp / "model", tmp / "onnx", threads)
        ids = model.catalog.item_ids
        rng = np.random.default_rng(0)
        users = [
            model.catalog.user_ids[i]
            for i in rng.integers(0, len(model.catalog.user_ids), args.repeats)
        ]
        results: dict[str, dict[str, dict[str, float]]] = {b: {} for b in recs}
        cases: list[tuple[str, int, list[str] | None]] = [
            (str(n), n, [ids[i] for i in rng.choice(len(ids), n, replace=False)])
            for n in sorted({min(1682, len(ids)), min(100_000, len(ids))})
        ]
        # The whole catalogue without an id list (what `mtrs recommend` ranks): no
        # request-side mapping of 100,000 ids to positions.
        cases.append(("catalogue", len(ids), None))
        for key, n, cands in cases:
            for backend, rec in recs.items():
                rec.recommend(users[0], k=10, candidates=cands, exclude_seen=False)  # warm-up
                times = []
                for u in users:
                    t0 = time.perf_counter()
                    rec.recommend(u, k=10, candidates=cands, exclude_seen=False)
                    times.append(time.perf_counter() - t0)
                ms = np.array(times) * 1000
                results[backend][key] = {
                    "candidates": n,
                    "median_ms": float(np.median(ms)),
                    "p95_ms": float(np.percentile(ms, 95)),
                    "items_per_s": float(n / np.median(ms) * 1000),
                    "us_per_item": float(np.median(ms) * 1000 / n),
                }
        table = Table(
            title=f"recommend latency (threads={torch.get_num_threads()}, "
            f"{len(model.tasks)} tasks, k=10)"
        )
        for col in ("backend", "candidates", "median ms", "p95 ms", "µs/item", "items/s"):
            table.add_column(col, justify="right")
        for backend, by_n in results.items():
            for key, r in by_n.items():
                n = int(r["candidates"])
                table.add_row(
                    backend,
                    f"{n:,} (whole catalogue)" if key == "catalogue" else f"{n:,} ids",
                    f"{r['median_ms']:.1f}",
                    f"{r['p95_ms']:.1f}",
                    f"{r['us_per_item']:.2f}",
                    f"{r['items_per_s']:,.0f}",
                )
        console.print(table)
        doc = {
            "threads": torch.get_num_threads(),
            "items_in_catalog": len(ids),
            "results": results,
        }
        print(json.dumps(doc))
        if args.json:
            args.json.write_text(json.dumps(doc, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
