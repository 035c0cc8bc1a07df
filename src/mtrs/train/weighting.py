"""Task weighting: how per-task losses combine into one backward pass."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from mtrs.errors import MtrsUserError


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

    def __init__(
        self, names: list[str], base: dict[str, float], shared: list[nn.Parameter]
    ) -> None:
        super().__init__()
        self.names = names
        self.register_buffer("base", torch.tensor([base[n] for n in names], dtype=torch.float32))
        self._shared = shared

    def current(self) -> dict[str, float]:
        """Weights now in use, by task name."""
        return {n: float(w) for n, w in zip(self.names, self.base.tolist(), strict=True)}

    def backward(self, losses: dict[str, Tensor], extra: Tensor | None, scale: float) -> Tensor:
        """Backpropagate the combined loss; returns it (detached)."""
        stacked = torch.stack([losses[n] for n in self.names])
        total = scale * (self.base.to(stacked.device) * stacked).sum()
        if extra is not None:
            total = total + extra
        total.backward()
        return total.detach()

    def end_epoch(self, epoch_losses: dict[str, float]) -> None:
        """Hook called after each epoch with the mean training loss of each task."""


class FixedWeighting(Weighting):
    """The configured weights, unchanged during training (the default)."""


WeightingFactory = Callable[[list[str], dict[str, float], list[nn.Parameter]], Weighting]

WEIGHTINGS: dict[str, WeightingFactory] = {"fixed": FixedWeighting}


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
