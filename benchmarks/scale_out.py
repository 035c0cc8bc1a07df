"""Data-parallel scaling on this machine: 1 and 2 processes (one thread each), in memory and
streamed, plus the cost of the per-step gradient all-reduce.

The data are the quickstart's synthetic log (``mtrs.datasets.synth``, default 400,000
events, Parquet) and the job is the packaged quickstart config with one epoch and no early
stopping. Each configuration runs ``mtrs train`` in a fresh process — under ``torchrun
--standalone --nproc_per_node=2`` for two processes — and the script reads the training time
from ``metrics.json`` (``train_seconds``: every epoch with its validation).

The all-reduce is measured on its own: 2 gloo processes average the gradients of the very
same model (``Distributed.average_gradients``, one flattened buffer) ``--reduce-steps`` times;
the script reports the buffer's size and the time per step. ``docs/distributed.md`` uses these
numbers for its projection to more machines.

Usage::

    python benchmarks/scale_out.py                  # 400,000 events, global batch 2048
    python benchmarks/scale_out.py --batch-size 512 # the quickstart config's own batch
    python benchmarks/scale_out.py --events 100000 --json runs/scale_out.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REDUCE = """
import json, sys, time, torch
from mtrs.config.load import load_config
from mtrs.job import build
from mtrs.prepare import prepare
from mtrs.train.distributed import Distributed
torch.set_num_threads(1)
dist = Distributed.from_env("cpu")
cfg = load_config(sys.argv[1]); cfg.train.progress = False
model, _ = build(cfg, prepare(cfg))
params = [p for p in model.parameters() if p.requires_grad]
for p in params:
    p.grad = torch.randn_like(p)
for _ in range(5):
    dist.average_gradients(params)
dist.barrier()
t0 = time.perf_counter()
for _ in range(int(sys.argv[2])):
    dist.average_gradients(params)
seconds = (time.perf_counter() - t0) / int(sys.argv[2])
if dist.is_main:
    n = sum(p.numel() for p in params)
    print(json.dumps({"parameters": n, "bytes": 4 * (n + len(params)), "seconds": seconds}))
dist.close()
"""


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _train(config: Path, out: Path, processes: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "mtrs", "train", str(config), "--out", str(out), "--json"]
    if processes > 1:
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={processes}", *cmd[1:],
        ]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=_env(), stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    doc = json.loads((out / "metrics.json").read_text())
    return {"train_seconds": doc["train_seconds"], "wall_seconds": wall, "tasks": doc["tasks"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=400_000)
    ap.add_argument("--reduce-steps", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=2048, help="Global mini-batch rows.")
    ap.add_argument("--json", type=Path, default=None, help="Also write the numbers here.")
    args = ap.parse_args()

    from mtrs.datasets.quickstart import write_synth
    from mtrs.datasets.synth import SynthSpec

    root = Path(tempfile.mkdtemp(prefix="mtrs-scale-out-"))
    spec = SynthSpec(num_users=max(2000, args.events // 50), num_items=2000, num_events=args.events)
    config = write_synth(root / "data", spec, "parquet")
    base = config.read_text().replace("epochs = 4", "epochs = 1\nthreads = 1")
    base = base.replace("batch_size = 512", f"batch_size = {args.batch_size}")
    assert "threads = 1" in base
    configs = {"memory": config, "streaming": config.with_name("streaming.toml")}
    configs["memory"].write_text(base.replace("[data]", '[data]\nstreaming = "never"', 1))
    configs["streaming"].write_text(
        base.replace("[data]", '[data]\nstreaming = "always"\nchunk_rows = 65536', 1)
    )
    from mtrs.config.load import load_config

    train_rows = None
    results: dict[str, Any] = {"events": args.events, "batch_size": args.batch_size, "runs": []}
    for mode, cfg_path in configs.items():
        for processes in (1, 2):
            got = _train(cfg_path, root / f"{mode}-{processes}", processes)
            if train_rows is None:
                from mtrs.prepare import prepare

                cfg = load_config(configs["memory"])
                cfg.train.progress = False
                train_rows = len(prepare(cfg).train)  # type: ignore[arg-type]
            got |= {"mode": mode, "processes": processes,
                    "rows_per_second": train_rows / got["train_seconds"]}  # fmt: skip
            results["runs"].append(got)
            print(
                f"{mode:<9} {processes} process(es): {got['rows_per_second']:>9,.0f} rows/s "
                f"(train {got['train_seconds']:.1f} s incl. validation, "
                f"wall {got['wall_seconds']:.1f} s)",
                flush=True,
            )
    results["train_rows"] = train_rows
    script = root / "reduce.py"
    script.write_text(REDUCE)
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(script), str(configs["memory"]), str(args.reduce_steps)],
        check=True, env=_env(), capture_output=True, text=True,
    )  # fmt: skip
    reduce = json.loads(out.stdout.strip().splitlines()[-1])
    results["all_reduce"] = reduce
    print(
        f"all-reduce (2 gloo processes, loopback): {reduce['parameters']:,} parameters, "
        f"{reduce['bytes'] / 1e6:.2f} MB per step, {reduce['seconds'] * 1e3:.2f} ms per step"
    )
    for mode in configs:
        one, two = (r for r in results["runs"] if r["mode"] == mode)
        ratio = two["rows_per_second"] / one["rows_per_second"]
        print(f"{mode}: 2 processes / 1 process = {ratio:.2f}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
