"""Candidate rows given by their first-layer projections instead of the flat input ``x``.

Split scoring (:mod:`mtrs.recommend.split`) builds ``x`` of N candidates of one user from a
cached item part, one user part and a few per-candidate columns (target attention, dot
products across the sides). Every layer that reads ``x`` first applies an affine map
``x·W + b``, which is linear in those parts, so that map can be split the same way: the
item part's projection once per catalogue, the user part's once per request, and per
candidate only the narrow per-candidate columns' (``[N, c] × [c, P]`` instead of
``[N, d] × [d, P]``, and no ``[N, d]`` row is written).

A layer that reads ``x`` (:class:`~mtrs.layers.mlp.MLP`,
:class:`~mtrs.layers.experts.ExpertPool`, :class:`~mtrs.layers.experts.Gate`) implements
:class:`InputMap` and, given a :class:`FoldedInput` instead of ``x``, continues from its
slice of the pre-activations. An architecture lists those layers
(:meth:`~mtrs.arch.base.Architecture.input_layers`); its forward then runs unchanged on a
:class:`FoldedInput`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias, runtime_checkable

import torch
from torch import Tensor, nn


@runtime_checkable
class InputMap(Protocol):
    """A layer whose first operation on its input is one affine map ``x·W + b``."""

    def input_map(self) -> tuple[Tensor, Tensor]:
        """``(W [in, out], b [out])``: the weight (input-major) and bias of that map."""
        ...


@dataclass(frozen=True)
class FoldedInput:
    """N rows of ``x`` known by ``x·W + b`` of the layers that read ``x``.

    Each layer reads its slot once, in one forward pass, and may overwrite it (its
    activation runs in place: no new [N, out] tensor per layer).

    Args:
        pre: The concatenated pre-activations of those layers [N, P], owned by this
            object (not a view of a cache).
        slots: Each layer's columns of ``pre`` (layers are keyed by identity).
    """

    pre: Tensor
    slots: Mapping[nn.Module, slice]

    def project(self, layer: nn.Module) -> Tensor:
        """``layer``'s pre-activations [N, out]: a view of :attr:`pre` that only
        ``layer`` reads, so it may modify it in place.

        Raises:
            KeyError: The layer is not one of the folded ones.
        """
        return self.pre[:, self.slots[layer]]


Features: TypeAlias = Tensor | FoldedInput
"""What an architecture reads: the flat input ``x`` [B, d], or its folded form."""


@dataclass(frozen=True)
class InputMaps:
    """The affine maps of several :class:`InputMap` layers as one ``[d, P]`` map.

    Shape:
        weight [d, P], bias [P]; ``slots[layer]`` its P columns.
    """

    weight: Tensor
    bias: Tensor
    slots: dict[nn.Module, slice]

    @classmethod
    def of(cls, layers: Sequence[nn.Module]) -> InputMaps:
        """The layers' maps side by side, in order.

        Raises:
            TypeError: A layer that is not an :class:`InputMap`.
        """
        weights: list[Tensor] = []
        biases: list[Tensor] = []
        slots: dict[nn.Module, slice] = {}
        start = 0
        for layer in layers:
            if not isinstance(layer, InputMap):
                raise TypeError(f"{type(layer).__name__} does not expose an input map")
            w, b = layer.input_map()
            weights.append(w)
            biases.append(b)
            slots[layer] = slice(start, start + w.shape[1])
            start += w.shape[1]
        weight = weights[0] if len(weights) == 1 else torch.cat(weights, dim=1)
        bias = biases[0] if len(biases) == 1 else torch.cat(biases)
        return cls(weight, bias, slots)

    @property
    def width(self) -> int:
        """P, the number of pre-activation columns."""
        return int(self.weight.shape[1])
