"""Joining the interactions table with the optional users and items tables."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from mtrs.config.models import DataConfig, JobConfig
from mtrs.data.readers import read_table
from mtrs.errors import MtrsUserError


@dataclass
class Tables:
    """The job's tables: events, plus one row per user and per item where given."""

    interactions: pd.DataFrame
    users: pd.DataFrame | None = None
    items: pd.DataFrame | None = None


def load_tables(cfg: JobConfig) -> Tables:
    """Read the tables named in ``[data]`` and check their key columns."""
    d = cfg.data
    inter = read_table(d.interactions, [d.user_col, d.item_col, d.time_col])
    users = read_table(d.users, [d.user_col]) if d.users else None
    items = read_table(d.items, [d.item_col]) if d.items else None
    return Tables(inter, users, items)


def _check_unique(df: pd.DataFrame, key: str, source: str) -> None:
    dup = df[key].duplicated()
    if dup.any():
        row = int(dup.to_numpy().argmax())
        raise MtrsUserError(
            f"{source}: duplicate {key} '{df[key].iloc[row]}' at data row {row + 1}"
        )


def merge_tables(tables: Tables, data: DataConfig) -> pd.DataFrame:
    """One frame per event with user and item columns attached (left joins on the ids)."""
    df = tables.interactions
    if tables.users is not None:
        _check_unique(tables.users, data.user_col, str(data.users))
        cols = [c for c in tables.users.columns if c == data.user_col or c not in df.columns]
        df = df.merge(tables.users[cols], on=data.user_col, how="left", validate="many_to_one")
    if tables.items is not None:
        _check_unique(tables.items, data.item_col, str(data.items))
        cols = [c for c in tables.items.columns if c == data.item_col or c not in df.columns]
        df = df.merge(tables.items[cols], on=data.item_col, how="left", validate="many_to_one")
    return df.reset_index(drop=True)


def check_columns(df: pd.DataFrame, cfg: JobConfig) -> None:
    """Every feature, label and condition column must exist after the join."""
    where = f"{cfg.data.interactions} (joined with users/items tables)"
    for f in cfg.features:
        cols = [] if f.kind == "history" else [f.source_column]
        cols += [c for c in (f.history_filter, f.history_value) if c]
        for c in cols:
            if c not in df.columns:
                raise MtrsUserError(f"{where}: feature '{f.name}' needs column '{c}', not found")
    for t in cfg.tasks:
        for c in [t.label, *([t.condition] if t.condition else [])]:
            if c not in df.columns:
                raise MtrsUserError(f"{where}: task '{t.name}' needs column '{c}', not found")
    for f in cfg.features:
        if f.kind == "numeric":
            col = df[f.source_column]
            if not pd.api.types.is_numeric_dtype(col):
                bad = pd.to_numeric(col, errors="coerce").isna() & col.notna()
                row = int(bad.to_numpy().argmax())
                raise MtrsUserError(
                    f"{where}: numeric feature '{f.name}' column '{f.source_column}' has "
                    f"non-numeric value '{col.iloc[row]}' at data row {row + 1}"
                )
    for t in cfg.tasks:
        col = df[t.label]
        if t.positive_value is not None:
            continue
        if t.type in ("binary", "regression") and not pd.api.types.is_numeric_dtype(col):
            bad = pd.to_numeric(col, errors="coerce").isna() & col.notna()
            row = int(bad.to_numpy().argmax())
            raise MtrsUserError(
                f"{where}: task '{t.name}' label column '{t.label}' has non-numeric value "
                f"'{col.iloc[row]}' at data row {row + 1}"
            )
        if t.type == "binary":
            v = col.to_numpy(dtype=float)
            bad_mask = ~((v == 0) | (v == 1) | pd.isna(v))
            if bad_mask.any():
                row = int(bad_mask.argmax())
                raise MtrsUserError(
                    f"{where}: binary task '{t.name}' label column '{t.label}' has value "
                    f"'{col.iloc[row]}' at data row {row + 1} (expected 0, 1 or empty)"
                )


def parse_times(df: pd.DataFrame, data: DataConfig) -> pd.Series:
    """The time column as numbers: numeric as it is, dates as Unix seconds.

    Raises:
        MtrsUserError: A column that is neither numeric nor dates.
    """
    col = df[data.time_col]
    if pd.api.types.is_numeric_dtype(col):
        return col
    try:
        return pd.to_datetime(col).astype("int64") // 10**9
    except (ValueError, TypeError):
        raise MtrsUserError(
            f"{data.interactions}: time column '{data.time_col}' is neither numeric nor a date"
        ) from None


def check_unit(df: pd.DataFrame, cfg: JobConfig) -> None:
    """``split.unit``, when set, must name a column of the merged rows."""
    unit = cfg.split.unit
    if unit is not None and unit not in df.columns:
        raise MtrsUserError(f"{cfg.data.interactions}: split.unit column '{unit}' not found")


def check_item_columns(data: DataConfig, items: pd.DataFrame | None) -> None:
    """``data.item_title_col`` and ``data.display_cols`` must name columns of the items table.

    Raises:
        MtrsUserError: A named column the items table lacks, or no items table at all.
    """
    named = [("data.item_title_col", data.item_title_col)] if data.item_title_col else []
    named += [("data.display_cols", c) for c in data.display_cols]
    for key, col in named:
        if items is None:
            raise MtrsUserError(
                f"{data.interactions}: {key} = '{col}' needs an items table (set data.items)"
            )
        if col not in items.columns:
            present = ", ".join(map(str, items.columns))
            raise MtrsUserError(
                f"{data.items or 'the items table'}: {key} = '{col}' is not a column of the "
                f"items table (columns present: {present})"
            )
