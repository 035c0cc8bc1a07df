"""Joining the interactions table with the optional users and items tables."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mtrs.config.models import NO_ITEM, NO_TIME, NO_USER, DataConfig, JobConfig
from mtrs.data.encoders import as_keys
from mtrs.data.labels import derive_labels
from mtrs.data.readers import data_row, read_table
from mtrs.errors import MtrsUserError

KEY_FIELDS = (("user_col", "user id"), ("item_col", "item id"), ("time_col", "event time"))


@dataclass
class Tables:
    """The job's tables: events, plus one row per user and per item where given.

    ``given`` is each event's split (0 train, 1 validation, 2 test) when the split is given
    by files (``data.train``/``valid``/``test``).
    """

    interactions: pd.DataFrame
    users: pd.DataFrame | None = None
    items: pd.DataFrame | None = None
    given: np.ndarray | None = None


def check_keys(columns: list[str], data: DataConfig, source: str) -> None:
    """The log's key columns that ``[data]`` names must be there.

    Raises:
        MtrsUserError: Naming the ``data.*_col`` field, the file and the columns present.
    """
    for field, what in KEY_FIELDS:
        col = getattr(data, field)
        if col and col not in columns:
            present = ", ".join(map(str, columns))
            raise MtrsUserError(
                f"{source}: data.{field}: column '{col}' not found (columns present: "
                f'{present}); name the log\'s {what} column, or set data.{field} = "" '
                "if it has none"
            )


def load_tables(cfg: JobConfig) -> Tables:
    """Read the tables named in ``[data]`` and check their key columns.

    Given train, validation and test files are read and stacked, in that order.
    """
    d = cfg.data
    frames = []
    for path in d.log_files:
        df = read_table(path)
        check_keys(list(df.columns), d, path)
        frames.append(df)
    given = None
    if d.given_split:
        parts = [p for p in ("train", "valid", "test") if getattr(d, p) is not None]
        _check_same_columns(frames, d.log_files)
        codes = {"train": 0, "valid": 1, "test": 2}
        given = np.concatenate(
            [np.full(len(f), codes[p], np.int8) for f, p in zip(frames, parts, strict=True)]
        )
        inter = pd.concat(frames, ignore_index=True)
    else:
        inter = frames[0]
    users = read_table(d.users, [d.user_col]) if d.users else None
    items = read_table(d.items, [d.item_col]) if d.items else None
    return Tables(inter, users, items, given)


def _check_same_columns(frames: list[pd.DataFrame], paths: list[str]) -> None:
    """Given split files share their columns (a column in one only would be half missing)."""
    first = set(frames[0].columns)
    for f, p in zip(frames[1:], paths[1:], strict=True):
        extra = sorted(set(f.columns) ^ first)
        if extra:
            raise MtrsUserError(
                f"{p}: column '{extra[0]}' is in only one of {paths[0]} and {p}; the given "
                "train/valid/test files need the same columns"
            )


def add_key_standins(df: pd.DataFrame, data: DataConfig) -> pd.DataFrame:
    """Constant stand-ins for the key columns a log does not have (an empty ``*_col``)."""
    if not data.user_col:
        df[NO_USER] = ""
    if not data.item_col:
        df[NO_ITEM] = ""
    if not data.time_col:
        df[NO_TIME] = 0
    return df


def finish_rows(
    df: pd.DataFrame, cfg: JobConfig, checked: frozenset[str] = frozenset()
) -> pd.DataFrame:
    """Merged rows made ready: key stand-ins, columns checked, labels derived, times parsed.

    ``checked``: numeric columns already checked where they come from (the side tables, see
    :func:`check_side_tables`), not checked again on every joined row.
    """
    d = cfg.data
    df = add_key_standins(df, d)
    check_columns(df, cfg, checked)
    df = derive_labels(df, cfg.tasks, d.log_name)
    check_labels(df, cfg)
    df[d.time_key] = parse_times(df, d)
    check_unit(df, cfg)
    return df.reset_index(drop=True)


def _check_unique(df: pd.DataFrame, key: str, source: str) -> None:
    dup = df[key].duplicated()
    if dup.any():
        row = int(dup.to_numpy().argmax())
        raise MtrsUserError(
            f"{source}: duplicate {key} '{df[key].iloc[row]}' at data row {data_row(df, row)}"
        )


def check_ids(df: pd.DataFrame, key: str, field: str, source: str) -> None:
    """Every row has an id in ``key`` (``field`` names the config key for the message).

    Raises:
        MtrsUserError: A missing or infinite id, naming the first row and how many.
    """
    if key not in df.columns:
        return
    col = df[key]
    bad = col.isna().to_numpy().copy()
    if pd.api.types.is_float_dtype(col):
        bad |= np.isinf(col.to_numpy(dtype=np.float64))
    if bad.any():
        row = int(bad.argmax())
        shown = "empty" if pd.isna(col.iloc[row]) else f"'{col.iloc[row]}'"
        raise MtrsUserError(
            f"{source}: {field} '{key}' is {shown} at data row {data_row(col, row)} "
            f"({int(bad.sum())} of "
            f"{len(col)} rows); every row needs an id"
        )


def _join(df: pd.DataFrame, table: pd.DataFrame, key: str) -> pd.DataFrame:
    """Left join on ``key``; ids of different types (1 vs 1.0 vs "1") match as text."""
    cols = [c for c in table.columns if c == key or c not in df.columns]
    right = table[cols]
    if df[key].dtype != right[key].dtype:
        tmp = "__mtrs_join_key__"
        left = df.assign(**{tmp: as_keys(df[key]).to_numpy(dtype=object)})
        right = right.assign(**{tmp: as_keys(right[key]).to_numpy(dtype=object)})
        out = left.merge(right.drop(columns=[key]), on=tmp, how="left", validate="many_to_one")
        return out.drop(columns=[tmp])
    return df.merge(right, on=key, how="left", validate="many_to_one")


def merge_tables(tables: Tables, data: DataConfig) -> pd.DataFrame:
    """One frame per event with user and item columns attached (left joins on the ids).

    Raises:
        MtrsUserError: A missing id in any table, or an id twice in the users or items table.
    """
    df = tables.interactions
    where = data.log_name
    check_ids(df, data.user_col, "data.user_col", where)
    check_ids(df, data.item_col, "data.item_col", where)
    if tables.users is not None:
        check_ids(tables.users, data.user_col, "data.user_col", str(data.users))
        _check_unique(tables.users, data.user_col, str(data.users))
        df = _join(df, tables.users, data.user_col)
    if tables.items is not None:
        check_ids(tables.items, data.item_col, "data.item_col", str(data.items))
        _check_unique(tables.items, data.item_col, str(data.items))
        df = _join(df, tables.items, data.item_col)
    # Left joins keep the rows and their order: the index stays the rows' numbers in the file.
    df.index = tables.interactions.index
    return df


def _where(cfg: JobConfig) -> str:
    return f"{cfg.data.log_name} (joined with users/items tables)"


def check_columns(df: pd.DataFrame, cfg: JobConfig, checked: frozenset[str] = frozenset()) -> None:
    """Every feature, label and condition column must exist after the join; numbers be numbers.

    Numeric columns in ``checked`` were checked in their own table already.
    """
    where = _where(cfg)
    for f in cfg.features:
        cols = [] if f.kind == "history" else [f.source_column]
        cols += [c for c in (f.history_filter, f.history_value) if c]
        for c in cols:
            if c not in df.columns:
                raise MtrsUserError(f"{where}: feature '{f.name}' needs column '{c}', not found")
    for t in cfg.tasks:
        for c in t.source_columns:
            if c not in df.columns:
                raise MtrsUserError(f"{where}: task '{t.name}' needs column '{c}', not found")
    for f in cfg.features:
        if f.kind == "numeric" and f.source_column not in checked:
            check_numbers(df[f.source_column], where, f"numeric feature '{f.name}'")


def check_numbers(col: pd.Series, where: str, what: str) -> None:
    """A numeric column holds numbers (missing is fine: it means unknown), none infinite.

    Raises:
        MtrsUserError: Naming ``where`` (the file), ``what``, the column, the value and the row.
    """
    if not pd.api.types.is_numeric_dtype(col):
        bad = (pd.to_numeric(col, errors="coerce").isna() & col.notna()).to_numpy()
        if bad.any():
            row = int(bad.argmax())
            raise MtrsUserError(
                f"{where}: {what} column '{col.name}' has non-numeric value "
                f"'{col.iloc[row]}' at data row {data_row(col, row)}"
            )
        col = pd.to_numeric(col, errors="coerce")
    v = col.to_numpy(dtype=np.float64, na_value=np.nan)
    inf = np.isinf(v)
    if inf.any():
        row = int(inf.argmax())
        raise MtrsUserError(
            f"{where}: {what} column '{col.name}' has infinite value {v[row]} at data row "
            f"{data_row(col, row)} ({int(inf.sum())} rows); numbers must be finite (empty means "
            "unknown)"
        )


def check_side_tables(tables: Tables, cfg: JobConfig) -> frozenset[str]:
    """Numeric columns of the users and items tables, checked where they are (file and row).

    Returns:
        The columns checked (the joined rows need not check them again).
    """
    checked: set[str] = set()
    for table, path in ((tables.users, cfg.data.users), (tables.items, cfg.data.items)):
        if table is None:
            continue
        for f in cfg.features:
            if f.kind == "numeric" and f.source_column in table.columns:
                check_numbers(table[f.source_column], str(path), f"numeric feature '{f.name}'")
                checked.add(f.source_column)
    return frozenset(checked)


def check_labels(df: pd.DataFrame, cfg: JobConfig) -> None:
    """Binary labels are 0, 1 or empty; binary and regression labels are numbers."""
    where = _where(cfg)
    for t in cfg.tasks:
        if t.positive_value is not None or not isinstance(t.label, str):
            continue  # a derived label is 0, 1 or empty by construction
        col = df[t.label]
        if t.type in ("binary", "regression"):
            check_numbers(col, where, f"task '{t.name}' label")
        if t.type == "binary":
            v = col.to_numpy(dtype=float)
            bad_mask = ~((v == 0) | (v == 1) | pd.isna(v))
            if bad_mask.any():
                row = int(bad_mask.argmax())
                raise MtrsUserError(
                    f"{where}: binary task '{t.name}' label column '{t.label}' has value "
                    f"'{col.iloc[row]}' at data row {data_row(col, row)} (expected 0, 1 or empty; "
                    "or derive "
                    f'it: label = {{column = "{t.label}", at_least = ...}})'
                )


def parse_times(df: pd.DataFrame, data: DataConfig) -> pd.Series:
    """The time column as numbers: numeric as it is, dates as Unix seconds.

    Raises:
        MtrsUserError: A missing, infinite or unparseable time, naming the first such row
            and how many there are; a column that is neither numeric nor dates.
    """
    col = df[data.time_key]
    if pd.api.types.is_numeric_dtype(col):
        values = col.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        out = col
    else:
        with warnings.catch_warnings():
            # pandas warns when it cannot infer one format; the rows that fail are named below.
            warnings.simplefilter("ignore", UserWarning)
            try:
                parsed = pd.to_datetime(col, errors="coerce", utc=True)
            except (ValueError, TypeError):
                raise MtrsUserError(
                    f"{data.log_name}: time column '{data.time_col}' is neither numeric nor a date"
                ) from None
        bad = parsed.isna().to_numpy()
        out = pd.Series(parsed.astype("int64") // 10**9, index=col.index)
    if bad.any():
        row = int(bad.argmax())
        value = col.iloc[row]
        shown = "empty" if pd.isna(value) else f"'{value}'"
        raise MtrsUserError(
            f"{data.log_name}: time column '{data.time_col}' is {shown} at data row "
            f"{data_row(col, row)} ({int(bad.sum())} of {len(col)} rows are missing or not a "
            "time); "
            'fill or drop them, or set data.time_col = "" if the log has no times'
        )
    return out


def check_unit(df: pd.DataFrame, cfg: JobConfig) -> None:
    """``split.unit``, when set, must name a column of the merged rows."""
    unit = cfg.split.unit
    if unit is not None and unit not in df.columns:
        raise MtrsUserError(f"{cfg.data.log_name}: split.unit column '{unit}' not found")


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
                f"{data.log_name}: {key} = '{col}' needs an items table (set data.items)"
            )
        if col not in items.columns:
            present = ", ".join(map(str, items.columns))
            raise MtrsUserError(
                f"{data.items or 'the items table'}: {key} = '{col}' is not a column of the "
                f"items table (columns present: {present})"
            )
