"""Name → baseline factory, and each baseline's default hyper-parameter grid."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mtrs.baselines.als import ALS
from mtrs.baselines.base import Baseline
from mtrs.baselines.ease import EASE
from mtrs.baselines.item_knn import ItemKNN
from mtrs.errors import MtrsUserError

__all__ = ["BASELINES", "DEFAULT_GRIDS", "grid_points", "make_baseline"]

BASELINES: dict[str, Callable[..., Baseline]] = {
    "item_knn": ItemKNN,
    "ease": EASE,
    "als": ALS,
}

# Sized for MovieLens-100K (about a minute and a half for all three grids on one core, ALS
# taking most of it). The ALS ranges were narrowed on the validation period alone: reg 5 and 40
# and 10 iterations were worse for every factor count tried; alpha and reg interact, hence two
# alphas.
DEFAULT_GRIDS: dict[str, dict[str, tuple[Any, ...]]] = {
    "item_knn": {"neighbours": (50, 100, 200, 400), "shrink": (0.0, 10.0, 50.0)},
    "ease": {"l2": (50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0)},
    "als": {"factors": (64, 128), "reg": (10.0, 20.0), "alpha": (0.5, 2.0), "iterations": (15,)},
}


def make_baseline(name: str, **params: Any) -> Baseline:
    """A new, unfitted baseline.

    Args:
        name: A key of :data:`BASELINES`.
        **params: Hyper-parameters passed to its constructor.

    Returns:
        The baseline.

    Raises:
        MtrsUserError: If the name is unknown.
    """
    factory = BASELINES.get(name)
    if factory is None:
        known = ", ".join(sorted(BASELINES))
        raise MtrsUserError(f"baselines: unknown baseline '{name}' (known: {known})")
    return factory(**params)


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of a grid's values, the last parameter varying fastest.

    Args:
        grid: Parameter name → the values to try.

    Returns:
        One parameter dict per grid point; a single empty dict for an empty grid.

    Raises:
        ValueError: If a parameter has no values.
    """
    empty = [k for k, v in grid.items() if len(v) == 0]
    if empty:
        raise ValueError(f"Grid parameter {empty[0]!r} has no values.")
    names = list(grid)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*grid.values())]
