"""The systems under test on the reference workload: one adapter per system.

Each ``run_*`` trains one epoch of the workload's MMoE through the system's own training API
and predicts over all rows through its own prediction API, timing both (wall clock, the main
thread's CPU time and the preemptions), and returns its numbers as a dict. ``throughput.py``
runs each in a fresh process and compares them; ``step_breakdown.py`` and ``gpu_check.py``
reuse the mtrs set-up (:func:`mtrs_config`, :func:`mtrs_frame`, :func:`mtrs_setup`).

Timed: the whole epoch loop (batching, forward, backward, optimizer step) and prediction.
Not timed: data generation, the library's own data preparation (mtrs' processor fit and
encode) and model construction.
"""

from __future__ import annotations

import contextlib
import resource
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from _workload import Data, Workload, mmoe_flops

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

    from mtrs.config.models import JobConfig
    from mtrs.data.batch import Batch
    from mtrs.prepare import Prepared
    from mtrs.tasks.taskset import TaskSet
    from mtrs.train.trainer import Trainer

SYSTEMS = ("mtrs", "torch-rechub", "deepctr")


# ----- measuring --------------------------------------------------------------------------------


def _auc(labels: np.ndarray, pred: np.ndarray) -> list[float]:
    from sklearn.metrics import roc_auc_score

    return [float(roc_auc_score(labels[:, t], pred[:, t])) for t in range(labels.shape[1])]


