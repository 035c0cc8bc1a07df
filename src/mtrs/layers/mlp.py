"""A plain multi-layer perceptron: Linear → ReLU (→ Dropout) per hidden layer."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtrs.layers.folded import Features, FoldedInput


class MLP(nn.Module):
    """Fully connected layers with ReLU after each.

    Args:
        in_dim: Input width.
        hidden: Output width of each layer; empty means identity.
        dropout: Dropout after each activation (0 disables; adds no parameters).

    Shape:
        [B, in_dim] → [B, hidden[-1]] (or [B, in_dim] when ``hidden`` is empty).
    """

    def __init__(self, in_dim: int, hidden: list[int], dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden:
            layers.append(nn.Linear(width, h))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.net = nn.Sequential(*layers)
        self.out_dim = width

    def input_map(self) -> tuple[Tensor, Tensor]:
        """The first layer's weight [in, out] and bias (see :mod:`mtrs.layers.folded`).

        Raises:
            ValueError: The MLP has no layer (it is the identity).
        """
        if not len(self.net):
            raise ValueError("an MLP without layers has no input map")
        first: nn.Linear = self.net[0]  # type: ignore[assignment]
        return first.weight.t(), first.bias

    def forward(self, x: Features) -> Tensor:
        if isinstance(x, FoldedInput):  # the first layer's output is given: run the rest
            h = torch.relu_(x.project(self))  # this layer's own slot: in place
            for layer in list(self.net)[2:]:
                h = layer(h)
            return h
        out: Tensor = self.net(x)
        return out
