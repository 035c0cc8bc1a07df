"""Task weighting: how per-task losses combine into one backward pass."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from mtrs.errors import MtrsUserError
from mtrs.train.gradient_weighting import (
    assign_flat,
    flat_grad,
    gradnorm_objective,
    last_shared_weight,
    project_conflicting,
    trainable,
)


class Weighting(nn.Module):
    """Combines task losses, runs the backward pass, and reports the weights in use.

    The total is ``extra + scale · Σ_i w_i · L_i`` with ``extra`` = λ·L_shared and
    ``scale`` = 1 − λ, the design's loss. Subclasses change how ``w_i`` are chosen (and may
    own learnable parameters, which the trainer adds to the optimizer).

    Args:
        names: Task (and relation) names, in the order of the loss dict.
        base: The configured fixed weights ``w_i``.
        shared: Parameters shared between tasks (used by gradient-based methods).
    """

    base: Tensor

    def __init__(
        self, names: list[str], base: dict[str, float], shared: list[nn.Parameter]
    ) -> None:
        super().__init__()
        self.names = names
        self.register_buffer("base", torch.tensor([base[n] for n in names], dtype=torch.float32))
        self._shared = shared
        # Under data parallelism: the rows-weighted mean over the ranks (set by the trainer).
        self.reduce: Callable[[Tensor], Tensor] | None = None

    def across_ranks(self, t: Tensor) -> Tensor:
        """``t`` averaged over the data-parallel ranks (``t`` itself in one process).

        Methods that look at per-task gradients or losses use it, so that they see the
        global mini-batch's values (and every rank decides alike).
        """
        return self.reduce(t) if self.reduce is not None else t

    def current(self) -> dict[str, float]:
        """Weights now in use, by task name."""
        return self._report(self.base)

    def backward(self, losses: dict[str, Tensor], extra: Tensor | None, scale: float) -> Tensor:
        """Backpropagate the combined loss; returns it (detached)."""
        stacked = self._stack(losses)
        total = self._total(scale * (self.base.to(stacked.device) * stacked).sum(), extra)
        total.backward()
        return total.detach()

    def end_epoch(self, epoch_losses: dict[str, float]) -> None:
        """Hook called after each epoch with the mean training loss of each task."""

    def _stack(self, losses: dict[str, Tensor]) -> Tensor:
        return torch.stack([losses[n] for n in self.names])

    @staticmethod
    def _total(task_term: Tensor, extra: Tensor | None) -> Tensor:
        return task_term + extra if extra is not None else task_term

    def _report(self, weights: Tensor) -> dict[str, float]:
        return {n: float(w) for n, w in zip(self.names, weights.tolist(), strict=True)}


class FixedWeighting(Weighting):
    """The configured weights, unchanged during training (the default)."""


class UncertaintyWeighting(Weighting):
    """Homoscedastic-uncertainty weighting (Kendall, Gal and Cipolla, CVPR 2018).

    Each task owns a learnable log-variance ``s_i = log σ_i²`` (initialised to 0) and the task
    term is ``Σ_i w_i · (exp(−s_i) · L_i + s_i)``. Its minimum over ``s_i`` is at
    ``exp(−s_i) = 1 / L_i``: a task whose loss is large gets a small weight. The same form is
    used for every task kind (the paper's ½ factors for regression only rescale ``s_i``; this
    form is the one most reimplementations use). ``s_i`` is trained by the trainer's optimizer.
    :meth:`current` reports the effective weights ``w_i · exp(−s_i)``.
    """

    def __init__(
        self, names: list[str], base: dict[str, float], shared: list[nn.Parameter]
    ) -> None:
        super().__init__(names, base, shared)
        self.log_var = nn.Parameter(torch.zeros(len(names)))

    def current(self) -> dict[str, float]:
        return self._report(self.base * torch.exp(-self.log_var.detach()))

    def backward(self, losses: dict[str, Tensor], extra: Tensor | None, scale: float) -> Tensor:
        stacked = self._stack(losses)
        s = self.log_var
        per_task = self.base * (torch.exp(-s) * stacked + s)
        total = self._total(scale * per_task.sum(), extra)
        total.backward()
        return total.detach()


class DwaWeighting(Weighting):
    """Dynamic Weight Average (Liu, Johns and Davison, CVPR 2019, eq. 1).

    For epoch t, ``w_i = K · softmax_i(r_i / T)`` with ``r_i = L_i(t−1) / L_i(t−2)`` (mean
    training losses of the previous two epochs), ``K`` the number of tasks and ``T = 2``: the
    task whose loss falls slowest gets the largest weight. The first two epochs use
    ``w_i = 1``. The configured weights multiply the result.

    Args:
        temperature: ``T``; larger values flatten the weights towards 1.
    """

    dynamic: Tensor

    def __init__(
        self,
        names: list[str],
        base: dict[str, float],
        shared: list[nn.Parameter],
        temperature: float = 2.0,
    ) -> None:
        super().__init__(names, base, shared)
        self.temperature = temperature
        self.register_buffer("dynamic", torch.ones(len(names)))
        self._history: list[Tensor] = []

    def current(self) -> dict[str, float]:
        return self._report(self.base * self.dynamic)

    def backward(self, losses: dict[str, Tensor], extra: Tensor | None, scale: float) -> Tensor:
        stacked = self._stack(losses)
        total = self._total(scale * (self.base * self.dynamic * stacked).sum(), extra)
        total.backward()
        return total.detach()

    def get_extra_state(self) -> Tensor:
        """The last two epochs' losses (a checkpoint keeps them: they set the next weights)."""
        if not self._history:
            return torch.zeros(0, len(self.names))
        return torch.stack(self._history)

    def set_extra_state(self, state: Tensor) -> None:
        self._history = list(state.unbind(0))

    def end_epoch(self, epoch_losses: dict[str, float]) -> None:
        now = torch.tensor([epoch_losses.get(n, math.nan) for n in self.names])
        self._history = [*self._history, now][-2:]
        if len(self._history) < 2:
            return
        before, last = self._history
        ratio = last / before.clamp_min(1e-12)
        # A task without a usable loss (no labelled rows) counts as neither fast nor slow.
        ratio = torch.where(torch.isfinite(ratio), ratio, torch.ones_like(ratio))
        weights = len(self.names) * torch.softmax(ratio / self.temperature, dim=0)
        self.dynamic.copy_(weights.to(self.dynamic.device))