def _timed(fn: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    """``fn()`` with its wall time, this (main) thread's CPU time and the preemptions.

    Involuntary context switches count how often other work took a core from this process:
    near zero on an idle machine, thousands on a busy one.
    """
    s0 = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw
    c0, t0 = time.thread_time(), time.perf_counter()
    out = fn()
    wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
    preempted = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw - s0
    return out, {"wall": wall, "main_cpu": cpu, "preempted": preempted}


def _times(train: dict[str, float], predict: dict[str, float]) -> dict[str, float]:
    return {
        "train_seconds": train["wall"],
        "train_main_cpu_seconds": train["main_cpu"],
        "predict_seconds": predict["wall"],
        "predict_main_cpu_seconds": predict["main_cpu"],
        "train_preemptions": train["preempted"],
        "predict_preemptions": predict["preempted"],
    }


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


# ----- mtrs -------------------------------------------------------------------------------------


def mtrs_config(w: Workload, arch: str, threads: int, precision: str = "fp32") -> dict[str, Any]:
    """The workload as an mtrs job config (a dict for ``config_from_dict``), on the CPU.

    The split keeps every row for training (no validation or test rows).
    """
    groups = ["user"] * 6 + ["item"] * 6 + ["context"] * 4
    features: list[dict[str, Any]] = [
        {"name": f"c{j}", "kind": "categorical", "group": groups[j]} for j in range(len(w.vocabs))
    ]
    features += [
        {"name": f"n{j}", "kind": "numeric", "group": "context"} for j in range(w.num_numeric)
    ]
    return {
        "data": {"interactions": "<synthetic throughput workload>"},
        "features": features,
        "tasks": [{"name": t, "type": "binary", "label": f"label_{t}"} for t in w.tasks],
        "model": {
            "architecture": arch,
            "embedding_dim": w.embedding_dim,
            "interactions": "none",
            "shared": {"hidden": list(w.expert_hidden)},
            "tower": {"hidden": list(w.tower_hidden)},
            "experts": {"num_experts": w.num_experts},
        },
        "train": {
            "optimizer": "adam",
            "lr": w.lr,
            "batch_size": w.batch_size,
            "epochs": w.epochs,
            "eval_batch_size": w.predict_batch_size,
            "device": "cpu",
            "threads": threads,
            "precision": precision,
            "seed": w.seed,
            "progress": False,
        },
        "split": {"method": "random", "valid_fraction": 0.0, "test_fraction": 0.0},
    }


def mtrs_frame(w: Workload, data: Data) -> pd.DataFrame:
    """The workload's rows as the interactions table of :func:`mtrs_config`."""
    import pandas as pd

    cols: dict[str, np.ndarray] = {f"c{j}": data.cat[:, j] for j in range(len(w.vocabs))}
    cols |= {f"n{j}": data.num[:, j] for j in range(w.num_numeric)}
    cols |= {f"label_{t}": data.labels[:, i] for i, t in enumerate(w.tasks)}
    cols["user_id"] = data.cat[:, 5]
    cols["item_id"] = data.cat[:, 4]
    cols["timestamp"] = np.arange(w.rows, dtype=np.int64)
    return pd.DataFrame(cols)


@dataclass
class MtrsSetup:
    """An mtrs job on the workload, made ready to train.

    Attributes:
        rows: The prepared training rows, in memory: every row of the workload (its split
            has no validation or test rows).
    """

    cfg: JobConfig
    prepared: Prepared
    model: nn.Module
    tasks: TaskSet
    trainer: Trainer
    rows: Batch
    params: int


def mtrs_setup(
    w: Workload, data: Data, arch: str, threads: int, precision: str = "fp32"
) -> MtrsSetup:
    """Everything up to training: config, prepare, build (model and task set), trainer."""
    import mtrs
    from mtrs.config.load import config_from_dict
    from mtrs.data.batch import Batch
    from mtrs.data.tables import Tables
    from mtrs.job import build
    from mtrs.model import count_parameters
    from mtrs.prepare import prepare
    from mtrs.train.trainer import Trainer

    if arch not in mtrs.ARCHITECTURES:
        known = ", ".join(sorted(mtrs.ARCHITECTURES))
        raise SystemExit(
            f"mtrs: architecture '{arch}' is not registered in this mtrs (known: {known}); "
            "pass --mtrs-arch with one of those"
        )
    cfg = config_from_dict(mtrs_config(w, arch, threads, precision), "throughput.py")
    prep = prepare(cfg, tables=Tables(mtrs_frame(w, data)))
    assert isinstance(prep.train, Batch), "the workload's frame is prepared in memory"
    model, tasks = build(cfg, prep)
    trainer = Trainer(model, tasks, cfg)
    return MtrsSetup(cfg, prep, model, tasks, trainer, prep.train, count_parameters(model))


def run_mtrs(
    w: Workload, data: Data, threads: int, arch: str, precision: str = "fp32"
) -> dict[str, Any]:
    """mtrs: ``Trainer.train_epoch`` over the prepared rows, then ``evaluator.predict``."""
    import mtrs
    from mtrs.eval.evaluator import predict

    s = mtrs_setup(w, data, arch, threads, precision)
    _, train_t = _timed(lambda: s.trainer.train_epoch(s.rows, 1))
    preds, pred_t = _timed(lambda: predict(s.model, s.rows, s.tasks, w.predict_batch_size, "cpu"))
    pred = np.stack([preds[t] for t in w.tasks], axis=1)
    labels = s.rows.labels.numpy()
    if arch == "mmoe":
        flops: int | None = mmoe_flops(w).train
    elif arch == "shared_bottom":
        flops = mmoe_flops(w, num_experts=1, gated=False).train
    else:
        flops = None
    return {
        "version": mtrs.__version__,
        "architecture": arch if precision == "fp32" else f"{arch}, {precision}",
        "precision": precision,
        **_times(train_t, pred_t),
        "auc": _auc(labels, pred),
        "params": s.params,
        "train_flops_per_sample": flops,
    }


def profile_mtrs(
    w: Workload, data: Data, threads: int, arch: str, top: int, shapes: bool = False
) -> dict[str, Any]:
    """The top ``top`` ops of one mtrs training epoch under torch.profiler, by self CPU time.

    ``ops`` groups by op name; with ``shapes``, ``ops_by_shape`` groups by op and input
    shapes, which tells the experts' matmuls from the towers' and the forward from the
    backward (recording shapes slows the profiled epoch, mostly its large elementwise ops).
    """
    import torch
    from torch.profiler import ProfilerActivity, profile

    s = mtrs_setup(w, data, arch, threads)
    rows, trainer = s.rows, s.trainer
    # Warm up on a few batches first, so that one-off costs (first touch of the big buffers,
    # Adam's state, oneDNN set-up) do not inflate a short profile.
    trainer.train_epoch(rows.take(torch.arange(min(len(rows), 4 * w.batch_size))), 0)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=shapes) as prof:
        t0 = time.perf_counter()
        trainer.train_epoch(rows, 1)
        seconds = time.perf_counter() - t0
    by_name = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in by_name) or 1.0

    def top_ops(events: Any, shapes: bool) -> list[dict[str, Any]]:
        best = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
        return [
            {
                "op": e.key,
                **({"shapes": str(e.input_shapes)} if shapes else {}),
                "calls": int(e.count),
                "self_cpu_ms": e.self_cpu_time_total / 1e3,
                "share": e.self_cpu_time_total / total,
            }
            for e in best
        ]

    out: dict[str, Any] = {
        "profiled_seconds": seconds,
        "total_self_cpu_ms": total / 1e3,
        "ops": top_ops(by_name, False),
    }
    if shapes:
        out["ops_by_shape"] = top_ops(prof.key_averages(group_by_input_shape=True), True)
    return out


# ----- torch-rechub -----------------------------------------------------------------------------


