"""The trainer: optimizer, device, precision, epochs, validation, early stopping, best state."""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor, nn

from mtrs.config.models import JobConfig, TrainConfig
from mtrs.data.batch import Batch
from mtrs.errors import MtrsUserError
from mtrs.eval.evaluator import evaluate, predict
from mtrs.eval.metrics import is_higher_better
from mtrs.outdir import pause_point
from mtrs.tasks.taskset import TaskSet
from mtrs.train.checkpoint import Checkpoints, LoopState, Snapshot, weighting_state
from mtrs.train.distributed import Distributed
from mtrs.train.weighting import Weighting, build_weighting


@dataclass
class EpochRecord:
    """What one epoch did: mean training losses, validation metrics, weights, time."""

    epoch: int
    train_loss: dict[str, float]
    valid: dict[str, dict[str, float]]
    weights: dict[str, float]
    seconds: float
    extra: dict[str, object] = field(default_factory=dict)


@dataclass
class TrainResult:
    """The epochs run, the epoch whose state was kept, and its validation metrics."""

    history: list[EpochRecord]
    best_epoch: int
    best_valid: dict[str, dict[str, float]]
    monitor: str | None
    seconds: float
    warnings: list[str] = field(default_factory=list)


class BatchStream(Protocol):
    """Training rows that do not fit in memory: encoded chunks, re-read every epoch."""

    buffer_rows: int

    def batches(self, epoch: int) -> Iterator[Batch]:
        """The training rows of one epoch, chunk by chunk, in file order."""
        ...


