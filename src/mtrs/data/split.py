"""Train / validation / test splits: random, temporal (global time cut) and leave_last."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mtrs.config.models import SplitConfig

TRAIN, VALID, TEST = 0, 1, 2


def hash_uniform(values: np.ndarray, key: str) -> np.ndarray:
    """A seeded, stable hash of each value mapped to [0, 1): the same value, the same number.

    Decisions drawn this way (a row's split when streaming, a user's profiling fold, the
    evaluation sample) come out the same in every chunk and on every code path.

    Args:
        values: Integers or strings (an object array).
        key: Exactly 16 characters; the seed is part of it.
    """
    h = pd.util.hash_array(values, hash_key=key, categorize=values.dtype == object)
    return (h >> np.uint64(11)).astype(np.float64) / float(2**53)


def fraction_split(u: np.ndarray, cfg: SplitConfig) -> np.ndarray:
    """TEST below ``test_fraction``, VALID below that plus ``valid_fraction``, else TRAIN.

    Args:
        u: One uniform draw in [0, 1) per row (or per unit).
    """
    return np.where(
        u < cfg.test_fraction,
        TEST,
        np.where(u < cfg.test_fraction + cfg.valid_fraction, VALID, TRAIN),
    ).astype(np.int8)


@dataclass(frozen=True)
class SplitInput:
    """What a split needs: users, times and the unit that must stay together."""

    user: np.ndarray
    time: np.ndarray
    unit: np.ndarray


def _random(x: SplitInput, cfg: SplitConfig) -> np.ndarray:
    units, inverse = np.unique(x.unit, return_inverse=True)
    u = np.random.default_rng(cfg.seed).random(len(units))
    return fraction_split(u, cfg)[inverse]


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