class GradNormWeighting(Weighting):
    """GradNorm: balance the tasks' gradient norms (Chen et al., ICML 2018).

    Learnable weights ``w_i`` (initialised to 1) are moved so that the gradient norm of each
    weighted task loss on the last shared layer's weight, ``G_i = w_i · ‖∇_W L_i‖``, approaches
    ``Ḡ · r_i^α`` (``r_i``: the task's loss relative to its first-batch loss, divided by the
    mean of those ratios; ``α = 1.5``). The gradient of that objective is written into
    ``w.grad`` and the trainer's optimizer (to which the trainer adds the weighting's
    parameters) takes the step, at the model's learning rate; the network itself receives
    only the gradient of ``Σ w_i L_i`` with ``w`` held constant. Before each step the weights
    are clamped positive and renormalised to ``Σ w_i = number of tasks``. The configured
    weights multiply the balanced ones (effective weight ``base_i · w_i``).

    Without shared parameters (hard parallel) there is nothing to balance: the weights stay
    at 1 and the method behaves as ``fixed``.

    Args:
        alpha: Strength of the pull towards equal training rates.
    """

    initial: Tensor

    def __init__(
        self,
        names: list[str],
        base: dict[str, float],
        shared: list[nn.Parameter],
        alpha: float = 1.5,
    ) -> None:
        super().__init__(names, base, shared)
        self.alpha = alpha
        self.w = nn.Parameter(torch.ones(len(names)))
        self.register_buffer("initial", torch.zeros(len(names)))
        # A list, not an attribute: a Parameter attribute would register the model's layer as
        # this module's own and put it into the optimizer twice.
        layer = last_shared_weight(shared)
        self._layer: list[nn.Parameter] = [layer] if layer is not None else []

    def _normalised(self) -> Tensor:
        w = self.w.detach().clamp_min(1e-3)
        return w * (len(self.names) / w.sum())

    def current(self) -> dict[str, float]:
        return self._report(self.base * self._normalised())

    def backward(self, losses: dict[str, Tensor], extra: Tensor | None, scale: float) -> Tensor:
        stacked = self._stack(losses)
        with torch.no_grad():
            self.w.copy_(self._normalised())
        if self._layer:
            norms = torch.stack(
                [self.across_ranks(flat_grad(losses[n], self._layer)[0]).norm() for n in self.names]
            )
            observed = self.across_ranks(stacked.detach())
            with torch.no_grad():
                unset = (self.initial <= 0) & (observed > 0)
                self.initial.copy_(torch.where(unset, observed, self.initial))
            initial = torch.where(self.initial > 0, self.initial, observed)
            objective = gradnorm_objective(self.w, norms, observed, initial, self.alpha)
            (self.w.grad,) = torch.autograd.grad(objective, [self.w])
        task_term = scale * (self.base * self.w.detach() * stacked).sum()
        total = self._total(task_term, extra)
        total.backward()
        return total.detach()