def run_rechub(w: Workload, data: Data, threads: int) -> dict[str, Any]:
    """torch-rechub: ``MMOE`` trained by ``MTLTrainer.train_one_epoch`` (its ``fit`` loop body).

    ``fit`` adds a validation pass and a ``torch.save`` per epoch; timing ``train_one_epoch``
    leaves those out, so the comparison favours torch-rechub slightly.
    """
    import torch
    import torch_rechub
    from torch.utils.data import DataLoader
    from torch_rechub.basic.features import DenseFeature, SparseFeature
    from torch_rechub.models.multi_task import MMOE
    from torch_rechub.trainers import MTLTrainer
    from torch_rechub.utils.data import DataGenerator, PredictDataset

    torch.manual_seed(w.seed)
    features: list[Any] = [
        SparseFeature(f"c{j}", vocab_size=v, embed_dim=w.embedding_dim)
        for j, v in enumerate(w.vocabs)
    ]
    features += [DenseFeature(f"n{j}") for j in range(w.num_numeric)]
    x = {f"c{j}": np.ascontiguousarray(data.cat[:, j]) for j in range(len(w.vocabs))}
    x |= {f"n{j}": np.ascontiguousarray(data.num[:, j]) for j in range(w.num_numeric)}
    task_types = ["classification"] * len(w.tasks)
    model = MMOE(
        features,
        task_types,
        n_expert=w.num_experts,
        expert_params={"dims": list(w.expert_hidden)},
        tower_params_list=[{"dims": list(w.tower_hidden)} for _ in w.tasks],
    )
    with tempfile.TemporaryDirectory() as tmp:
        trainer = MTLTrainer(
            model,
            task_types,
            optimizer_params={"lr": w.lr, "weight_decay": 0.0},
            n_epoch=w.epochs,
            device="cpu",
            model_path=tmp,
        )
        train_dl, _, _ = DataGenerator(x, data.labels).generate_dataloader(
            x_val=x, y_val=data.labels, x_test=x, y_test=data.labels, batch_size=w.batch_size
        )
        _, train_t = _timed(lambda: trainer.train_one_epoch(train_dl))
        pred_dl = DataLoader(PredictDataset(x), batch_size=w.predict_batch_size, shuffle=False)
        preds, pred_t = _timed(lambda: trainer.predict(model, pred_dl))
    pred = np.asarray(preds, dtype=np.float64)
    return {
        "version": getattr(torch_rechub, "__version__", _dist_version("torch-rechub")),
        "architecture": "MMOE",
        **_times(train_t, pred_t),
        "auc": _auc(data.labels, pred),
        "params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "train_flops_per_sample": mmoe_flops(w).train,
    }


# ----- DeepCTR-Torch ----------------------------------------------------------------------------


@contextlib.contextmanager
def no_version_check() -> Iterator[None]:
    """deepctr-torch asks PyPI for its latest version in a thread on import; make that fail fast."""
    import requests

    def refuse(*_a: object, **_k: object) -> None:
        raise requests.ConnectionError("benchmark: no network calls")

    original = requests.get
    requests.get = refuse  # type: ignore[assignment]
    try:
        yield
        for t in threading.enumerate():
            if t is not threading.main_thread():
                t.join(timeout=5)
    finally:
        requests.get = original


def run_deepctr(w: Workload, data: Data, threads: int) -> dict[str, Any]:
    """DeepCTR-Torch: ``MMOE.compile`` + ``MMOE.fit`` for one epoch, then ``MMOE.predict``.

    Its defaults add L2 penalties on embeddings (1e-5) that mtrs and torch-rechub do not have;
    they are set to 0 here, and the gates are linear (``gate_dnn_hidden_units=()``) as in
    the MMoE paper and in mtrs.
    """
    import torch

    with no_version_check():
        import deepctr_torch
        from deepctr_torch.inputs import DenseFeat, SparseFeat
        from deepctr_torch.models import MMOE

    columns: list[Any] = [
        SparseFeat(f"c{j}", vocabulary_size=v, embedding_dim=w.embedding_dim)
        for j, v in enumerate(w.vocabs)
    ]
    columns += [DenseFeat(f"n{j}", 1) for j in range(w.num_numeric)]
    model = MMOE(
        columns,
        num_experts=w.num_experts,
        expert_dnn_hidden_units=w.expert_hidden,
        gate_dnn_hidden_units=(),
        tower_dnn_hidden_units=w.tower_hidden,
        l2_reg_linear=0.0,
        l2_reg_embedding=0.0,
        l2_reg_dnn=0.0,
        seed=w.seed,
        task_types=tuple("binary" for _ in w.tasks),
        task_names=w.tasks,
        device="cpu",
    )
    model.compile(
        torch.optim.Adam(model.parameters(), lr=w.lr),
        loss=["binary_crossentropy"] * len(w.tasks),
    )
    x = {f"c{j}": data.cat[:, j] for j in range(len(w.vocabs))}
    x |= {f"n{j}": data.num[:, j] for j in range(w.num_numeric)}
    _, train_t = _timed(
        lambda: model.fit(x, data.labels, batch_size=w.batch_size, epochs=w.epochs, verbose=0)
    )
    pred, pred_t = _timed(lambda: model.predict(x, batch_size=w.predict_batch_size))
    return {
        "version": deepctr_torch.__version__,
        "architecture": "MMOE",
        **_times(train_t, pred_t),
        "auc": _auc(data.labels, np.asarray(pred)),
        "params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "train_flops_per_sample": mmoe_flops(w).train,
    }


def run_system(
    name: str, w: Workload, data: Data, threads: int, arch: str, precision: str = "fp32"
) -> dict[str, Any]:
    """Run one system by name (``arch`` and ``precision`` apply to mtrs only)."""
    if name == "mtrs":
        return run_mtrs(w, data, threads, arch, precision)
    if name == "torch-rechub":
        return run_rechub(w, data, threads)
    if name == "deepctr":
        return run_deepctr(w, data, threads)
    raise SystemExit(f"unknown system '{name}' (known: {', '.join(SYSTEMS)})")
