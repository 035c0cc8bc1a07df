"""What serving needs from the log: encoded items, users' latest state, seen items, popularity.

One builder gathers it chunk by chunk (:class:`CatalogBuilder`); a log in memory is one chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from mtrs.config.models import DataConfig
from mtrs.data.batch import Batch
from mtrs.data.encoders import KeyIndex, Moments, as_keys, merge_moments, moments
from mtrs.data.history import HistoryBuilder, HistoryInput, source_mask
from mtrs.data.labels import label_values
from mtrs.data.processor import FittedProcessor

CONTEXT_GROUPS = ("context",)


def _batch_to_flat(prefix: str, b: Batch) -> dict[str, Tensor]:
    out = {f"{prefix}.cat": b.cat, f"{prefix}.num": b.num}
    for kind in ("multi", "hist", "hist_value", "hist_gap"):
        for k, v in getattr(b, kind).items():
            out[f"{prefix}.{kind}.{k}"] = v
    return out


def _batch_from_flat(prefix: str, flat: dict[str, Tensor]) -> Batch:
    def sub(kind: str) -> dict[str, Tensor]:
        head = f"{prefix}.{kind}."
        return {k[len(head) :]: v for k, v in flat.items() if k.startswith(head)}

    cat = flat[f"{prefix}.cat"]
    n = cat.shape[0]
    return Batch(
        cat=cat,
        num=flat[f"{prefix}.num"],
        labels=torch.zeros(n, 0),
        mask=torch.zeros(n, 0, dtype=torch.bool),
        user=torch.zeros(n, dtype=torch.long),
        multi=sub("multi"),
        hist=sub("hist"),
        hist_value=sub("hist_value"),
        hist_gap=sub("hist_gap"),
    )


@dataclass
class Catalog:
    """Encoded candidates and users, kept with the model so serving needs no raw log.

    Attributes:
        item_ids, user_ids: Raw ids as strings, in row order of ``items`` and ``users``.
        items: Encoded item rows (item-group columns are what matter).
        users: Each user's latest encoded row, with the latest history.
        Items and users are in the order of their last event in the log (then the items of
        the items table that no event names).
        context: One encoded row of default context (the most frequent value of each
            categorical context feature, the mean of each numeric one).
        seen_ptr, seen_idx: CSR rows of item positions each user already interacted with.
        popularity: Per binary task, funnel joint task (and ``"_all"``), the item's positive
            count in training (``"_all"``: the training events the history counts, every
            event without one).
        titles: Per item, the value of ``data.item_title_col`` in the items table (None where
            the table has none); None when the job names no title column.
        display: Per ``data.display_cols`` column, the item's values (JSON scalars or None).
    """

    item_ids: list[str]
    user_ids: list[str]
    items: Batch
    users: Batch
    context: Batch
    seen_ptr: np.ndarray
    seen_idx: np.ndarray
    popularity: dict[str, np.ndarray]
    titles: list[str | None] | None = None
    display: dict[str, list[Any]] = field(default_factory=dict)

    def user_row(self, user_id: str) -> int | None:
        """Row of a raw user id, or None for an unknown user."""
        index = getattr(self, "_user_index", None)
        if index is None:
            index = {u: i for i, u in enumerate(self.user_ids)}
            object.__setattr__(self, "_user_index", index)
        return index.get(str(user_id))

    def item_positions(self, item_ids: list[str]) -> np.ndarray:
        """Catalog positions of raw item ids (−1 for unknown ids)."""
        index: dict[str, int] | None = getattr(self, "_item_index", None)
        if index is None:
            index = {u: i for i, u in enumerate(self.item_ids)}
            object.__setattr__(self, "_item_index", index)
        get = index.get
        # A dict lookup per id (ids are strings already, as requests give them) is about
        # 3× faster than building a pandas Index of the request; other ids go through str.
        pos = np.array([get(i, -1) for i in item_ids], dtype=np.int64)
        for j in np.flatnonzero(pos < 0):
            pos[j] = get(str(item_ids[j]), -1)
        return pos

    def popularity_share(self, name: str = "_all") -> np.ndarray:
        """Each item's share of the training positives of task ``name`` (sums to 1).

        A task without its own counts (regression, multiclass) and ``"_all"`` use the training
        interactions (the events the history counts).
        """
        counts = self.popularity.get(name, self.popularity["_all"]).astype(np.float64)
        total = counts.sum()
        return counts / total if total > 0 else np.zeros_like(counts)

    def seen(self, row: int) -> np.ndarray:
        """Item positions the user already interacted with."""
        return self.seen_idx[self.seen_ptr[row] : self.seen_ptr[row + 1]]

    def tensors(self) -> dict[str, Tensor]:
        """All tensors for safetensors."""
        out = {
            **_batch_to_flat("items", self.items),
            **_batch_to_flat("users", self.users),
            **_batch_to_flat("context", self.context),
        }
        out["seen_ptr"] = torch.from_numpy(self.seen_ptr.astype(np.int64))
        out["seen_idx"] = torch.from_numpy(self.seen_idx.astype(np.int64))
        for k, v in self.popularity.items():
            out[f"popularity.{k}"] = torch.from_numpy(v.astype(np.float32))
        return {k: v.contiguous() for k, v in out.items()}

    def meta(self) -> dict[str, Any]:
        """The JSON part (raw ids, item titles and display values)."""
        return {
            "item_ids": self.item_ids,
            "user_ids": self.user_ids,
            "titles": self.titles,
            "display": self.display,
        }

    @classmethod
    def load(cls, meta: dict[str, Any], flat: dict[str, Tensor]) -> Catalog:
        """Inverse of :meth:`meta` + :meth:`tensors` (a catalog saved before titles has none)."""
        pop = {
            k.split(".", 1)[1]: v.numpy() for k, v in flat.items() if k.startswith("popularity.")
        }
        return cls(
            meta["item_ids"],
            meta["user_ids"],
            _batch_from_flat("items", flat),
            _batch_from_flat("users", flat),
            _batch_from_flat("context", flat),
            flat["seen_ptr"].numpy(),
            flat["seen_idx"].numpy(),
            pop,
            meta.get("titles"),
            dict(meta.get("display") or {}),
        )


def _json_scalar(value: Any) -> Any:
    """A table cell as JSON: str, int, float or bool as they are, missing as None, else text."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return None
    return value if isinstance(value, (str, int, float, bool)) else str(value)


