"""The interactions log as a sequence of merged, checked, split chunks.

A log in memory is one chunk (:class:`FrameLog`); a Parquet log larger than memory is read
by row groups (:class:`ParquetLog`). Everything downstream — the processor's fit, the
histories, the catalog, the evaluation rows — reads chunks, so both are one data path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from mtrs.config.models import JobConfig
from mtrs.data.encoders import as_keys
from mtrs.data.negatives import add_negatives, event_units
from mtrs.data.readers import read_table
from mtrs.data.split import (
    TEST,
    TRAIN,
    VALID,
    SplitInput,
    assign_split,
    fraction_split,
    hash_uniform,
)
from mtrs.data.tables import (
    Tables,
    check_keys,
    check_side_tables,
    finish_rows,
    load_tables,
    merge_tables,
    parse_times,
)
from mtrs.errors import MtrsUserError

PARQUET_SUFFIXES = (".parquet", ".pq")
BYTES_PER_VALUE = 8


@dataclass
class Chunk:
    """One merged chunk of the log: its rows, their split and their global row numbers."""

    frame: pd.DataFrame
    split: np.ndarray
    start: int


class Log(Protocol):
    """What every reader of the log relies on."""

    cfg: JobConfig
    items: pd.DataFrame | None
    num_rows: int
    # Called with the rows read so far after every chunk (progress bars).
    on_rows: Callable[[int], None] | None
    # The log itself when it is in memory (some evaluations need every row at once).
    memory: FrameLog | None

    def chunks(self) -> Iterator[Chunk]:
        """Merged, checked, split chunks in time order."""
        ...

    def split_counts(self) -> np.ndarray:
        """Rows per split: train, validation, test."""
        ...


def row_hash_key(seed: int, salt: str) -> str:
    """The 16-character hash key of a per-row or per-unit draw (``salt`` names the draw)."""
    return f"{salt}{seed:d}".rjust(16, "0")[-16:]


def time_order(df: pd.DataFrame, cfg: JobConfig) -> np.ndarray:
    """Row positions of the events in time order (stable), the order histories assume."""
    return np.argsort(df[cfg.data.time_key].to_numpy(), kind="stable")


class FrameLog:
    """The whole log in memory: merged, checked, sorted by time and split — one chunk.

    With ``[data.negatives]`` the sampled rows are added first (:mod:`mtrs.data.negatives`),
    and each positive with its negatives is one split unit unless ``split.unit`` names one.

    Args:
        cfg: The job config (``[data]`` and ``[split]``).
        tables: Tables already in memory (else read from ``[data]``).

    Raises:
        MtrsUserError: Bad data (missing column, wrong type, empty table or training split).
    """

    def __init__(self, cfg: JobConfig, tables: Tables | None = None) -> None:
        tables = tables or load_tables(cfg)
        d = cfg.data
        # A column the interactions table has too is the interactions' after the join.
        checked = check_side_tables(tables, cfg) - set(tables.interactions.columns)
        if d.negatives is not None:
            tables = add_negatives(tables, cfg)
        df = finish_rows(merge_tables(tables, d), cfg, checked)
        order = time_order(df, cfg)
        df = df.iloc[order].reset_index(drop=True)
        # A positive and its sampled negatives are one event: one split unit by default.
        event = event_units(df) if d.negatives is not None else None
        if d.given_split:
            if tables.given is None:
                raise MtrsUserError("data.train: the given split's files were not read")
            split = tables.given[order]
        else:
            user = pd.factorize(df[d.user_key])[0]
            unit_col = cfg.split.unit
            if unit_col:
                unit = pd.factorize(df[unit_col])[0]
            else:
                unit = np.arange(len(df)) if event is None else event
            split = assign_split(SplitInput(user, df[d.time_key].to_numpy(), unit), cfg.split)
        if not (split == TRAIN).any():
            raise MtrsUserError(f"{d.log_name}: the training split is empty")
        self.cfg = cfg
        self.frame = df
        self.split = split
        self.items = tables.items
        self.num_rows = len(df)
        self.on_rows: Callable[[int], None] | None = None
        self.memory: FrameLog | None = self

    def chunks(self) -> Iterator[Chunk]:
        """The log as its one chunk."""
        yield Chunk(self.frame, self.split, 0)
        if self.on_rows is not None:
            self.on_rows(self.num_rows)

    def split_counts(self) -> np.ndarray:
        """Rows per split: train, validation, test."""
        return np.bincount(self.split, minlength=3)[:3].astype(np.int64)


def open_log(cfg: JobConfig, tables: Tables | None = None) -> FrameLog | ParquetLog:
    """The job's log: streamed by row groups when ``[data]`` asks for it, else in memory."""
    if tables is None and use_streaming(cfg):
        d = cfg.data
        users = read_table(d.users, [d.user_col]) if d.users else None
        items = read_table(d.items, [d.item_col]) if d.items else None
        return ParquetLog(cfg, users, items)
    return FrameLog(cfg, tables)


