"""Profiling tasks are scored on users whose profile label the model never trained on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mtrs.config.load import load_config
from mtrs.data.split import TEST, TRAIN, VALID
from mtrs.datasets.quickstart import write_synth
from mtrs.datasets.synth import SynthSpec
from mtrs.prepare import prepare


def test_user_scoped_labels_of_test_users_never_count_in_training(tmp_path: Path) -> None:
    cfg = load_config(
        write_synth(tmp_path, SynthSpec(num_users=300, num_items=40, num_events=6000))
    )
    cfg.split.method = "random"
    prep = prepare(cfg)
    gender = [t.name for t in cfg.tasks].index("gender")
    click = [t.name for t in cfg.tasks].index("click")
    mask = prep.all_rows().mask.numpy()
    memory = prep.in_memory()
    users = memory.frame["user_id"].to_numpy()
    counted = {
        which: set(users[(memory.split == which) & mask[:, gender]])
        for which in (TRAIN, VALID, TEST)
    }
    # Disjoint user sets: a user's profile label counts in one split only.
    assert not counted[TRAIN] & counted[TEST]
    assert not counted[TRAIN] & counted[VALID]
    assert not counted[VALID] & counted[TEST]
    assert len(counted[TEST]) > 10 and len(counted[TRAIN]) > 100
    # Event tasks are untouched: every row with a click label counts.
    assert mask[:, click].all()
    # Test users do have training rows (their events train the event tasks).
    train_users = set(users[memory.split == TRAIN])
    assert len(counted[TEST] & train_users) > 0
    frame = pd.DataFrame({"u": users, "m": mask[:, gender], "s": memory.split})
    per_user = frame[frame.m].groupby("u")["s"].nunique()
    assert np.all(per_user.to_numpy() == 1)
