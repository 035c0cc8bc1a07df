"""Sampled negatives for a log of positives only (``[data.negatives]``).

A ratings or purchase log holds only what people picked; a model trained on it alone never
sees what they pass over. With ``[data.negatives]`` every logged row (a positive) gets
``per_positive`` items its user never interacted with anywhere in the log, drawn without
repetition within the event, uniformly or in proportion to ``(count + 1)^alpha``. The sampled
rows share the positive's time, user, split unit and user / context / behaviour feature
columns; the item and its item-side columns are the sampled item's; every other column (task
labels, conditions, history filters and values, anything else) is missing, so other tasks
add no loss there. The generated column ``label`` is 1 on logged rows and 0 on sampled ones.

Rows are laid out as blocks ``[positive, its negatives]`` in the log's row order, and the
draws follow that order, so one seed gives the same rows on every run. The data stage
(:class:`mtrs.data.log.FrameLog`) applies this before merging and splitting, and keeps each
block in one split (:func:`event_units`).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from mtrs.config.models import JobConfig, NegativesConfig
from mtrs.data.tables import Tables
from mtrs.errors import MtrsUserError

# Feature groups whose columns describe the event or its user, copied from the positive.
COPIED_GROUPS = ("user", "context", "behaviour")
# A temporary column carrying each row's event (its positive's row) through merge and sort.
EVENT_COLUMN = "__mtrs_event__"


def sample_negatives(
    user_code: npt.NDArray[np.int64],
    rated_keys: npt.NDArray[np.int64],
    n_items: int,
    k: int,
    rng: np.random.Generator,
    weights: npt.NDArray[np.float64] | None = None,
) -> npt.NDArray[np.int64]:
    """Draws ``k`` distinct never-interacted item codes per event by vectorised rejection.

    ``rated_keys`` are sorted ``user_code * n_items + item_code`` pairs; membership is a binary
    search, so memory stays linear in the number of interactions rather than users × items.
    Column ``j`` is drawn for every pending event at once, redrawing only the rejected ones.

    Args:
        user_code: Each event's user code, int64 [n].
        rated_keys: Sorted distinct ``user_code * n_items + item_code`` of every interaction.
        n_items: Size of the item universe (codes ``0 .. n_items - 1``).
        k: Draws per event.
        rng: The generator (its state moves on).
        weights: Probability of each item code (summing to 1); None draws uniformly.

    Returns:
        int64 [n, k] item codes.
    """
    out = np.empty((len(user_code), k), dtype=np.int64)
    if len(user_code) == 0 or k == 0:
        return out
    for j in range(k):
        pending = np.arange(len(user_code))
        while pending.size:
            if weights is None:
                cand = rng.integers(0, n_items, size=pending.size, dtype=np.int64)
            else:
                cand = rng.choice(n_items, size=pending.size, p=weights).astype(np.int64)
            keys = user_code[pending] * n_items + cand
            pos = np.minimum(np.searchsorted(rated_keys, keys), len(rated_keys) - 1)
            ok = rated_keys[pos] != keys
            if j:
                ok &= ~(out[pending, :j] == cand[:, None]).any(axis=1)
            out[pending[ok], j] = cand[ok]
            pending = pending[~ok]
    return out


def _universe(values: pd.Series) -> np.ndarray:
    """Distinct non-missing item ids, sorted when they compare (else in first-seen order)."""
    distinct = pd.unique(values.dropna().to_numpy())
    try:
        return np.sort(distinct)
    except TypeError:  # mixed id types: keep them as they come
        return distinct


def _check_label(tables: Tables, cfg: JobConfig, neg: NegativesConfig) -> None:
    d = cfg.data
    for frame, source in (
        (tables.interactions, d.interactions),
        (tables.users, d.users),
        (tables.items, d.items),
    ):
        if frame is not None and neg.label in frame.columns:
            raise MtrsUserError(
                f"data.negatives.label: column '{neg.label}' already exists in {source}; "
                "the label is generated (1 on logged rows, 0 on sampled ones), so name a new "
                "column"
            )


def _item_side_columns(tables: Tables, cfg: JobConfig) -> list[str]:
    """Interaction columns of item features, replaced by the sampled item's value."""
    inter = tables.interactions.columns
    cols = [f.source_column for f in cfg.features if f.group == "item" and f.kind != "history"]
    return [c for c in dict.fromkeys(cols) if c in inter and c != cfg.data.item_col]


def _copied_columns(cfg: JobConfig) -> set[str]:
    """Columns a sampled row shares with its positive: the event's time, user and context."""
    d = cfg.data
    cols = {d.user_col, d.time_col}
    if cfg.split.unit:
        cols.add(cfg.split.unit)
    cols |= {
        f.source_column for f in cfg.features if f.group in COPIED_GROUPS and f.kind != "history"
    }
    return cols