def use_streaming(cfg: JobConfig) -> bool:
    """Whether ``[data]`` asks for the streaming path (``auto`` estimates the size).

    Raises:
        MtrsUserError: ``streaming = "always"`` on a file that is not Parquet.
    """
    d = cfg.data
    if d.interactions is None:
        if d.streaming == "always":
            raise MtrsUserError(
                "data.streaming = 'always' needs one Parquet interactions file; given "
                "train/valid/test files are read in memory"
            )
        return False
    is_parquet = Path(d.interactions).suffix.lower() in PARQUET_SUFFIXES
    if d.streaming == "never":
        return False
    if d.streaming == "always":
        if not is_parquet:
            raise MtrsUserError(
                f"{d.interactions}: data.streaming = 'always' needs a Parquet interactions file"
            )
        return True
    if not is_parquet or not Path(d.interactions).is_file():
        return False
    meta = pq.ParquetFile(d.interactions).metadata
    cols = len(needed_columns(cfg, pq.ParquetFile(d.interactions).schema_arrow.names))
    return meta.num_rows * cols * BYTES_PER_VALUE > d.memory_budget_mb * 2**20


def needed_columns(cfg: JobConfig, available: list[str]) -> list[str]:
    """The interaction columns a job reads (the users and items tables supply the rest)."""
    d = cfg.data
    want = [c for c in (d.user_col, d.item_col, d.time_col) if c]
    for f in cfg.features:
        if f.kind != "history":
            want.append(f.source_column)
        want += [c for c in (f.history_filter, f.history_value) if c]
    for t in cfg.tasks:
        want += t.source_columns
    if cfg.split.unit:
        want.append(cfg.split.unit)
    return [c for c in dict.fromkeys(want) if c in available]


