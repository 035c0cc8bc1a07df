"""Streaming a Parquet log by row groups: split, fit and encode without holding the log."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from mtrs.config.models import JobConfig
from mtrs.data.batch import Batch
from mtrs.data.encoders import (
    Scaler,
    Vocabulary,
    as_keys,
    merge_moments,
    moments,
    multi_hot_tokens,
)
from mtrs.data.history import history_indices, latest_history
from mtrs.data.processor import GAP_SCALE_SECONDS, FittedProcessor, HistoryInput, TaskEncoding
from mtrs.data.profiles import hold_out_profiles
from mtrs.data.split import TEST, TRAIN, VALID
from mtrs.data.tables import Tables, check_columns, merge_tables
from mtrs.errors import MtrsUserError

PARQUET_SUFFIXES = (".parquet", ".pq")
BYTES_PER_VALUE = 8
Moments = tuple[float, float, float]


def use_streaming(cfg: JobConfig) -> bool:
    """Whether ``[data]`` asks for the streaming path (``auto`` estimates the size).

    Raises:
        MtrsUserError: ``streaming = "always"`` on a file that is not Parquet.
    """
    d = cfg.data
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
    want = [d.user_col, d.item_col, d.time_col]
    for f in cfg.features:
        if f.kind != "history":
            want.append(f.source_column)
        want += [c for c in (f.history_filter, f.history_value) if c]
    for t in cfg.tasks:
        want += [t.label, *([t.condition] if t.condition else [])]
    if cfg.split.unit:
        want.append(cfg.split.unit)
    return [c for c in dict.fromkeys(want) if c in available]


def _uniform(values: np.ndarray, seed: int, salt: str) -> np.ndarray:
    """A seeded, stable hash of each value mapped to [0, 1) (same value → same number)."""
    key = f"{salt}{seed:d}".rjust(16, "0")[-16:]
    h = pd.util.hash_array(values, hash_key=key, categorize=False)
    return (h >> np.uint64(11)).astype(np.float64) / float(2**53)


class KeyIndex:
    """Raw ids → dense codes in order of first appearance, grown chunk by chunk."""

    def __init__(self) -> None:
        self.index = pd.Index([], dtype=object)

    def codes(self, values: pd.Series) -> np.ndarray:
        """Codes of ``values``, adding ids not seen before."""
        keys = pd.Index(as_keys(values).astype(object), dtype=object)
        idx = self.index.get_indexer(keys)
        if (idx < 0).any():
            fresh = pd.unique(keys[idx < 0].to_numpy())
            self.index = self.index.append(pd.Index(fresh, dtype=object))
            idx = self.index.get_indexer(keys)
        return idx.astype(np.int64)

    def __len__(self) -> int:
        return len(self.index)


@dataclass
class Chunk:
    """One merged chunk of the log: its rows, their split and their global row numbers."""

    frame: pd.DataFrame
    split: np.ndarray
    start: int


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
        self.cfg = cfg
        self.path = Path(d.interactions)
        try:
            self.file = pq.ParquetFile(self.path)
        except Exception as err:  # pyarrow raises many types; the user needs the file named
            raise MtrsUserError(f"{self.path}: could not be read ({err})") from None
        names = self.file.schema_arrow.names
        for c in (d.user_col, d.item_col, d.time_col):
            if c not in names:
                raise MtrsUserError(f"{self.path}: missing column '{c}'")
        self.columns = needed_columns(cfg, names)
        self.num_rows = int(self.file.metadata.num_rows)
        if self.num_rows == 0:
            raise MtrsUserError(f"{self.path}: the table is empty")
        self.users = users
        self.items = items
        # Called with the rows read so far after every chunk (progress bars).
        self.on_rows: Callable[[int], None] | None = None
        self.cuts = self._time_cuts() if cfg.split.method == "temporal" else None

    def _raw_chunks(self, columns: list[str]) -> Iterator[pd.DataFrame]:
        for rb in self.file.iter_batches(batch_size=self.cfg.data.chunk_rows, columns=columns):
            yield rb.to_pandas()

    def _times(self, df: pd.DataFrame) -> pd.Series:
        d = self.cfg.data
        col = df[d.time_col]
        if pd.api.types.is_numeric_dtype(col):
            return col
        try:
            return pd.to_datetime(col).astype("int64") // 10**9
        except (ValueError, TypeError):
            raise MtrsUserError(
                f"{d.interactions}: time column '{d.time_col}' is neither numeric nor a date"
            ) from None

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
        for df in self._raw_chunks([self.cfg.data.time_col]):
            t = self._times(df).to_numpy()
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
            t = df[self.cfg.data.time_col].to_numpy()
            part = np.full(len(df), TRAIN, dtype=np.int8)
            part[t > t_valid] = VALID
            part[(t >= t_test) if inclusive else (t > t_test)] = TEST
            return part
        if s.unit:
            u = _uniform(as_keys(df[s.unit]).astype(str).to_numpy(dtype=object), s.seed, "u")
        else:
            u = _uniform(np.arange(start, start + len(df), dtype=np.int64), s.seed, "r")
        return np.where(
            u < s.test_fraction,
            TEST,
            np.where(u < s.test_fraction + s.valid_fraction, VALID, TRAIN),
        ).astype(np.int8)

    def split_counts(self) -> np.ndarray:
        """Rows per split (train, validation, test), reading only what the split depends on.

        The time column for a temporal split, the unit column for a random split by unit,
        nothing for a random split by row; a unit that only a joined table has needs the
        merged :meth:`chunks`.
        """
        d, s = self.cfg.data, self.cfg.split
        need = [d.time_col] if self.cuts is not None else [s.unit] if s.unit else []
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
                df[d.time_col] = self._times(df)
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
            df = merge_tables(Tables(raw, self.users, self.items), d)
            check_columns(df, self.cfg)
            if self.cfg.split.unit and self.cfg.split.unit not in df.columns:
                raise MtrsUserError(
                    f"{d.interactions}: split.unit column '{self.cfg.split.unit}' not found"
                )
            df[d.time_col] = self._times(df)
            t = df[d.time_col].to_numpy()
            prev = np.concatenate([[t[0] if last is None else last], t[:-1]])
            bad = np.flatnonzero(t < prev)
            if len(bad):
                raise MtrsUserError(
                    f"{d.interactions}: streaming needs events sorted by '{d.time_col}'; data row "
                    f"{start + int(bad[0]) + 1} is earlier than the row before it (sort the file, "
                    "or set data.streaming = 'never')"
                )
            last = t[-1]
            yield Chunk(df, self._split(df, start), start)
            start += len(df)
            if self.on_rows is not None:
                self.on_rows(start)


@dataclass
class FitStats:
    """What pass 1 learns from the training rows, chunk by chunk."""

    counts: dict[str, pd.Series] = field(default_factory=dict)
    moments: dict[str, Moments] = field(default_factory=dict)
    classes: dict[str, set[str]] = field(default_factory=dict)
    split_rows: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=np.int64))

    def add_counts(self, name: str, keys: pd.Series) -> None:
        """Add a chunk's value counts of one feature."""
        vc = keys.dropna().value_counts()
        old = self.counts.get(name)
        self.counts[name] = vc if old is None else old.add(vc, fill_value=0)

    def add_moments(self, name: str, values: np.ndarray, log1p: bool = False) -> None:
        """Add a chunk's moments of one numeric column."""
        m = moments(values, log1p)
        self.moments[name] = merge_moments(self.moments.get(name, (0.0, 0.0, 0.0)), m)


