"""Run under ``torchrun --nproc_per_node=2`` by ``test_distributed.py`` (not a test module).

Each rank takes its interleaved half of the same global mini-batches and trains three steps
with every architecture and every weighting method; rank 0 saves the resulting weights for
the test to compare with one process trained on the whole mini-batches.

Usage: ``torchrun … dist_step_worker.py CONFIG OUT_DIR``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from mtrs.arch import ARCHITECTURES
from mtrs.arch.registry import missing_relation
from mtrs.config.load import load_config
from mtrs.config.models import JobConfig
from mtrs.eval.evaluator import evaluate
from mtrs.job import build
from mtrs.prepare import prepare
from mtrs.train.distributed import Distributed
from mtrs.train.trainer import Trainer

WEIGHTINGS = ("fixed", "uncertainty", "dwa", "gradnorm", "pcgrad")
BATCH, STEPS = 64, 3


def combinations(cfg: JobConfig) -> list[tuple[str, str]]:
    """Every (architecture, weighting) the config can run (ESMM needs its relation)."""
    archs = [a for a in ARCHITECTURES if missing_relation(ARCHITECTURES[a], cfg.relations) is None]
    return [(a, w) for a in archs for w in WEIGHTINGS]


def main() -> None:
    config, out = Path(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)
    dist = Distributed.from_env("cpu")
    assert dist is not None and dist.world == 2
    cfg = load_config(config)
    cfg.train.progress = False
    prepared = prepare(cfg)
    for arch, weighting in combinations(cfg):
        cfg.model.architecture, cfg.train.weighting = arch, weighting
        model, tasks = build(cfg, prepared)
        trainer = Trainer(model, tasks, cfg, dist)
        sums: dict[str, float] = {}
        for step in range(STEPS):
            rows = torch.arange(step * BATCH, (step + 1) * BATCH)
            mine = prepared.train.take(rows[dist.rank :: dist.world])
            if step % 2:  # the shares from the counts every rank can see, or by all-reduce
                dist.begin_step(trainer.step_counts(mine.mask))
            else:
                whole = prepared.train.mask[rows]
                dist.set_shares(trainer.step_counts(mine.mask), trainer.step_counts(whole))
            trainer.train_step(mine, sums)
        if dist.is_main:
            state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
            state |= {f"weighting.{k}": v for k, v in trainer.weighting.state_dict().items()
                      if isinstance(v, torch.Tensor)}  # fmt: skip
            save_file(state, str(out / f"{arch}-{weighting}.safetensors"))
        dist.barrier()
    # Validation metrics from the ranks' gathered predictions, and one process's on all rows.
    assert prepared.valid is not None
    gathered = trainer.evaluate(prepared.valid)
    if dist.is_main:
        alone = evaluate(model, prepared.valid, tasks, cfg.train.eval_batch_size)
        doc = {"gathered": gathered, "alone": alone}
        (out / "metrics.json").write_text(json.dumps(doc))
    dist.close()


if __name__ == "__main__":
    main()