EpochCallback = Callable[["Trainer", EpochRecord], None]
StepCallback = Callable[["Trainer", dict[str, Tensor]], None]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that a CPU re-run gives identical results."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Trainer:
    """Trains a model on pre-built tensors; the model never trains itself.

    Mini-batches are index slices of one :class:`Batch` built once per split, so the loop
    runs no per-row Python. Validation runs after every epoch through the same evaluator as
    ``mtrs evaluate``; early stopping and the kept state use the validation split only.

    Args:
        model: The multi-task model.
        tasks: Its tasks and their relations (losses, label columns, metrics).
        cfg: The job config (``[train]`` and ``[model].lambda_shared`` are used).
        dist: This process's place in a data-parallel job (None: one process); see
            :mod:`mtrs.train.distributed`.
    """

    def __init__(
        self, model: nn.Module, tasks: TaskSet, cfg: JobConfig, dist: Distributed | None = None
    ) -> None:
        self.cfg: TrainConfig = cfg.train
        self.lam = cfg.model.lambda_shared
        self.dist = dist
        self.device = dist.device if dist is not None else resolve_device(self.cfg.device)
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        self.model = model.to(self.device)
        if dist is not None:
            dist.broadcast_module(self.model)  # every rank starts from rank 0's weights
        self.tasks = tasks
        base = tasks.loss_weights()
        shared: list[nn.Parameter] = getattr(model, "shared_parameters", lambda: [])()
        self.weighting: Weighting = build_weighting(
            self.cfg.weighting, list(base), base, shared
        ).to(self.device)
        if dist is not None:
            self.weighting.reduce = dist.mean
        params = list(model.parameters()) + list(self.weighting.parameters())
        self._params = params
        self.optimizer = self._optimizer(params)
        self.epoch_callbacks: list[EpochCallback] = []
        self.step_callbacks: list[StepCallback] = []
        # The mini-batch of the step in progress, for step callbacks that recompute gradients.
        self.current_batch: Batch | None = None
        self.monitor: str | None = self.cfg.early_stop or tasks.default_monitor()
        self.stop_requested = False
        # Share of training done (0 … 1) and optimizer steps taken, for the learning rate.
        self.progress_fraction = 0.0
        self.steps_done = 0
        # The loop's position and early-stopping state (what a checkpoint saves).
        self.loop = LoopState()
        self.best_state: dict[str, Tensor] | None = None
        self.checkpoints: Checkpoints | None = None
        self._epoch_start = time.perf_counter()
        # A one-row batch a rank trains with weight 0 when it has no rows in a step.
        self._stand_in: Batch | None = None

    def _optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        c = self.cfg
        # The fused kernels update every tensor in one pass (≈4× faster steps on CPU).
        if c.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay, fused=True)
        if c.optimizer == "adam":
            return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay, fused=True)
        return torch.optim.SGD(params, lr=c.lr, weight_decay=c.weight_decay, momentum=0.9)

    def lr_factor(self) -> float:
        """The schedule's multiplier of ``train.lr`` at the current point of training."""
        p = min(max(self.progress_fraction, 0.0), 1.0)
        if self.cfg.lr_schedule == "linear":
            factor = 1.0 - p
        elif self.cfg.lr_schedule == "cosine":
            factor = 0.5 * (1.0 + math.cos(math.pi * p))
        else:
            factor = 1.0
        if self.cfg.warmup_steps:
            factor *= min(1.0, (self.steps_done + 1) / self.cfg.warmup_steps)
        return factor

    def _set_lr(self) -> None:
        lr = self.cfg.lr * self.lr_factor()
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _autocast(self) -> torch.autocast:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.cfg.precision)
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def task_losses(self, batch: Batch) -> tuple[dict[str, Tensor], Tensor | None, object]:
        """Forward one batch: per-task losses, the shared auxiliary loss and the model output."""
        with self._autocast():
            out = self.model(batch)
        logits = {k: v.float() for k, v in out.logits.items()}
        losses = self.tasks.losses(logits, batch)
        shared = out.shared_loss.float() if out.shared_loss is not None else None
        return losses, shared, out

    def train_epoch(
        self, data: Batch, epoch: int, progress: Progress | None = None
    ) -> dict[str, float]:
        """One pass over ``data`` in shuffled mini-batches; returns mean loss per task.

        The epoch's permutation depends only on the seed and the epoch, so a run resumed at
        step ``k`` of the epoch (:attr:`loop`) trains on exactly the batches it would have.
        """
        self.model.train()
        n = len(data)
        gen = torch.Generator().manual_seed(self.cfg.seed * 1000 + epoch)
        perm = torch.randperm(n, generator=gen)
        bs = self.cfg.batch_size
        steps = math.ceil(n / bs)
        sums = self.loop.sums
        if self.dist is not None:
            self._stand_in = data.take(slice(0, 1))
        task_id = progress.add_task(f"epoch {epoch}", total=steps, loss="") if progress else None
        for step in range(self.loop.step, steps):
            self.progress_fraction = (epoch - 1 + step / steps) / self.cfg.epochs
            rows = perm[step * bs : (step + 1) * bs]
            if self.dist is None:
                total = self.train_step(data.take(rows), sums)
            else:
                # Each rank trains on its interleaved share of the global mini-batch; every
                # rank holds the rows, so the global batch's counts need no collective.
                mine = rows[self.dist.rank :: self.dist.world]
                self.dist.set_shares(
                    self.step_counts(data.mask[mine]), self.step_counts(data.mask[rows])
                )
                total = self.train_step(self._or_stand_in(data, mine), sums)
            self._after_step(last=step == steps - 1)
            if (
                progress is not None
                and task_id is not None
                and (step % 10 == 0 or step == steps - 1)
            ):
                progress.update(task_id, completed=step + 1, loss=f"loss {total:.4f}")
        return self._epoch_means(sums, steps)

    def _or_stand_in(self, data: Batch, rows: Tensor) -> Batch:
        if len(rows) or self._stand_in is None:
            return data.take(rows)
        return self._stand_in

    def _epoch_means(self, sums: dict[str, float], steps: int) -> dict[str, float]:
        """Mean loss per step; the ranks' shares are summed into the global batch's means."""
        if self.dist is not None:
            sums = self.dist.sum_floats(sums)
        return {k: v / max(steps, 1) for k, v in sums.items()}

    def step_counts(self, mask: Tensor) -> dict[str, float]:
        """Rows of a (share of a) mini-batch, per loss term and in all (``"rows"``)."""
        return {"rows": float(len(mask)), **self.tasks.loss_rows(mask)}

    def train_step(self, batch: Batch, sums: dict[str, float]) -> float:
        """One optimizer step on a mini-batch; adds its losses to ``sums``, returns the total.

        Under data parallelism ``batch`` is this rank's share of the global mini-batch (or a
        stand-in with share 0), the caller has set the shares of the step
        (:meth:`Distributed.set_shares` or :meth:`Distributed.begin_step`), and every rank
        calls this once per global step.
        """
        batch = batch.to(self.device, non_blocking=True)
        self.current_batch = batch
        losses, shared, _ = self.task_losses(batch)
        if self.dist is not None:
            # Each loss term times this rank's share of the term's rows in the global step.
            shares = self.dist.shares
            losses = {k: v * shares[k] for k, v in losses.items()}
            shared = shared * shares["rows"] if shared is not None else None
        extra = self.lam * shared if shared is not None and self.lam > 0 else None
        self.optimizer.zero_grad(set_to_none=True)
        total = self.weighting.backward(losses, extra, 1.0 - self.lam)
        share = 1.0
        if self.dist is not None:
            self.dist.average_gradients(self._params)
            share = 1.0 / self.dist.world  # the scaled terms of all ranks sum to the global
        self._set_lr()
        self.optimizer.step()
        self.steps_done += 1
        for cb in self.step_callbacks:
            cb(self, losses)
        # Under data parallelism each rank adds its share; the epoch's end sums the ranks.
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach()) * share
        sums["total"] = sums.get("total", 0.0) + float(total) * share
        return float(total)

    def train_stream_epoch(
        self, data: BatchStream, epoch: int, progress: Progress | None = None
    ) -> dict[str, float]:
        """One pass over streamed chunks, shuffled within a buffer of ``data.buffer_rows``.

        Chunks fill the buffer; a seeded permutation of the buffer gives full mini-batches and
        the rows left over are carried into the next buffer. When the buffer holds every row,
        the permutation and so the training equal :meth:`train_epoch`'s. A run resumed at
        step ``k`` of the epoch re-reads the stream and skips its first ``k`` batches, which
        the same seeded permutations make the same batches. Under data parallelism every rank
        reads its own chunks (``data.shard``) in batches of its share of the global batch, and
        the steps go on while any rank has rows (the others train a stand-in with weight 0).
        """
        self.model.train()
        sums = self.loop.sums
        steps = 0
        skip = self.loop.step
        # The stream's length is unknown until it ends: the schedule moves once per epoch.
        self.progress_fraction = (epoch - 1) / self.cfg.epochs
        task_id = progress.add_task(f"epoch {epoch}", total=None, loss="") if progress else None
        batches = self._stream_batches(data, epoch)
        while True:
            batch = next(batches, None)
            if steps < skip:
                steps += 1
                continue
            if self.dist is None:
                if batch is None:
                    break
            else:
                # One collective: every rank's counts; none with rows left ends the epoch.
                counts = self.step_counts(
                    batch.mask if batch is not None else torch.zeros(0, 0, dtype=torch.bool)
                )
                if not self.dist.begin_step(counts):
                    break
                if batch is None:
                    if self._stand_in is None:
                        raise MtrsUserError(
                            f"rank {self.dist.rank} of {self.dist.world} got no training rows "
                            "(fewer chunks than processes); lower data.chunk_rows"
                        )
                    batch = self._stand_in
            steps += 1
            total = self.train_step(batch, sums)
            self._after_step(last=False)
            if progress is not None and task_id is not None and steps % 10 == 0:
                progress.update(task_id, completed=steps, loss=f"loss {total:.4f}")
        return self._epoch_means(sums, steps)

    def _stream_batches(self, data: BatchStream, epoch: int) -> Iterator[Batch]:
        """The mini-batches of a streamed epoch: buffers of chunks, each shuffled (seeded)."""
        gen = torch.Generator().manual_seed(self.cfg.seed * 1000 + epoch)
        bs = self.cfg.batch_size
        if self.dist is not None:
            bs = self.dist.local_batch_size(bs)
        parts: list[Batch] = []
        held = 0
        chunks = data.batches(epoch)
        done = False
        while not done:
            chunk = next(chunks, None)
            if chunk is not None and len(chunk):
                parts.append(chunk)
                held += len(chunk)
                if self._stand_in is None and self.dist is not None:
                    self._stand_in = chunk.take(slice(0, 1))
            done = chunk is None
            if held == 0 or (not done and held < data.buffer_rows):
                continue
            buffer = Batch.concat(parts) if len(parts) > 1 else parts[0]
            perm = torch.randperm(held, generator=gen)
            full = held if done else held - held % bs
            for start in range(0, full, bs):
                yield buffer.take(perm[start : start + bs])
            parts = [buffer.take(perm[full:])] if full < held else []
            held -= full

    # ------------------------------------------------------------------ checkpoints

    def _after_step(self, last: bool) -> None:
        """Count the step; write a checkpoint every ``checkpoint_every`` steps (not at the
        epoch's last step, whose checkpoint follows its validation)."""
        self.loop.step += 1
        self.loop.steps_done = self.steps_done
        if self.checkpoints is None:
            return
        pause_point(f"step:{self.steps_done}")  # test hook (kill-and-resume tests)
        every = self.cfg.checkpoint_every
        if every and not last and self.steps_done % every == 0:
            self._save_checkpoint()

    def _save_checkpoint(self) -> None:
        assert self.checkpoints is not None
        self.loop.epoch_seconds = time.perf_counter() - self._epoch_start
        self.checkpoints.save(
            Snapshot(
                self.loop,
                self.model.state_dict(),
                self.best_state,
                weighting_state(self.weighting),
                self.optimizer.state_dict(),
            )
        )

    def _restore(self, snap: Snapshot) -> None:
        self.model.load_state_dict(snap.model)
        self.weighting.load_state_dict(snap.weighting, strict=False)
        self.optimizer.load_state_dict(snap.optimizer)
        self.best_state = snap.best
        self.loop = snap.loop
        self.steps_done = snap.loop.steps_done

    def fit(
        self,
        train: Batch | BatchStream,
        valid: Batch | None = None,
        checkpoints: Checkpoints | None = None,
    ) -> TrainResult:
        """Train for ``epochs`` with validation and early stopping; keeps the best state.

        Args:
            train: The training rows, or a stream of them (data larger than memory).
            valid: The validation rows (early stopping and model selection use these only).
            checkpoints: Where to write checkpoints (every ``train.checkpoint_every`` steps
                and at each epoch's end); when it holds one, training continues from the
                latest exactly as the uninterrupted run would have (same batches, random
                numbers, optimizer and early-stopping state).

        Returns:
            The training history and the kept epoch.
        """
        # Ranks draw different dropout and id-dropout masks (rank 0 draws one process's).
        seed_everything(self.cfg.seed + (self.dist.rank if self.dist is not None else 0))
        self.loop = LoopState()
        self.best_state = None
        self.checkpoints = checkpoints
        latest = checkpoints.latest() if checkpoints is not None else None
        if checkpoints is not None and latest is not None:
            self._restore(checkpoints.load(latest))
        loop = self.loop
        start = time.perf_counter() - sum(r["seconds"] for r in loop.history) - loop.epoch_seconds
        monitor = self.monitor if valid is not None else None
        columns = [
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[loss]}"),
            TimeElapsedColumn(),
        ]
        with Progress(*columns, disable=not self.cfg.progress, transient=True) as progress:
            while not loop.done and loop.epoch <= self.cfg.epochs:
                epoch = loop.epoch
                self._epoch_start = time.perf_counter() - loop.epoch_seconds
                losses = (
                    self.train_epoch(train, epoch, progress)
                    if isinstance(train, Batch)
                    else self.train_stream_epoch(train, epoch, progress)
                )
                self.weighting.end_epoch(losses)
                metrics = self.evaluate(valid) if valid is not None else {}
                rec = EpochRecord(
                    epoch, losses, metrics, self.weighting.current(),
                    time.perf_counter() - self._epoch_start,
                )  # fmt: skip
                for cb in self.epoch_callbacks:
                    cb(self, rec)
                loop.history.append(asdict(rec))
                if monitor is None:
                    loop.best_epoch, loop.best_valid = epoch, metrics
                else:
                    value = self._monitor_value(metrics, monitor)
                    if value > loop.best_value:
                        loop.best_value, loop.best_epoch, loop.best_valid = value, epoch, metrics
                        loop.bad_epochs = 0
                        self.best_state = copy.deepcopy(self.model.state_dict())
                    else:
                        loop.bad_epochs += 1
                        loop.done = loop.bad_epochs > self.cfg.patience
                loop.done = loop.done or self.stop_requested or epoch == self.cfg.epochs
                loop.epoch, loop.step, loop.sums, loop.epoch_seconds = epoch + 1, 0, {}, 0.0
                if self.checkpoints is not None:
                    self._epoch_start = time.perf_counter()
                    self._save_checkpoint()
        history = [EpochRecord(**r) for r in loop.history]
        best_epoch, best_valid = loop.best_epoch, loop.best_valid
        warnings = []
        if monitor is not None and self.best_state is None and history:
            # The monitor was undefined at every epoch (e.g. one class in the validation
            # labels): no epoch could be chosen, so the last one is kept and said so.
            best_epoch, best_valid = history[-1].epoch, history[-1].valid
            warnings.append(
                f"train.early_stop: '{monitor}' is undefined on the validation split at every "
                f"epoch (its labels have one class, or no rows count); no early stopping, "
                f"the last epoch ({best_epoch}) is kept"
            )
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        seconds = time.perf_counter() - start
        return TrainResult(history, best_epoch, best_valid, monitor, seconds, warnings)

    @staticmethod
    def _monitor_value(metrics: dict[str, dict[str, float]], monitor: str) -> float:
        task, metric = monitor.split("/", 1)
        value = metrics.get(task, {}).get(metric, math.nan)
        if math.isnan(value):
            return -math.inf
        return value if is_higher_better(metric) else -value

    def evaluate(self, data: Batch) -> dict[str, dict[str, float]]:
        """Metrics of the current model on ``data`` (the shared evaluation path).

        Under data parallelism each rank predicts its share of the rows and the predictions
        of all ranks are gathered before the metrics: they equal one process's exactly, on
        every rank (so early stopping decides alike everywhere).
        """
        bs = self.cfg.eval_batch_size
        if self.dist is None:
            return evaluate(self.model, data, self.tasks, bs, self.device)
        part = data.take(self.dist.shard(len(data)))
        preds = self.dist.gather_rows(predict(self.model, part, self.tasks, bs, self.device))
        return self.tasks.metrics(preds, data)
