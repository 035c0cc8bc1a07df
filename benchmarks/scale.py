"""Large data: train on a synthetic Parquet log streamed by row groups; rows/s and peak RSS.

The log (default 20,000,000 rows) is written 1,000,000 rows at a time, so this script never
holds it either: time-sorted events of 200,000 users over 100,000 items (Zipf popularity) with
context columns and click / purchase labels that depend on them. Then ``mtrs train`` runs in a
fresh process with ``data.streaming = "always"`` (one epoch; a small shared-bottom model over a
click history, item and context features), and the script reports the wall time, rows/s and
the training process's peak RSS (``getrusage(RUSAGE_CHILDREN)``).

Usage::

    python benchmarks/scale.py                          # 20,000,000 rows in runs/scale
    python benchmarks/scale.py --rows 1000000 --out /tmp/scale --json /tmp/scale.json
    # the same log streamed from the encoded-chunk cache, re-encoded, and in memory
    python benchmarks/scale.py --rows 4000000 --out runs/scale4m \\
        --modes stream,stream-reencode,memory
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

NUM_USERS = 200_000
NUM_ITEMS = 100_000
CHUNK = 1_000_000
SECONDS_PER_ROW = 0.05

CONFIG = """
[data]
interactions = "interactions.parquet"
items = "items.parquet"
streaming = "{streaming}"
chunk_rows = {chunk_rows}
shuffle_buffer_rows = {buffer_rows}
prefetch_chunks = {prefetch}
cache_chunks = {cache}
eval_rows = 200000

[[features]]
name = "clicked_items"
kind = "history"
group = "behaviour"
item_feature = "item_id"
history_filter = "click"
max_length = 10

[[features]]
name = "item_id"
kind = "categorical"
group = "item"

[[features]]
name = "category"
kind = "categorical"
group = "item"

[[features]]
name = "price"
kind = "numeric"
group = "item"
log1p = true

[[features]]
name = "hour"
kind = "categorical"
group = "context"

[[features]]
name = "device"
kind = "categorical"
group = "context"

[[features]]
name = "position"
kind = "numeric"
group = "context"

[[features]]
name = "dwell"
kind = "numeric"
group = "context"
log1p = true

[[tasks]]
name = "click"
type = "binary"
label = "click"

[[tasks]]
name = "purchase"
type = "binary"
label = "purchase"

[model]
architecture = "shared_bottom"
embedding_dim = 8
shared = {{ type = "mlp", hidden = [64] }}
tower = {{ hidden = [32] }}

[train]
epochs = 1
batch_size = 8192
lr = 0.002
seed = 0
threads = {threads}
device = "cpu"
progress = false