def fit_streaming(log: ParquetLog) -> tuple[FittedProcessor, np.ndarray]:
    """Pass 1: fit the processor on the training rows of every chunk.

    Returns:
        The fitted processor (the same vocabularies as the in-memory fit) and the rows per
        split (train, validation, test).
    """
    cfg = log.cfg
    st = FitStats()
    for ch in log.chunks():
        st.split_rows += np.bincount(ch.split, minlength=3)[:3]
        train = ch.frame[ch.split == TRAIN]
        for f in cfg.features:
            if f.kind == "categorical" and not f.hash_buckets:
                st.add_counts(f.name, as_keys(train[f.source_column]))
            elif f.kind == "numeric":
                st.add_moments(f.name, train[f.source_column].to_numpy(np.float64), f.log1p)
            elif f.kind == "multi_hot":
                st.add_counts(f.name, multi_hot_tokens(train[f.source_column], f.separator))
            elif f.kind == "history" and f.history_value:
                st.add_moments(f.name, train[f.history_value].to_numpy(np.float64))
        for t in cfg.tasks:
            if t.type == "multiclass":
                keys = as_keys(train[t.label]).dropna().unique().tolist()
                st.classes.setdefault(t.name, set()).update(str(k) for k in keys)
            elif t.type == "regression":
                st.add_moments(t.name, FittedProcessor.label_values(train[t.label], t))
    if st.split_rows[TRAIN] == 0:
        raise MtrsUserError(f"{cfg.data.interactions}: the training split is empty")
    vocabs: dict[str, Vocabulary] = {}
    scalers: dict[str, Scaler] = {}
    empty = pd.Series([], dtype="int64")
    for f in cfg.features:
        if f.kind in ("categorical", "multi_hot"):
            counts = st.counts.get(f.name, empty).astype(np.int64)
            buckets = f.hash_buckets if f.kind == "categorical" else 0  # as the in-memory fit
            vocabs[f.name] = Vocabulary.from_counts(counts, f.min_count, buckets)
        elif f.kind == "numeric" or (f.kind == "history" and f.history_value):
            log1p = f.log1p if f.kind == "numeric" else False
            scalers[f.name] = Scaler.from_moments(*st.moments[f.name], log1p=log1p)
    tasks: list[TaskEncoding] = []
    for t in cfg.tasks:
        if t.type == "multiclass":
            # The in-memory fit on the distinct classes gives the same classes and errors.
            classes = pd.DataFrame({t.label: sorted(st.classes.get(t.name, set()))})
            tasks.append(FittedProcessor._fit_task(classes, t))
        elif t.type == "regression":
            tasks.append(TaskEncoding(t, scaler=Scaler.from_moments(*st.moments[t.name])))
        else:
            tasks.append(TaskEncoding(t))
    return FittedProcessor(cfg, vocabs, scalers, tasks), st.split_rows


