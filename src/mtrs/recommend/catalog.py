"""What serving needs from the log: encoded items, users' latest state, seen items, popularity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from mtrs.data.batch import Batch
from mtrs.data.encoders import as_keys
from mtrs.data.history import latest_history
from mtrs.data.processor import GAP_SCALE_SECONDS, FittedProcessor, HistoryInput

ITEM_GROUPS = ("item",)
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
        context: One encoded row of default context (most frequent values).
        seen_ptr, seen_idx: CSR rows of item positions each user already interacted with.
        popularity: Per task (and ``"_all"``), the item's positive count in training.
    """

    item_ids: list[str]
    user_ids: list[str]
    items: Batch
    users: Batch
    context: Batch
    seen_ptr: np.ndarray
    seen_idx: np.ndarray
    popularity: dict[str, np.ndarray]

    def user_row(self, user_id: str) -> int | None:
        """Row of a raw user id, or None for an unknown user."""
        index = getattr(self, "_user_index", None)
        if index is None:
            index = {u: i for i, u in enumerate(self.user_ids)}
            object.__setattr__(self, "_user_index", index)
        return index.get(str(user_id))

    def item_positions(self, item_ids: list[str]) -> np.ndarray:
        """Catalog positions of raw item ids (−1 for unknown ids)."""
        index = getattr(self, "_item_index", None)
        if index is None:
            index = pd.Index(self.item_ids)
            object.__setattr__(self, "_item_index", index)
        return np.asarray(index.get_indexer(pd.Index([str(i) for i in item_ids])), dtype=np.int64)

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
        """The JSON part (raw ids)."""
        return {"item_ids": self.item_ids, "user_ids": self.user_ids}

    @classmethod
    def load(cls, meta: dict[str, Any], flat: dict[str, Tensor]) -> Catalog:
        """Inverse of :meth:`meta` + :meth:`tensors`."""
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
        )


def build_catalog(
    frame: pd.DataFrame,
    train_mask: np.ndarray,
    proc: FittedProcessor,
    items_table: pd.DataFrame | None = None,
) -> Catalog:
    """Build the serving catalog from the full (time-sorted, merged) log.

    Args:
        frame: Every event, merged with user and item columns, in time order.
        train_mask: Rows of the training split (popularity is counted there only).
        proc: The fitted processor.
        items_table: The items table, so items never shown in the log are candidates too.
    """
    d = proc.cfg.data
    feats = proc.cfg.features
    item_frame = frame.drop_duplicates(d.item_col, keep="last")
    if items_table is not None:
        extra = items_table[~as_keys(items_table[d.item_col]).isin(as_keys(item_frame[d.item_col]))]
        if len(extra):
            item_frame = pd.concat([item_frame, extra], ignore_index=True)
    item_frame = item_frame.reset_index(drop=True)
    item_keys = as_keys(item_frame[d.item_col]).astype(str).tolist()
    user_frame = frame.drop_duplicates(d.user_col, keep="last").reset_index(drop=True)
    user_keys = as_keys(user_frame[d.user_col]).astype(str).tolist()
    empty_hist = HistoryInput(
        {f.name: np.zeros((len(item_frame), f.max_length), np.int64) for f in proc.histories},
        {},
        {},
    )
    items = proc.encode(item_frame, history=empty_hist)
    users = proc.encode(user_frame, history=_serving_history(frame, user_keys, proc))
    # One row of default context: the most frequent value of every context column.
    ctx_row = user_frame.iloc[:1].copy()
    for f in feats:
        if f.group in CONTEXT_GROUPS and f.kind != "history":
            col = frame[f.source_column]
            ctx_row[f.source_column] = col.median() if f.kind == "numeric" else col.mode().iloc[0]
    ctx_hist = HistoryInput(
        {f.name: np.zeros((1, f.max_length), np.int64) for f in proc.histories}, {}, {}
    )
    context = proc.encode(ctx_row, history=ctx_hist)
    # Seen items per user (the items each user interacted with anywhere in the log).
    src = _source_mask(frame, proc)
    item_pos = pd.Index(item_keys).get_indexer(pd.Index(as_keys(frame[d.item_col]).astype(str)))
    user_pos = pd.Index(user_keys).get_indexer(pd.Index(as_keys(frame[d.user_col]).astype(str)))
    pairs = pd.DataFrame({"u": user_pos[src], "i": item_pos[src]}).drop_duplicates()
    pairs = pairs.sort_values(["u", "i"])
    counts = np.bincount(pairs["u"].to_numpy(), minlength=len(user_keys))
    seen_ptr = np.concatenate([[0], np.cumsum(counts)])
    popularity = {"_all": np.bincount(item_pos[train_mask & src], minlength=len(item_keys))}
    for t in proc.tasks:
        col = frame[t.config.label]
        if t.config.type == "binary" and t.config.scope == "event":
            w = np.nan_to_num(FittedProcessor.label_values(col, t.config)) * train_mask
            popularity[t.config.name] = np.bincount(item_pos, weights=w, minlength=len(item_keys))
    return Catalog(
        item_keys, user_keys, items, users, context, seen_ptr, pairs["i"].to_numpy(), popularity
    )


def _source_mask(frame: pd.DataFrame, proc: FittedProcessor) -> np.ndarray:
    hist = proc.histories
    if hist and hist[0].history_filter:
        return frame[hist[0].history_filter].to_numpy(dtype=np.float64) == 1.0
    return np.ones(len(frame), dtype=bool)


def _serving_history(
    frame: pd.DataFrame, user_keys: list[str], proc: FittedProcessor
) -> HistoryInput:
    d = proc.cfg.data
    user = pd.Index(user_keys).get_indexer(pd.Index(as_keys(frame[d.user_col]).astype(str)))
    time = frame[d.time_col].to_numpy()
    items: dict[str, np.ndarray] = {}
    values: dict[str, np.ndarray] = {}
    gaps: dict[str, np.ndarray] = {}
    for f in proc.histories:
        is_src = (
            frame[f.history_filter].to_numpy(dtype=np.float64) == 1.0
            if f.history_filter
            else np.ones(len(frame), bool)
        )
        users, rows, valid = latest_history(user, time, is_src, f.max_length)
        codes = proc.history_item_codes(frame, f)
        mat = np.zeros((len(user_keys), f.max_length), np.int64)
        mat[users] = np.where(valid, codes[rows], 0)
        items[f.name] = mat
        if f.history_value:
            v = proc.scalers[f.name].transform(frame[f.history_value].to_numpy())
            vm = np.zeros((len(user_keys), f.max_length), np.float32)
            vm[users] = np.where(valid, v[rows], 0.0)
            values[f.name] = vm
        if proc.cfg.model.sequence.time_gaps:
            # At serving time the gap is measured from the user's latest event.
            t = pd.to_numeric(frame[d.time_col]).to_numpy(dtype=np.float64)
            last = t[rows[:, -1]]
            g = np.log1p(np.clip(last[:, None] - t[rows], 0, None) / GAP_SCALE_SECONDS)
            gm = np.zeros((len(user_keys), f.max_length), np.float32)
            gm[users] = np.where(valid, g, 0.0)
            gaps[f.name] = gm
    return HistoryInput(items, values, gaps)
