"""CUDA path check: training step, mixed precision and throughput on a GPU, against the CPU.

Runs the quickstart job (synthetic data) on CPU and on CUDA in fp32 and bf16 and reports the
test metrics of each (they should agree closely), then times one epoch of the reference MMoE
workload (BRIEF §6, the rows and config of the mtrs adapter in ``systems.py``) on CUDA in fp32
and bf16. Prints JSON.

    python benchmarks/gpu_check.py [--rows 200000] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import mtrs
from mtrs.config.load import config_from_dict
from mtrs.data.batch import Batch
from mtrs.data.tables import Tables
from mtrs.datasets.quickstart import write_synth
from mtrs.datasets.synth import SynthSpec
from mtrs.eval.evaluator import predict
from mtrs.job import build
from mtrs.prepare import prepare
from mtrs.train.trainer import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _workload import Workload, generate
from systems import mtrs_config, mtrs_frame


def quality(device: str, precision: str, data_dir: Path) -> dict[str, Any]:
    """Quickstart job (mmoe) on one device/precision: test AUCs and wall time."""
    cfg = mtrs.load_config(data_dir / "mtrs.toml")
    cfg.model.architecture = "mmoe"
    cfg.train.device = device
    cfg.train.precision = precision  # type: ignore[assignment]
    cfg.train.progress = False
    t0 = time.perf_counter()
    job = mtrs.train(cfg)
    return {
        "device": device,
        "precision": precision,
        "seconds": time.perf_counter() - t0,
        "auc": {t: m.get("auc") for t, m in job.test_metrics.items()},
    }


def throughput(rows: int, precision: str, device: str = "cuda") -> dict[str, Any]:
    """Samples/s of one training epoch and of prediction for the reference MMoE workload.

    The same rows and config as ``throughput.py``'s mtrs worker (``systems.py``), on ``device``.
    """
    w = Workload(rows=rows)
    raw = mtrs_config(w, "mmoe", torch.get_num_threads(), precision)
    raw["train"]["device"] = device
    cfg = config_from_dict(raw, "gpu_check.py")
    prep = prepare(cfg, tables=Tables(mtrs_frame(w, generate(w))))
    model, tasks = build(cfg, prep)
    trainer = Trainer(model, tasks, cfg)
    # The workload's split keeps every row for training; they are one batch in memory.
    assert isinstance(prep.train, Batch)
    data = prep.train.to(device)  # keep the rows on the device: the loop then never copies

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    trainer.train_epoch(data.take(slice(0, 8 * w.batch_size)), 0)  # warm-up (kernels, allocator)
    sync()
    t0 = time.perf_counter()
    losses = trainer.train_epoch(data, 1)
    sync()
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    predict(model, data, tasks, 16384, device)
    sync()
    pred_s = time.perf_counter() - t0
    return {
        "precision": precision,
        "rows": rows,
        "train_samples_per_s": rows / train_s,
        "predict_samples_per_s": rows / pred_s,
        "final_losses": losses,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None,
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