class ParquetLog:
    """The interactions file read in chunks, joined with the users and items tables.

    Args:
        cfg: The job config (``[data]`` and ``[split]``).
        users: The users table, if any (small, in memory).
        items: The items table, if any.
    """

    def __init__(
        self, cfg: JobConfig, users: pd.DataFrame | None, items: pd.DataFrame | None
    ) -> None:
        d = cfg.data
        if cfg.split.method == "leave_last":
            raise MtrsUserError(
                "split.method = 'leave_last' needs the whole log in memory; use random or "
                "temporal, or data.streaming = 'never'"
            )
        if d.negatives is not None:
            raise MtrsUserError(
                "data.negatives needs the log in memory (every user's whole item set decides "
                "what may be sampled); set data.streaming = 'never'"
            )
        self.cfg = cfg
        assert d.interactions is not None  # use_streaming: one interactions file
        self.path = Path(d.interactions)
        try:
            self.file = pq.ParquetFile(self.path)
        except Exception as err:  # pyarrow raises many types; the user needs the file named
            raise MtrsUserError(f"{self.path}: could not be read ({err})") from None
        names = self.file.schema_arrow.names
        check_keys(names, d, str(self.path))
        self.columns = needed_columns(cfg, names)
        self.num_rows = int(self.file.metadata.num_rows)
        if self.num_rows == 0:
            raise MtrsUserError(f"{self.path}: the table is empty")
        side = Tables(pd.DataFrame(), users, items)
        self.checked = check_side_tables(side, cfg) - set(names)
        self.users = users
        self.items = items
        self.memory: FrameLog | None = None
        # Called with the rows read so far after every chunk (progress bars).
        self.on_rows: Callable[[int], None] | None = None
        self.cuts = self._time_cuts() if cfg.split.method == "temporal" else None

    def _raw_chunks(self, columns: list[str]) -> Iterator[pd.DataFrame]:
        start = 0
        for rb in self.file.iter_batches(batch_size=self.cfg.data.chunk_rows, columns=columns):
            df = rb.to_pandas()
            # The rows' numbers in the file, so that messages name the file's row.
            df.index = pd.RangeIndex(start, start + len(df))
            start += len(df)
            yield df

    def _time_cuts(self) -> tuple[float, float, bool]:
        """The temporal split's cut times, exactly as ``np.quantile`` over the whole column.

        On sorted times the q-quantile only needs the two rows around ``q·(n−1)``, so one
        pass over the time column finds them.
        """
        s = self.cfg.split
        n = self.num_rows
        qs = [1.0 - s.test_fraction - s.valid_fraction, 1.0 - s.test_fraction]
        wanted = {}
        for q in qs:
            pos = q * (n - 1)
            lo = int(np.floor(pos))
            wanted[q] = (lo, min(lo + 1, n - 1), pos - lo)
        rows = {r for lo, hi, _ in wanted.values() for r in (lo, hi)} | {n - 1}
        found: dict[int, float] = {}
        start = 0
        for df in self._raw_chunks([self.cfg.data.time_key]):
            t = parse_times(df, self.cfg.data).to_numpy()
            for r in rows:
                if start <= r < start + len(t):
                    found[r] = t[r - start]
            start += len(t)
        t_valid, t_test = (
            float(np.quantile(np.array([found[lo], found[hi]]), frac))
            for lo, hi, frac in wanted.values()
        )
        # The in-memory split puts the last instant in test when nothing is strictly later.
        inclusive = s.test_fraction > 0 and not found[n - 1] > t_test
        return t_valid, t_test, inclusive

    def _split(self, df: pd.DataFrame, start: int) -> np.ndarray:
        s = self.cfg.split
        if self.cuts is not None:
            t_valid, t_test, inclusive = self.cuts
            t = df[self.cfg.data.time_key].to_numpy()
            part = np.full(len(df), TRAIN, dtype=np.int8)
            part[t > t_valid] = VALID
            part[(t >= t_test) if inclusive else (t > t_test)] = TEST
            return part
        if s.unit:
            keys = as_keys(df[s.unit]).astype(str).to_numpy(dtype=object)
            u = hash_uniform(keys, row_hash_key(s.seed, "u"))
        else:
            rows = np.arange(start, start + len(df), dtype=np.int64)
            u = hash_uniform(rows, row_hash_key(s.seed, "r"))
        return fraction_split(u, s)

    def split_counts(self) -> np.ndarray:
        """Rows per split (train, validation, test), reading only what the split depends on.

        The time column for a temporal split, the unit column for a random split by unit,
        nothing for a random split by row; a unit that only a joined table has needs the
        merged :meth:`chunks`.
        """
        d, s = self.cfg.data, self.cfg.split
        need = [d.time_key] if self.cuts is not None else [s.unit] if s.unit else []
        counts = np.zeros(3, np.int64)
        if any(c not in self.file.schema_arrow.names for c in need):
            for ch in self.chunks():
                counts += np.bincount(ch.split, minlength=3)[:3]
            return counts
        step = self.cfg.data.chunk_rows
        frames = (
            self._raw_chunks(need)
            if need
            else (
                pd.DataFrame(index=range(min(step, self.num_rows - i)))
                for i in range(0, self.num_rows, step)
            )
        )
        start = 0
        for df in frames:
            if self.cuts is not None:
                df[d.time_key] = parse_times(df, self.cfg.data)
            counts += np.bincount(self._split(df, start), minlength=3)[:3]
            start += len(df)
            if self.on_rows is not None:
                self.on_rows(start)
        return counts

    def chunks(self) -> Iterator[Chunk]:
        """Merged, checked, split chunks in file order.

        Raises:
            MtrsUserError: Events out of time order (naming the first such row), bad columns.
        """
        d = self.cfg.data
        start = 0
        last = None
        for raw in self._raw_chunks(self.columns):
            df = finish_rows(
                merge_tables(Tables(raw, self.users, self.items), d), self.cfg, self.checked
            )
            t = df[d.time_key].to_numpy()
            prev = np.concatenate([[t[0] if last is None else last], t[:-1]])
            bad = np.flatnonzero(t < prev)
            if len(bad):
                raise MtrsUserError(
                    f"{d.log_name}: streaming needs events sorted by '{d.time_col}'; data row "
                    f"{start + int(bad[0]) + 1} is earlier than the row before it (sort the file, "
                    "or set data.streaming = 'never')"
                )
            last = t[-1]
            yield Chunk(df, self._split(df, start), start)
            start += len(df)
            if self.on_rows is not None:
                self.on_rows(start)