class PCGradWeighting(Weighting):
    """PCGrad: project away conflicting gradient components (Yu et al., NeurIPS 2020).

    Per-task gradients of ``(1 − λ) · w_i · L_i`` on the shared parameters are computed with
    ``torch.autograd.grad``; in a random (seeded) order, each is projected onto the normal
    plane of every other task gradient it conflicts with (negative dot product), and the
    projections are summed. The shared parameters receive that sum plus the gradient of
    ``extra`` (λ · L_shared, added unprojected); every other parameter receives the plain
    gradient of the weighted sum. Without shared parameters (hard parallel) this is the plain
    weighted sum. The weights reported are the configured ones.
    """

    def __init__(
        self, names: list[str], base: dict[str, float], shared: list[nn.Parameter]
    ) -> None:
        super().__init__(names, base, shared)
        self._params = trainable(shared)
        self._generator = torch.Generator().manual_seed(0)

    def get_extra_state(self) -> Tensor:
        """The state of the generator that orders the projections (kept by checkpoints)."""
        return self._generator.get_state()

    def set_extra_state(self, state: Tensor) -> None:
        self._generator.set_state(state)

    def backward(self, losses: dict[str, Tensor], extra: Tensor | None, scale: float) -> Tensor:
        if not self._params:
            return super().backward(losses, extra, scale)
        weighted = scale * self.base * self._stack(losses)
        grads, used = [], [False] * len(self._params)
        for i in range(len(self.names)):
            g, u = flat_grad(weighted[i], self._params)
            grads.append(self.across_ranks(g))
            used = [a or b for a, b in zip(used, u, strict=True)]
        combined = project_conflicting(grads, self._generator)
        if extra is not None:
            g, u = flat_grad(extra, self._params)
            combined = combined + self.across_ranks(g)
            used = [a or b for a, b in zip(used, u, strict=True)]
        total = self._total(weighted.sum(), extra)
        total.backward()
        assign_flat(self._params, combined, used)
        return total.detach()


WeightingFactory = Callable[[list[str], dict[str, float], list[nn.Parameter]], Weighting]

WEIGHTINGS: dict[str, WeightingFactory] = {
    "fixed": FixedWeighting,
    "uncertainty": UncertaintyWeighting,
    "gradnorm": GradNormWeighting,
    "dwa": DwaWeighting,
    "pcgrad": PCGradWeighting,
}


def build_weighting(
    name: str, names: list[str], base: dict[str, float], shared: list[nn.Parameter]
) -> Weighting:
    """The weighting method registered as ``name`` (``train.weighting``)."""
    try:
        factory = WEIGHTINGS[name]
    except KeyError:
        known = ", ".join(sorted(WEIGHTINGS))
        raise MtrsUserError(f"train.weighting: unknown method '{name}' (known: {known})") from None
    return factory(names, base, shared)
