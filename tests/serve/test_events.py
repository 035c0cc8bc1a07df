"""Events folded into a user's input: history shift, filter, side values, time gaps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtrs.artifact import load_model
from mtrs.serve.events import Event, serving_input

from .conftest import Models

HOUR = 3600.0


def test_time_gaps_grow_between_served_events(gap_model: Path, models: Models) -> None:
    rec = load_model(gap_model).recommender()
    filled = (rec.catalog.users.hist["clicked_items"] > 0).sum(dim=1)
    user = rec.catalog.user_ids[int(filled.argmax())]
    base = rec.user_input(user)
    assert base is not None
    codes = base.features.hist["clicked_items"][0].numpy()
    gaps = base.features.hist_gap["clicked_items"][0].numpy().astype(np.float64)
    assert (codes > 0).sum() >= 2 and gaps[codes > 0].max() > 0

    one = serving_input(rec, user, (Event("3", 1000.0, {"click": 1}),))
    assert one is not None
    g1 = one.features.hist_gap["clicked_items"][0].numpy()
    # The first served event: the catalog's gaps shift left unchanged, the new entry is 0.
    np.testing.assert_allclose(g1[:-1], gaps[1:], atol=1e-6)
    assert g1[-1] == 0.0

    two = serving_input(
        rec,
        user,
        (
            Event("3", 1000.0, {"click": 1}),
            Event("5", 1000.0 + 2 * HOUR, {"click": 0}),  # not a click: only time passes
            Event("8", 1000.0 + 5 * HOUR, {"click": 1}),
        ),
    )
    assert two is not None
    c2 = two.features.hist["clicked_items"][0].numpy()
    g2 = two.features.hist_gap["clicked_items"][0].numpy().astype(np.float64)
    assert list(c2[-2:]) == list(rec.proc.encode_items(pd.Series(["3", "8"])))
    assert g2[-1] == 0.0 and g2[-2] == pytest.approx(np.log1p(5.0), abs=1e-6)
    # Older entries: log(1 + hours) grown by the 5 hours between the served events.
    older = gaps[2:]
    want = np.where(codes[2:] > 0, np.log1p(np.expm1(older) + 5.0), 0.0)
    np.testing.assert_allclose(g2[:-2], want, atol=1e-5)
    assert set(rec.catalog.item_positions(["3", "5", "8"])) <= set(two.seen)


def test_events_of_items_the_model_lacks_are_skipped(models: Models) -> None:
    rec = load_model(models.a).recommender()
    user = rec.catalog.user_ids[0]
    base = rec.user_input(user)
    got = serving_input(rec, user, (Event("not-an-item"),))
    assert base is not None and got is not None
    np.testing.assert_array_equal(
        got.features.hist["clicked_items"], base.features.hist["clicked_items"]
    )
    np.testing.assert_array_equal(got.seen, base.seen)
    assert serving_input(rec, "nobody", ()) is None