def item_columns(
    item_ids: list[str], items_table: pd.DataFrame | None, data: DataConfig
) -> tuple[list[str | None] | None, dict[str, list[Any]]]:
    """Titles and display values of the catalog items, looked up in the items table.

    Args:
        item_ids: The catalog's raw item ids.
        items_table: The items table (checked against ``[data]`` by ``check_item_columns``).
        data: ``item_col``, ``item_title_col`` and ``display_cols``.

    Returns:
        ``(titles, display)``: None and ``{}`` when the job names no such columns; an item the
        table lacks (or whose cell is empty) gets None.
    """
    wanted = [c for c in (data.item_title_col, *data.display_cols) if c]
    if items_table is None or not wanted:
        return None, {}
    keys = pd.Index(as_keys(items_table[data.item_col]).astype(str))
    rows = items_table[list(dict.fromkeys(wanted))].set_axis(keys).reindex(item_ids)
    values = {c: [_json_scalar(v) for v in rows[c].astype(object)] for c in rows.columns}
    titles = None
    if data.item_title_col:
        titles = [None if v is None else str(v) for v in values[data.item_title_col]]
    return titles, {c: values[c] for c in data.display_cols}


def _latest(df: pd.DataFrame) -> pd.DataFrame:
    """The last row of every ``_code``."""
    return df.drop_duplicates("_code", keep="last")