class HistoryState:
    """Each user's last source events, carried from chunk to chunk.

    Per history feature it keeps, for every user, the last ``max_length`` source events and
    the last ``max_length`` strictly before the user's latest instant (so a chunk boundary
    that splits events at one instant still yields the in-memory histories).
    """

    def __init__(self, proc: FittedProcessor) -> None:
        self.proc = proc
        self.state: dict[str, pd.DataFrame] = {}

    def chunk_histories(self, df: pd.DataFrame, user: np.ndarray, start: int) -> HistoryInput:
        """Histories of a chunk's rows (global ``user`` codes), then the state moves on."""
        d = self.proc.cfg.data
        items: dict[str, np.ndarray] = {}
        values: dict[str, np.ndarray] = {}
        gaps: dict[str, np.ndarray] = {}
        n = len(df)
        time = pd.to_numeric(df[d.time_col]).to_numpy(dtype=np.float64)
        for f in self.proc.histories:
            assert f.item_feature is not None
            is_src = (
                df[f.history_filter].to_numpy(dtype=np.float64) == 1.0
                if f.history_filter
                else np.ones(n, dtype=bool)
            )
            rows_here = pd.DataFrame(
                {
                    "user": user,
                    "time": time,
                    "code": self.proc.history_item_codes(df, f),
                    "value": (
                        df[f.history_value].to_numpy(dtype=np.float64)
                        if f.history_value
                        else np.zeros(n)
                    ),
                    "row": np.arange(start, start + n, dtype=np.int64),
                    "src": is_src,
                }
            )
            old = self.state.get(f.name)
            in_chunk = old["user"].isin(np.unique(user)).to_numpy() if old is not None else None
            prefix = old[in_chunk] if old is not None and in_chunk is not None else None
            both = rows_here if prefix is None else pd.concat([prefix, rows_here])
            both = both.reset_index(drop=True)
            u = both["user"].to_numpy()
            t = both["time"].to_numpy()
            src = both["src"].to_numpy()
            rows, valid = history_indices(u, t, src, f.max_length)
            rows, valid = rows[-n:], valid[-n:]
            items[f.name] = np.where(valid, both["code"].to_numpy()[rows], 0)
            if f.history_value:
                v = self.proc.scalers[f.name].transform(both["value"].to_numpy())
                values[f.name] = np.where(valid, v[rows], 0.0).astype(np.float32)
            if self.proc.cfg.model.sequence.time_gaps:
                g = np.log1p(np.clip(time[:, None] - t[rows], 0, None) / GAP_SCALE_SECONDS)
                gaps[f.name] = np.where(valid, g, 0.0).astype(np.float32)
            keep = _keep_rows(u, t, src, f.max_length)
            kept = both.iloc[keep]
            rest = old[~in_chunk] if old is not None and in_chunk is not None else None
            new = kept if rest is None else pd.concat([rest, kept], ignore_index=True)
            self.state[f.name] = new.sort_values("row", kind="stable").reset_index(drop=True)
        return HistoryInput(items, values, gaps)

    def latest(self, num_users: int) -> HistoryInput:
        """Every user's serving history (last N source events), rows in user-code order."""
        items: dict[str, np.ndarray] = {}
        values: dict[str, np.ndarray] = {}
        gaps: dict[str, np.ndarray] = {}
        for f in self.proc.histories:
            st = self.state.get(f.name)
            mat = np.zeros((num_users, f.max_length), np.int64)
            vm = np.zeros((num_users, f.max_length), np.float32)
            gm = np.zeros((num_users, f.max_length), np.float32)
            if st is not None and len(st):
                u = st["user"].to_numpy()
                t = st["time"].to_numpy()
                users, rows, valid = latest_history(u, t, np.ones(len(st), bool), f.max_length)
                mat[users] = np.where(valid, st["code"].to_numpy()[rows], 0)
                if f.history_value:
                    v = self.proc.scalers[f.name].transform(st["value"].to_numpy())
                    vm[users] = np.where(valid, v[rows], 0.0)
                last = t[rows[:, -1]]
                g = np.log1p(np.clip(last[:, None] - t[rows], 0, None) / GAP_SCALE_SECONDS)
                gm[users] = np.where(valid, g, 0.0)
            items[f.name] = mat
            if f.history_value:
                values[f.name] = vm
            if self.proc.cfg.model.sequence.time_gaps:
                gaps[f.name] = gm
        return HistoryInput(items, values, gaps)


