"""Non-neural ranking baselines (item-kNN, EASE, implicit ALS) and their validation-set tuning."""

from __future__ import annotations

from mtrs.baselines.als import ALS
from mtrs.baselines.base import Baseline
from mtrs.baselines.ease import EASE
from mtrs.baselines.item_knn import ItemKNN
from mtrs.baselines.matrix import interaction_matrix
from mtrs.baselines.registry import BASELINES, DEFAULT_GRIDS, grid_points, make_baseline
from mtrs.baselines.select import GridResult, Selection, select

__all__ = [
    "ALS",
    "BASELINES",
    "DEFAULT_GRIDS",
    "EASE",
    "Baseline",
    "GridResult",
    "ItemKNN",
    "Selection",
    "grid_points",
    "interaction_matrix",
    "make_baseline",
    "select",
]