@dataclass
class CatalogBuilder:
    """What serving needs, gathered chunk by chunk: latest rows, seen items, popularity.

    Args:
        proc: The fitted processor.
    """

    proc: FittedProcessor
    items: KeyIndex = field(default_factory=KeyIndex)
    user_rows: list[pd.DataFrame] = field(default_factory=list)
    item_rows: list[pd.DataFrame] = field(default_factory=list)
    pair_parts: list[np.ndarray] = field(default_factory=list)
    popularity: dict[str, np.ndarray] = field(default_factory=dict)
    context_counts: dict[str, pd.Series] = field(default_factory=dict)
    context_moments: dict[str, Moments] = field(default_factory=dict)

    def _grow(self, name: str, values: np.ndarray, weights: np.ndarray) -> None:
        counts = np.bincount(values, weights=weights, minlength=len(self.items))
        old = self.popularity.get(name, np.zeros(0))
        out = np.zeros(len(self.items))
        out[: len(old)] += old
        out[: len(counts)] += counts
        self.popularity[name] = out

    def add(self, frame: pd.DataFrame, user: np.ndarray, count: np.ndarray, start: int) -> None:
        """Fold one chunk in.

        Args:
            frame: The chunk's merged rows, in time order after every earlier chunk.
            user: The rows' user codes (the same codes the history builder got).
            count: Rows whose positives count towards popularity (the training rows).
            start: The global row number of the chunk's first row.
        """
        d = self.proc.cfg.data
        item = self.items.codes(frame[d.item_key])
        row = np.arange(start, start + len(frame), dtype=np.int64)
        self.user_rows.append(_latest(frame.assign(_code=user, _row=row)))
        self.item_rows.append(_latest(frame.assign(_code=item, _row=row)))
        if sum(len(f) for f in self.user_rows) > 4 * max(len(self.user_rows[0]), 1):
            self.user_rows = [_latest(pd.concat(self.user_rows))]
            self.item_rows = [_latest(pd.concat(self.item_rows))]
        hist = self.proc.histories
        src = source_mask(frame, hist[0] if hist else None, self.proc.cfg)
        self.pair_parts.append(np.unique((user[src] << 32) | item[src]))
        if sum(len(p) for p in self.pair_parts) > 2 * len(self.pair_parts[0]) + 2**20:
            self.pair_parts = [self._pairs()]
        self._grow("_all", item, (count & src).astype(np.float64))
        positives: dict[str, np.ndarray] = {}
        for t in self.proc.tasks:
            if t.config.type == "binary" and t.config.scope == "event":
                positives[t.config.name] = np.nan_to_num(
                    label_values(frame[t.config.label_column], t.config)
                )
                self._grow(t.config.name, item, positives[t.config.name] * count)
        # A funnel's joint task counts the rows positive for both its parent and its child.
        for r in self.proc.cfg.relations:
            if r.parent in positives and r.child in positives:
                joint = positives[r.parent] * positives[r.child]
                self._grow(r.joint_name, item, joint * count)
        for f in self.proc.cfg.features:
            if f.group in CONTEXT_GROUPS and f.kind != "history":
                col = frame[f.source_column]
                if f.kind == "numeric":
                    m = moments(col.to_numpy(np.float64))
                    old = self.context_moments.get(f.name, (0.0, 0.0, 0.0))
                    self.context_moments[f.name] = merge_moments(old, m)
                else:
                    vc = col.value_counts()
                    prev = self.context_counts.get(f.name)
                    self.context_counts[f.name] = vc if prev is None else prev.add(vc, fill_value=0)

    def _pairs(self) -> np.ndarray:
        """Distinct (user code << 32 | item code) of the source events so far, sorted."""
        if not self.pair_parts:
            return np.zeros(0, np.int64)
        return np.unique(np.concatenate(self.pair_parts))

    def _context_row(self, template: pd.DataFrame) -> pd.DataFrame:
        """One row of default context: the most frequent value, or the mean of a number.

        The mean rather than the median: it is exact over a streamed log, chunk by chunk.
        """
        row = template.iloc[:1].copy()
        for f in self.proc.cfg.features:
            if f.group in CONTEXT_GROUPS and f.kind != "history":
                if f.kind == "numeric":
                    row[f.source_column] = self.context_moments[f.name][1]
                else:
                    vc = self.context_counts[f.name]
                    row[f.source_column] = vc[vc == vc.max()].sort_index().index[0]
        return row

    def finish(
        self, user_keys: list[str], latest: HistoryInput, items_table: pd.DataFrame | None
    ) -> Catalog:
        """The serving catalog.

        Args:
            user_keys: Raw user ids in user-code order.
            latest: Every user's latest history, rows in user-code order.
            items_table: The items table, so items never shown in the log are candidates too.
        """
        d = self.proc.cfg.data
        proc = self.proc
        users = _latest(pd.concat(self.user_rows)).sort_values("_row")
        user_order = users["_code"].to_numpy()
        user_frame = users.drop(columns=["_code", "_row"]).reset_index(drop=True)
        items = _latest(pd.concat(self.item_rows)).sort_values("_row")
        item_order = items["_code"].to_numpy()
        item_frame = items.drop(columns=["_code", "_row"]).reset_index(drop=True)
        codes = self.items.keys()
        item_keys = [codes[c] for c in item_order]
        if items_table is not None:
            extra = items_table[~as_keys(items_table[d.item_col]).isin(item_keys)]
            if len(extra):
                item_frame = pd.concat([item_frame, extra], ignore_index=True)
                item_keys += as_keys(extra[d.item_col]).astype(str).tolist()
        history = HistoryInput(
            {k: v[user_order] for k, v in latest.items.items()},
            {k: v[user_order] for k, v in latest.values.items()},
            {k: v[user_order] for k, v in latest.gaps.items()},
        )
        encoded_items = proc.encode(item_frame, HistoryInput.empty(proc.histories, len(item_frame)))
        encoded_users = proc.encode(user_frame, history)
        context = proc.encode(self._context_row(user_frame), HistoryInput.empty(proc.histories, 1))
        user_pos = np.empty(len(user_keys), np.int64)
        user_pos[user_order] = np.arange(len(user_order))
        item_pos = np.empty(len(codes), np.int64)
        item_pos[item_order] = np.arange(len(item_order))
        pairs = self._pairs()
        u = user_pos[(pairs >> 32).astype(np.int64)]
        i = item_pos[(pairs & 0xFFFFFFFF).astype(np.int64)]
        order = np.lexsort((i, u))
        u, i = u[order], i[order]
        counts = np.bincount(u, minlength=len(user_order))
        seen_ptr = np.concatenate([[0], np.cumsum(counts)])
        popularity = {}
        for name, by_code in self.popularity.items():
            pop = np.zeros(len(item_keys))
            pop[item_pos[: len(by_code)]] = by_code
            popularity[name] = pop
        titles, display = item_columns(item_keys, items_table, d)
        return Catalog(
            item_keys,
            [user_keys[c] for c in user_order],
            encoded_items,
            encoded_users,
            context,
            seen_ptr,
            i,
            popularity,
            titles,
            display,
        )


def build_catalog(
    frame: pd.DataFrame,
    count: np.ndarray,
    proc: FittedProcessor,
    items_table: pd.DataFrame | None = None,
) -> Catalog:
    """The serving catalog of a log in memory (time-sorted, merged): one chunk of the builder.

    Args:
        frame: Every event, merged with user and item columns, in time order.
        count: Rows whose positives count towards popularity (e.g. the training split).
        proc: The fitted processor.
        items_table: The items table, so items never shown in the log are candidates too.
    """
    users = KeyIndex()
    codes = users.codes(frame[proc.cfg.data.user_key])
    history = HistoryBuilder(proc)
    history.add(frame, codes)
    builder = CatalogBuilder(proc)
    builder.add(frame, codes, count, 0)
    return builder.finish(users.keys(), history.latest(len(users)), items_table)