def add_negatives(tables: Tables, cfg: JobConfig) -> Tables:
    """The tables with ``[data.negatives]`` rows added to the interactions.

    The interactions come back as blocks ``[positive, its per_positive negatives]`` in the
    log's row order, with the generated label and :data:`EVENT_COLUMN` (the positive's row
    number) added; the users and items tables are unchanged.

    Args:
        tables: The job's tables as read (interactions of positives only).
        cfg: The job config; ``cfg.data.negatives`` must be set.

    Raises:
        MtrsUserError: The label names an existing column, or a user has interacted with so
            many items that fewer than ``per_positive`` are left to sample.
    """
    neg = cfg.data.negatives
    assert neg is not None
    d = cfg.data
    _check_label(tables, cfg, neg)
    inter = tables.interactions.reset_index(drop=True)
    for c in (d.user_col, d.item_col):
        if c not in inter.columns:
            raise MtrsUserError(f"{d.log_name}: missing column '{c}'")
    k = neg.per_positive
    n = len(inter)
    if tables.items is not None and d.item_col in tables.items.columns:
        universe = _universe(tables.items[d.item_col])
    else:
        universe = _universe(inter[d.item_col])
    n_items = len(universe)
    item_code = pd.Index(universe).get_indexer(inter[d.item_col])
    known = item_code >= 0  # a logged item missing from the items table is never drawn
    user_code, user_keys = pd.factorize(inter[d.user_col], use_na_sentinel=False)
    user_code = user_code.astype(np.int64)
    rated_keys = np.unique(user_code[known] * n_items + item_code[known])
    free = n_items - np.bincount(rated_keys // max(n_items, 1), minlength=len(user_keys))
    short = np.flatnonzero(free < k)
    if len(short):
        u = short[0]
        raise MtrsUserError(
            f"data.negatives.per_positive = {k}: {d.user_col} '{user_keys[u]}' has interacted "
            f"with {n_items - free[u]} of the {n_items} items, leaving {free[u]} to sample; "
            "lower per_positive or give an items table with more items"
        )
    weights = None
    if neg.distribution == "popularity":
        counts = np.bincount(item_code[known], minlength=n_items) + 1.0
        skew = counts**neg.exponent
        weights = skew / skew.sum()
    rng = np.random.default_rng(neg.seed)
    codes = sample_negatives(user_code, rated_keys, n_items, k, rng, weights)

    # Row r of the output is block r // width; its first row is the positive itself.
    width = 1 + k
    source = np.repeat(np.arange(n), width)
    is_pos = np.arange(n * width) % width == 0
    sampled = np.concatenate([np.full((n, 1), -1), codes], axis=1).ravel()
    copied = _copied_columns(cfg)
    item_side = _item_side_columns(tables, cfg)
    sampled_items = _item_values(tables, cfg, item_side, universe, sampled)
    out: dict[str, pd.Series | np.ndarray] = {}
    for c in inter.columns:
        col = inter[c].iloc[source].reset_index(drop=True)
        if c == d.item_col:
            neg_items = pd.Series(universe[np.maximum(sampled, 0)], dtype=col.dtype)
            out[c] = col.where(is_pos, neg_items)
        elif c in item_side:
            out[c] = col.where(is_pos, sampled_items[c])
        elif c in copied:
            out[c] = col
        else:
            out[c] = col.where(is_pos)
    out[neg.label] = is_pos.astype(np.int64)
    out[EVENT_COLUMN] = source.astype(np.int64)
    given = None if tables.given is None else tables.given[source]
    return Tables(pd.DataFrame(out), tables.users, tables.items, given)


def _item_values(
    tables: Tables, cfg: JobConfig, cols: list[str], universe: np.ndarray, sampled: np.ndarray
) -> pd.DataFrame:
    """Columns ``cols`` of each sampled item: from the items table, else the item's latest row.

    One lookup table per source (deduplicated once), reindexed once for every column.
    """
    d = cfg.data
    out = pd.DataFrame(index=pd.RangeIndex(len(sampled)))
    if not cols:
        return out
    keys = universe[np.maximum(sampled, 0)]
    items = tables.items
    from_items = [c for c in cols if items is not None and c in items.columns]
    from_log = [c for c in cols if c not in from_items]
    if from_items:
        assert items is not None
        by_item = items.drop_duplicates(d.item_col, keep="last").set_index(d.item_col)
        values = by_item[from_items].reindex(keys).reset_index(drop=True)
        out[from_items] = values
    if from_log:
        inter = tables.interactions
        if d.time_col in inter.columns:
            inter = inter.sort_values(d.time_col, kind="stable")
        by_item = inter.drop_duplicates(d.item_col, keep="last").set_index(d.item_col)
        out[from_log] = by_item[from_log].reindex(keys).reset_index(drop=True)
    return out


def event_units(frame: pd.DataFrame) -> np.ndarray:
    """Each row's event code (in order of first appearance), removing :data:`EVENT_COLUMN`.

    On the time-sorted log a positive comes first in its block, so the codes number the
    positives in time order: the split units are those of the log without negatives.
    """
    return pd.factorize(frame.pop(EVENT_COLUMN))[0].astype(np.int64)


def sampled_rows(df: pd.DataFrame, cfg: JobConfig) -> np.ndarray:
    """Which rows are sampled negatives (the generated label is 0), bool [n].

    Rows without the label column (e.g. new events to score) hold no sampled rows.
    """
    neg = cfg.data.negatives
    if neg is None or neg.label not in df.columns:
        return np.zeros(len(df), dtype=bool)
    return df[neg.label].to_numpy(dtype=np.float64) == 0.0
