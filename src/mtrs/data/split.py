"""Train / validation / test splits: random, temporal (global time cut) and leave_last."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mtrs.config.models import SplitConfig

TRAIN, VALID, TEST = 0, 1, 2


@dataclass(frozen=True)
class SplitInput:
    """What a split needs: users, times and the unit that must stay together."""

    user: np.ndarray
    time: np.ndarray
    unit: np.ndarray


def _random(x: SplitInput, cfg: SplitConfig) -> np.ndarray:
    units, inverse = np.unique(x.unit, return_inverse=True)
    u = np.random.default_rng(cfg.seed).random(len(units))
    part = np.where(
        u < cfg.test_fraction,
        TEST,
        np.where(u < cfg.test_fraction + cfg.valid_fraction, VALID, TRAIN),
    )
    return part[inverse].astype(np.int8)


def _temporal(x: SplitInput, cfg: SplitConfig) -> np.ndarray:
    t_valid = np.quantile(x.time, 1.0 - cfg.test_fraction - cfg.valid_fraction)
    t_test = np.quantile(x.time, 1.0 - cfg.test_fraction)
    part = np.full(len(x.time), TRAIN, dtype=np.int8)
    part[x.time > t_valid] = VALID
    part[x.time > t_test] = TEST
    if cfg.test_fraction > 0 and not (part == TEST).any():
        part[x.time >= t_test] = TEST
    return part


def _leave_last(x: SplitInput, cfg: SplitConfig) -> np.ndarray:
    # Work on units (e.g. an event and its sampled negatives) ordered by time within each user.
    units, first_row = np.unique(x.unit, return_index=True)
    u_user = x.user[first_row]
    u_time = x.time[first_row]
    order = np.lexsort((units, u_time, u_user))
    su = u_user[order]
    _, start, count = np.unique(su, return_index=True, return_counts=True)
    rank_from_end = np.empty(len(order), dtype=np.int64)
    pos_in_user = np.arange(len(order)) - np.repeat(start, count)
    rank_from_end = np.repeat(count, count) - 1 - pos_in_user
    n_user = np.repeat(count, count)
    n_test = np.where(cfg.test_fraction > 0, np.maximum(1, np.round(n_user * cfg.test_fraction)), 0)
    n_valid = np.where(
        cfg.valid_fraction > 0, np.maximum(1, np.round(n_user * cfg.valid_fraction)), 0
    )
    # A user keeps at least one training unit.
    n_test = np.minimum(n_test, np.maximum(n_user - 1, 0))
    n_valid = np.minimum(n_valid, np.maximum(n_user - 1 - n_test, 0))
    part_sorted = np.where(
        rank_from_end < n_test, TEST, np.where(rank_from_end < n_test + n_valid, VALID, TRAIN)
    ).astype(np.int8)
    unit_part = np.empty(len(units), dtype=np.int8)
    unit_part[order] = part_sorted
    inverse = np.searchsorted(units, x.unit)
    return unit_part[inverse]


SPLITTERS: dict[str, Callable[[SplitInput, SplitConfig], np.ndarray]] = {
    "random": _random,
    "temporal": _temporal,
    "leave_last": _leave_last,
}


def assign_split(x: SplitInput, cfg: SplitConfig) -> np.ndarray:
    """Which split every row belongs to.

    Args:
        x: User codes, timestamps and split units (rows sharing a unit stay together).
        cfg: The ``[split]`` table.

    Returns:
        int8 [n]: 0 train, 1 validation, 2 test.
    """
    return SPLITTERS[cfg.method](x, cfg)
