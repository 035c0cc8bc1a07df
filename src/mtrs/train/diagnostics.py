"""Training diagnostics: cosine similarity between the tasks' gradients on shared parameters."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from mtrs.data.batch import Batch
from mtrs.train.gradient_weighting import flat_grad, pairwise_cosine, trainable

if TYPE_CHECKING:
    from mtrs.train.trainer import EpochRecord, Trainer


def shared_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The model's shared parameters that take gradients (none for hard-parallel models)."""
    return trainable(getattr(model, "shared_parameters", lambda: [])())


def gradient_cosines(losses: dict[str, Tensor], params: list[nn.Parameter]) -> dict[str, float]:
    """Pairwise cosine similarity of the tasks' loss gradients on ``params``.

    Args:
        losses: One scalar loss per task (graphs attached).
        params: The shared parameters.

    Returns:
        ``{"a|b": cosine}`` for every pair of tasks in ``losses`` order; empty without
        parameters or with fewer than two tasks. Pairs where a gradient is zero are left out.
    """
    if not params or len(losses) < 2:
        return {}
    names = list(losses)
    grads = [flat_grad(losses[n], params)[0] for n in names]
    return pairwise_cosine(names, grads)


class GradientSimilarity:
    """Tracks how much the tasks agree on the shared parameters during training.

    Every ``every_n_steps`` optimizer steps it takes up to ``batch_size`` rows of the step's
    mini-batch (``Trainer.current_batch``, already a random sample of the training rows) or,
    when attached with ``data``, draws them at random from ``data``. It runs the model on them
    in eval mode (no dropout, no auxiliary objective, no draw from the global random stream,
    so watching does not change training), takes each task loss's gradient on the shared
    parameters with ``torch.autograd.grad`` (the optimizer's gradients are untouched), and
    records the pairwise cosines. At the end of each epoch the mean cosine of each pair goes
    into ``EpochRecord.extra["grad_cosine"]`` as ``{"click|purchase": mean, ...}``; an epoch
    with no measured step is measured once at its end. Negative values mean the tasks pull
    the shared layer in opposite directions (negative transfer). Models without shared
    parameters (hard parallel) get an empty dict.

    Args:
        every_n_steps: Measure on every n-th step (the first step of training included).
        batch_size: Rows used for each measurement.
        seed: Seed of the row sampler when ``data`` is given (default: ``train.seed``).
    """

    def __init__(self, every_n_steps: int = 50, batch_size: int = 256, seed: int | None = None):
        if every_n_steps < 1 or batch_size < 1:
            raise ValueError("every_n_steps and batch_size must be at least 1")
        self.every_n_steps = every_n_steps
        self.batch_size = batch_size
        self.seed = seed
        self._data: Batch | None = None
        self._generator = torch.Generator()
        self._step = 0
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._measured = False

    def attach(self, trainer: Trainer, data: Batch | None = None) -> GradientSimilarity:
        """Register with ``trainer`` (one step and one epoch callback).

        Args:
            trainer: The trainer to watch.
            data: Rows to sample from (default: the mini-batch of the current step).

        Returns:
            This tracker.
        """
        self._data = data
        self._generator.manual_seed(trainer.cfg.seed if self.seed is None else self.seed)
        trainer.step_callbacks.append(self.on_step)
        trainer.epoch_callbacks.append(self.on_epoch)
        return self

    def _sample(self, trainer: Trainer) -> Batch | None:
        if self._data is not None:
            if len(self._data) == 0:
                return None
            index = torch.randperm(len(self._data), generator=self._generator)
            return self._data.take(index[: self.batch_size]).to(trainer.device)
        batch: Batch | None = getattr(trainer, "current_batch", None)
        if batch is None or len(batch) == 0:
            return None
        return batch.take(torch.arange(min(len(batch), self.batch_size), device=trainer.device))

    def measure(self, trainer: Trainer) -> dict[str, float]:
        """Pairwise cosines of the task gradients on one sample of rows, now."""
        params = shared_parameters(trainer.model)
        batch = self._sample(trainer) if params else None
        if batch is None:
            return {}
        model = trainer.model
        was_training = model.training
        model.eval()
        try:
            losses, _, _ = trainer.task_losses(batch)
            return gradient_cosines(losses, params)
        finally:
            model.train(was_training)

    def _record(self, cosines: dict[str, float]) -> None:
        self._measured = True
        for key, value in cosines.items():
            self._sums[key] = self._sums.get(key, 0.0) + value
            self._counts[key] = self._counts.get(key, 0) + 1

    def on_step(self, trainer: Trainer, losses: dict[str, Tensor]) -> None:
        """Step callback: measure on every n-th step."""
        if self._step % self.every_n_steps == 0:
            self._record(self.measure(trainer))
        self._step += 1

    def on_epoch(self, trainer: Trainer, record: EpochRecord) -> None:
        """Epoch callback: write the epoch's mean cosines into ``record.extra``."""
        if not self._measured:
            self._record(self.measure(trainer))
        record.extra["grad_cosine"] = {k: self._sums[k] / self._counts[k] for k in self._sums}
        self._sums, self._counts, self._measured = {}, {}, False


def attach(trainer: Trainer, every_n_steps: int = 50, batch_size: int = 256) -> GradientSimilarity:
    """Track gradient similarity on ``trainer`` (a shortcut for ``GradientSimilarity.attach``)."""
    return GradientSimilarity(every_n_steps, batch_size).attach(trainer)
