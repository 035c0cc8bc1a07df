"""CUDA path check: training step, mixed precision and throughput on a GPU, against the CPU.

Runs the quickstart job (synthetic data) on CPU and on CUDA in fp32 and bf16 and reports the
test metrics of each (they should agree closely), then times one epoch of the reference MMoE
workload (BRIEF §6 shapes, fewer rows by default) on CUDA in fp32 and bf16. Prints JSON.

    python benchmarks/gpu_check.py [--rows 200000] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mtrs.cli.data import write_synth
from mtrs.config.load import config_from_dict, load_config
from mtrs.data.synth import SynthSpec
from mtrs.data.tables import Tables
from mtrs.eval.evaluator import predict
from mtrs.pipeline import build, prepare, run_job
from mtrs.train.trainer import Trainer

VOCABS = [10, 100, 1000, 10000, 50000, 100000, 20, 200, 2000, 5, 50, 500, 5000, 30, 300, 3000]


def quality(device: str, precision: str, data_dir: Path) -> dict[str, Any]:
    """Quickstart job (mmoe) on one device/precision: test AUCs and wall time."""
    cfg = load_config(data_dir / "mtrs.toml")
    cfg.model.architecture = "mmoe"
    cfg.train.device = device
    cfg.train.precision = precision  # type: ignore[assignment]
    cfg.train.progress = False
    t0 = time.perf_counter()
    job = run_job(cfg)
    return {
        "device": device,
        "precision": precision,
        "seconds": time.perf_counter() - t0,
        "auc": {t: m.get("auc") for t, m in job.test_metrics.items()},
    }


def workload_config(precision: str) -> dict[str, Any]:
    """The reference MMoE workload as an mtrs config."""
    features = [{"name": f"c{j}", "kind": "categorical", "group": "item"} for j in range(16)]
    features += [{"name": f"n{j}", "kind": "numeric", "group": "context"} for j in range(63)]
    return {
        "data": {"interactions": "<in memory>"},
        "features": features,
        "tasks": [{"name": t, "type": "binary", "label": t} for t in ("a", "b")],
        "model": {
            "architecture": "mmoe",
            "embedding_dim": 16,
            "interactions": "none",
            "shared": {"hidden": [256, 128]},
            "tower": {"hidden": [64]},
            "experts": {"num_experts": 8},
        },
        "train": {
            "optimizer": "adam",
            "lr": 1e-3,
            "batch_size": 2048,
            "epochs": 1,
            "device": "cuda",
            "precision": precision,
            "progress": False,
        },
        "split": {"method": "random", "valid_fraction": 0.0, "test_fraction": 0.0},
    }


def throughput(rows: int, precision: str) -> dict[str, Any]:
    """Samples/s of one training epoch and of prediction for the MMoE workload on CUDA."""
    rng = np.random.default_rng(0)
    cols: dict[str, Any] = {f"c{j}": rng.integers(0, v, rows) for j, v in enumerate(VOCABS)}
    cols |= {f"n{j}": rng.normal(size=rows).astype(np.float32) for j in range(63)}
    logit = 0.3 * cols["n0"] - 0.2 * cols["n1"] + (cols["c0"] % 3 - 1) * 0.5
    cols["a"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    cols["b"] = (rng.random(rows) < 1 / (1 + np.exp(-logit + 1))).astype(np.int64)
    cols["user_id"], cols["item_id"] = cols["c5"], cols["c4"]
    cols["timestamp"] = np.arange(rows)
    cfg = config_from_dict(workload_config(precision))
    prep = prepare(cfg, tables=Tables(pd.DataFrame(cols)))
    model, tasks, rel = build(cfg, prep)
    trainer = Trainer(model, tasks, cfg, rel)
    data = prep.full.to("cuda")  # keep the rows on the GPU: the loop then never copies
    trainer.train_epoch(data.take(slice(0, 8 * 2048)), 0)  # warm-up (kernels, allocator)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    losses = trainer.train_epoch(data, 1)
    torch.cuda.synchronize()
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    predict(model, data, tasks, rel, 16384, "cuda")
    torch.cuda.synchronize()
    pred_s = time.perf_counter() - t0
    return {
        "precision": precision,
        "rows": rows,
        "train_samples_per_s": rows / train_s,
        "predict_samples_per_s": rows / pred_s,
        "final_losses": losses,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this script checks the GPU path")
    doc: dict[str, Any] = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        write_synth(data_dir, SynthSpec(num_events=100_000, seed=0))
        doc["quality"] = [
            quality("cpu", "fp32", data_dir),
            quality("cuda", "fp32", data_dir),
            quality("cuda", "bf16", data_dir),
        ]
    doc["throughput"] = [throughput(args.rows, p) for p in ("fp32", "bf16")]
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