def _keep_rows(u: np.ndarray, t: np.ndarray, src: np.ndarray, n: int) -> np.ndarray:
    """Rows to carry: each user's last ``n`` source events and last ``n`` before its last time."""
    if not src.any():
        return np.zeros(0, dtype=np.int64)
    last_t = pd.Series(t[src]).groupby(u[src]).max()
    user_last = last_t.reindex(u).to_numpy()
    _, rows_a, valid_a = latest_history(u, t, src, n)
    earlier = src & (t < user_last)
    keep = [rows_a[valid_a]]
    if earlier.any():
        _, rows_b, valid_b = latest_history(u, t, earlier, n)
        keep.append(rows_b[valid_b])
    return np.unique(np.concatenate(keep))


class EncodedStream:
    """Pass 2: encoded chunks with global user codes and histories across chunk boundaries.

    Args:
        log: The chunked log.
        proc: The processor fitted in pass 1.
    """

    def __init__(self, log: ParquetLog, proc: FittedProcessor) -> None:
        self.log = log
        self.proc = proc
        self.users = KeyIndex()
        self.history = HistoryState(proc)

    def reset(self) -> None:
        """Start again from the first row (a new epoch)."""
        self.users = KeyIndex()
        self.history = HistoryState(self.proc)

    def encoded(self) -> Iterator[tuple[Chunk, Batch]]:
        """Every chunk with its encoded rows (all splits)."""
        self.reset()
        user_col = self.proc.cfg.data.user_col
        for ch in self.log.chunks():
            user = self.users.codes(ch.frame[user_col])
            hist = self.history.chunk_histories(ch.frame, user, ch.start)
            batch = self.proc.encode(ch.frame, history=hist)
            batch.user = torch.from_numpy(user)
            hold_out_profiles(batch, ch.frame[user_col], ch.split, self.proc.cfg)
            yield ch, batch


class TrainStream:
    """The training rows of an :class:`EncodedStream`, for ``Trainer.fit`` (a ``BatchStream``)."""

    def __init__(self, stream: EncodedStream, buffer_rows: int) -> None:
        self.stream = stream
        self.buffer_rows = buffer_rows

    def batches(self, epoch: int) -> Iterator[Batch]:
        """The training rows of every chunk, in file order."""
        for ch, batch in self.stream.encoded():
            idx = np.flatnonzero(ch.split == TRAIN)
            if len(idx):
                yield batch.take(torch.from_numpy(idx))


def eval_sample(split: np.ndarray, start: int, rates: dict[int, float], seed: int) -> np.ndarray:
    """Rows of a chunk kept for validation / test metrics (hash-sampled at ``rates``)."""
    u = _uniform(np.arange(start, start + len(split), dtype=np.int64), seed, "e")
    keep = np.zeros(len(split), dtype=bool)
    for which, rate in rates.items():
        keep |= (split == which) & (u < rate)
    return np.flatnonzero(keep)


__all__ = [
    "EncodedStream",
    "ParquetLog",
    "TrainStream",
    "eval_sample",
    "fit_streaming",
    "needed_columns",
    "use_streaming",
]