[split]
method = "temporal"
valid_fraction = 0.01
test_fraction = 0.01
"""


def write_log(out: Path, rows: int, seed: int = 0) -> None:
    """Write the events chunk by chunk (time-sorted) and a small items table."""
    rng = np.random.default_rng(seed)
    item_cat = rng.integers(0, 200, NUM_ITEMS)
    item_price = np.round(np.exp(rng.normal(3.0, 1.0, NUM_ITEMS)), 2)
    item_bias = rng.normal(0.0, 1.0, NUM_ITEMS)
    user_bias = rng.normal(0.0, 1.0, NUM_USERS)
    pq.write_table(
        pa.table(
            {
                "item_id": np.arange(NUM_ITEMS, dtype=np.int64),
                "category": item_cat,
                "price": item_price,
            }
        ),
        out / "items.parquet",
    )
    writer: pq.ParquetWriter | None = None
    start = 0
    try:
        while start < rows:
            n = min(CHUNK, rows - start)
            user = rng.integers(0, NUM_USERS, n)
            item = np.minimum(rng.zipf(1.3, n) - 1, NUM_ITEMS - 1)
            item = (item * 7919) % NUM_ITEMS
            t = (start + np.sort(rng.random(n)) * n) * SECONDS_PER_ROW
            ts = 1_767_225_600 + t.astype(np.int64)
            hour = (ts // 3600) % 24
            device = rng.integers(0, 3, n)
            position = rng.integers(1, 50, n).astype(np.float64)
            dwell = rng.exponential(20.0, n)
            logit = (
                -2.0
                + 0.8 * user_bias[user]
                + 0.8 * item_bias[item]
                - 0.03 * position
                + 0.3 * (device == 1)
                + 0.2 * np.sin(hour / 24 * 2 * np.pi)
            )
            click = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
            buy = click * (rng.random(n) < 1 / (1 + np.exp(2.0 - 0.5 * item_bias[item])))
            table = pa.table(
                {
                    "user_id": user,
                    "item_id": item,
                    "timestamp": ts,
                    "hour": hour,
                    "device": device,
                    "position": position,
                    "dwell": dwell,
                    "click": click,
                    "purchase": buy.astype(np.int8),
                }
            )
            if writer is None:
                writer = pq.ParquetWriter(out / "interactions.parquet", table.schema)
            writer.write_table(table, row_group_size=CHUNK)
            start += n
    finally:
        if writer is not None:
            writer.close()


# How each mode trains: (data.streaming, data.prefetch_chunks, data.cache_chunks).
MODES = {
    "stream": ("always", 0, True),
    "stream-reencode": ("always", 0, False),
    "stream-prefetch": ("always", 1, False),
    "memory": ("never", 0, True),
}


def run(args: argparse.Namespace, mode: str, gen_seconds: float) -> dict[str, Any]:
    """Train in a child process in one of :data:`MODES`, and measure."""
    out = Path(args.out)
    log = out / "interactions.parquet"
    streaming, prefetch, cache = MODES[mode]
    (out / "scale.toml").write_text(
        CONFIG.format(
            chunk_rows=args.chunk_rows,
            buffer_rows=args.buffer_rows,
            threads=args.threads,
            streaming=streaming,
            prefetch=prefetch,
            cache=str(cache).lower(),
        )
    )
    before_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    cmd = [
        sys.executable,
        "-m",
        "mtrs.cli.main",
        "train",
        str(out / "scale.toml"),
        "--out",
        str(out / "model"),
        "--overwrite",
        "--json",
    ]
    t1 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    wall = time.perf_counter() - t1
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"mtrs train failed with exit code {proc.returncode}")
    # RUSAGE_CHILDREN keeps the largest child's peak: exact for the first run, and a lower
    # bound of "not more than" for later ones (reported as None when it did not rise).
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    trained = json.loads(proc.stdout)
    metrics = json.loads((out / "model" / "metrics.json").read_text())
    epoch_seconds = sum(e["seconds"] for e in metrics["history"])
    train_rows = int(args.rows * (1 - 0.02))
    return {
        "mode": mode,
        "streaming": streaming,
        "prefetch_chunks": prefetch,
        "cache_chunks": cache,
        "rows": args.rows,
        "file_mb": round(log.stat().st_size / 2**20, 1),
        "generate_seconds": round(gen_seconds, 1),
        "train_process_seconds": round(wall, 1),
        "rows_per_second_end_to_end": round(args.rows / wall),
        "epoch_seconds": round(epoch_seconds, 1),
        "train_rows_per_second_epoch": round(train_rows / epoch_seconds),
        "peak_rss_mb": round(peak_kb / 1024) if peak_kb > before_kb or not before_kb else None,
        "threads": args.threads,
        "chunk_rows": args.chunk_rows,
        "shuffle_buffer_rows": args.buffer_rows,
        "test": trained["tasks"],
        "command": " ".join(cmd[1:]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=20_000_000)
    p.add_argument("--out", default="runs/scale")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--chunk-rows", type=int, default=262_144)
    p.add_argument("--buffer-rows", type=int, default=1_000_000)
    p.add_argument("--regenerate", action="store_true")
    p.add_argument("--json", dest="json_path", default=None, help="Also write the JSON here.")
    p.add_argument(
        "--modes",
        default="stream",
        help="Comma-separated runs on the same log: stream (the default: the training "
        "rows encoded once in the preparation pass and kept on disk, data.cache_chunks), "
        "stream-reencode (every epoch reads and encodes the log again), stream-prefetch "
        "(re-encoding on a reader thread one chunk ahead), memory (the whole log in memory); "
        "each in a fresh process.",
    )
    args = p.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise SystemExit(f"--modes: unknown {', '.join(unknown) or '(none)'}; use {list(MODES)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "interactions.parquet"
    t0 = time.perf_counter()
    if args.regenerate or not log.exists() or pq.ParquetFile(log).metadata.num_rows != args.rows:
        write_log(out, args.rows)
    gen_seconds = time.perf_counter() - t0
    results = [run(args, mode, gen_seconds) for mode in modes]
    doc: Any = results[0] if len(results) == 1 else results
    print(json.dumps(doc, indent=2))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(doc, indent=2))
    memory = next((r for r in results if r["mode"] == "memory"), None)
    for res in results:
        rss = f"{res['peak_rss_mb']:,} MB" if res["peak_rss_mb"] is not None else "not above"
        ratio = (
            f", {res['train_rows_per_second_epoch'] / memory['train_rows_per_second_epoch']:.0%}"
            " of in memory"
            if memory is not None and res is not memory
            else ""
        )
        print(
            f"{res['mode']}: {res['rows']:,} rows, {res['train_process_seconds']} s in the "
            f"training process ({res['rows_per_second_end_to_end']:,} rows/s end to end, "
            f"{res['train_rows_per_second_epoch']:,} training rows/s in the epoch{ratio}), "
            f"peak RSS {rss}"
        )


if __name__ == "__main__":
    main()
