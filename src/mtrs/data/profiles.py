"""Held-out users for profiling tasks: users are split into folds as well as events."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from mtrs.config.models import JobConfig
from mtrs.data.batch import Batch
from mtrs.data.encoders import as_keys
from mtrs.data.split import fraction_split, hash_uniform


def user_folds(user_ids: pd.Series, cfg: JobConfig) -> np.ndarray:
    """Each row's user fold (TRAIN, VALID or TEST), drawn per user with the split's fractions.

    The draw is a seeded hash of the raw user id, so every code path (in memory, streamed)
    and every chunk puts a user in the same fold.
    """
    keys = as_keys(user_ids).fillna("").astype(str).to_numpy(dtype=object)
    return fraction_split(hash_uniform(keys, f"mtrs-fold{cfg.split.seed:07d}"[:16]), cfg.split)


def hold_out_profiles(full: Batch, user_ids: pd.Series, split: np.ndarray, cfg: JobConfig) -> None:
    """Score profiling tasks on users whose profile the model never saw.

    Event splits share users between train and test, so a user-scoped label seen in training
    would be memorised (a behaviour history is nearly unique per user). Users are therefore
    also split into folds: a user-scoped label counts only in rows whose event split equals
    the user's fold — training rows of training users, validation rows of validation users,
    test rows of test users.
    """
    cols = [j for j, t in enumerate(cfg.tasks) if t.scope == "user"]
    if not cols:
        return
    keep = torch.from_numpy(user_folds(user_ids, cfg) == split)
    full.mask[:, cols] &= keep.unsqueeze(1)
