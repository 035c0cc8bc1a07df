"""The training job on a log larger than memory: fit pass, collect pass, streamed epochs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from mtrs.config.models import JobConfig
from mtrs.data.batch import Batch
from mtrs.data.encoders import as_keys, merge_moments, moments
from mtrs.data.processor import FittedProcessor, HistoryInput
from mtrs.data.readers import read_table
from mtrs.data.split import TEST, TRAIN, VALID
from mtrs.data.stream import (
    Chunk,
    EncodedStream,
    KeyIndex,
    ParquetLog,
    TrainStream,
    eval_sample,
    fit_streaming,
)
from mtrs.eval.evaluator import evaluate
from mtrs.pipeline import Job, Prepared, build
from mtrs.recommend.catalog import CONTEXT_GROUPS, Catalog
from mtrs.train.trainer import Trainer


@dataclass
class CatalogState:
    """What serving needs, gathered chunk by chunk: latest rows, seen items, popularity."""

    proc: FittedProcessor
    items: KeyIndex = field(default_factory=KeyIndex)
    user_rows: list[pd.DataFrame] = field(default_factory=list)
    item_rows: list[pd.DataFrame] = field(default_factory=list)
    pair_parts: list[np.ndarray] = field(default_factory=list)
    popularity: dict[str, np.ndarray] = field(default_factory=dict)
    context_counts: dict[str, pd.Series] = field(default_factory=dict)
    context_moments: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    def _grow(self, name: str, values: np.ndarray, weights: np.ndarray) -> None:
        counts = np.bincount(values, weights=weights, minlength=len(self.items))
        old = self.popularity.get(name, np.zeros(0))
        out = np.zeros(len(self.items))
        out[: len(old)] += old
        out[: len(counts)] += counts
        self.popularity[name] = out

    def add(self, ch: Chunk, user: np.ndarray) -> None:
        """Fold one chunk in (``user``: its global user codes)."""
        d = self.proc.cfg.data
        df = ch.frame
        item = self.items.codes(df[d.item_col])
        self.user_rows.append(_latest(df.assign(_code=user)))
        self.item_rows.append(_latest(df.assign(_code=item)))
        if sum(len(f) for f in self.user_rows) > 4 * max(len(self.user_rows[0]), 1):
            self.user_rows = [_latest(pd.concat(self.user_rows))]
            self.item_rows = [_latest(pd.concat(self.item_rows))]
        src = _source_mask(df, self.proc)
        self.pair_parts.append(np.unique((user[src] << 32) | item[src]))
        if sum(len(p) for p in self.pair_parts) > 2 * len(self.pair_parts[0]) + 2**20:
            self.pair_parts = [self.pairs()]
        train = ch.split == TRAIN
        self._grow("_all", item, (train & src).astype(np.float64))
        for t in self.proc.tasks:
            if t.config.type == "binary" and t.config.scope == "event":
                w = np.nan_to_num(FittedProcessor.label_values(df[t.config.label], t.config))
                self._grow(t.config.name, item, w * train)
        for f in self.proc.cfg.features:
            if f.group in CONTEXT_GROUPS and f.kind != "history":
                col = df[f.source_column]
                if f.kind == "numeric":
                    m = moments(col.to_numpy(np.float64))
                    old = self.context_moments.get(f.name, (0.0, 0.0, 0.0))
                    self.context_moments[f.name] = merge_moments(old, m)
                else:
                    vc = col.value_counts()
                    prev = self.context_counts.get(f.name)
                    self.context_counts[f.name] = vc if prev is None else prev.add(vc, fill_value=0)

    def pairs(self) -> np.ndarray:
        """Distinct (user code << 32 | item code) of the source events so far, sorted."""
        if not self.pair_parts:
            return np.zeros(0, np.int64)
        return np.unique(np.concatenate(self.pair_parts))

    def catalog(
        self, user_keys: list[str], history: HistoryInput, items_table: pd.DataFrame | None
    ) -> Catalog:
        """The serving catalog (the same type ``build_catalog`` gives for in-memory jobs)."""
        d = self.proc.cfg.data
        proc = self.proc
        user_frame = _latest(pd.concat(self.user_rows)).sort_values("_code")
        user_frame = user_frame.drop(columns="_code").reset_index(drop=True)
        item_frame = _latest(pd.concat(self.item_rows)).sort_values("_code")
        item_frame = item_frame.drop(columns="_code").reset_index(drop=True)
        item_keys = [str(k) for k in self.items.index]
        if items_table is not None:
            extra = items_table[~as_keys(items_table[d.item_col]).isin(item_keys)]
            if len(extra):
                item_frame = pd.concat([item_frame, extra], ignore_index=True)
                item_keys += as_keys(extra[d.item_col]).astype(str).tolist()
        no_hist = HistoryInput(
            {f.name: np.zeros((len(item_frame), f.max_length), np.int64) for f in proc.histories},
            {},
            {},
        )
        items = proc.encode(item_frame, history=no_hist)
        users = proc.encode(user_frame, history=history)
        # Default context: the most frequent value (mean for numbers; a median needs the log).
        ctx_row = user_frame.iloc[:1].copy()
        for f in proc.cfg.features:
            if f.group in CONTEXT_GROUPS and f.kind != "history":
                if f.kind == "numeric":
                    ctx_row[f.source_column] = self.context_moments[f.name][1]
                else:
                    vc = self.context_counts[f.name]
                    ctx_row[f.source_column] = vc[vc == vc.max()].sort_index().index[0]
        ctx_hist = HistoryInput(
            {f.name: np.zeros((1, f.max_length), np.int64) for f in proc.histories}, {}, {}
        )
        context = proc.encode(ctx_row, history=ctx_hist)
        pairs = self.pairs()
        u = (pairs >> 32).astype(np.int64)
        i = (pairs & 0xFFFFFFFF).astype(np.int64)
        counts = np.bincount(u, minlength=len(user_keys))
        seen_ptr = np.concatenate([[0], np.cumsum(counts)])
        pop = {k: np.pad(v, (0, len(item_keys) - len(v))) for k, v in self.popularity.items()}
        return Catalog(item_keys, user_keys, items, users, context, seen_ptr, i, pop)


def _latest(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop_duplicates("_code", keep="last")


def _source_mask(frame: pd.DataFrame, proc: FittedProcessor) -> np.ndarray:
    hist = proc.histories
    if hist and hist[0].history_filter:
        return frame[hist[0].history_filter].to_numpy(dtype=np.float64) == 1.0
    return np.ones(len(frame), dtype=bool)


@dataclass
class Collected:
    """The collect pass's result: sampled evaluation rows and the serving catalog."""

    valid: Batch | None
    test: Batch | None
    catalog: Catalog | None
    empty: Batch


def collect(
    stream: EncodedStream,
    split_rows: np.ndarray,
    items_table: pd.DataFrame | None,
    with_catalog: bool = True,
) -> Collected:
    """One pass that keeps hash-sampled validation/test rows and (optionally) builds the catalog.

    The sample depends only on the split seed, each row's split and its position in the log,
    so a later pass over the same log with the same processor keeps the same rows.
    """
    cfg = stream.proc.cfg
    cap = cfg.data.eval_rows
    rates = {w: min(1.0, cap / max(int(split_rows[w]), 1)) for w in (VALID, TEST)}
    parts: dict[int, list[Batch]] = {VALID: [], TEST: []}
    state = CatalogState(stream.proc) if with_catalog else None
    empty: Batch | None = None
    for ch, batch in stream.encoded():
        empty = empty or batch.take(slice(0, 0))
        if state is not None:
            state.add(ch, batch.user.numpy())
        idx = eval_sample(ch.split, ch.start, rates, cfg.split.seed)
        for which in (VALID, TEST):
            rows = idx[ch.split[idx] == which]
            if len(rows):
                parts[which].append(batch.take(torch.from_numpy(rows)))
    catalog = None
    if state is not None:
        user_keys = [str(k) for k in stream.users.index]
        catalog = state.catalog(user_keys, stream.history.latest(len(user_keys)), items_table)

    def joined(which: int) -> Batch | None:
        if not parts[which]:
            return None
        b = Batch.concat(parts[which])
        return b.take(slice(0, cap)) if len(b) > cap else b

    assert empty is not None  # the log has rows (checked when it is opened)
    return Collected(joined(VALID), joined(TEST), catalog, empty)


def run_streaming_job(cfg: JobConfig, configure: Callable[[Trainer], None] | None = None) -> Job:
    """Train a job by streaming its Parquet log (see ``data.streaming``).

    Pass 1 fits the processor on the training rows; a collect pass keeps a sample of the
    validation and test rows and the serving catalog; each epoch re-reads the log and trains
    through a shuffle buffer of ``data.shuffle_buffer_rows`` rows.
    """
    d = cfg.data
    users = read_table(d.users, [d.user_col]) if d.users else None
    items = read_table(d.items, [d.item_col]) if d.items else None
    log = ParquetLog(cfg, users, items)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    with Progress(*columns, disable=not cfg.train.progress, transient=True) as progress:
        fit_task = progress.add_task("pass 1: fit", total=log.num_rows)
        log.on_rows = lambda n: progress.update(fit_task, completed=n)
        proc, split_rows = fit_streaming(log)
        stream = EncodedStream(log, proc)
        collect_task = progress.add_task("pass 2: evaluation rows, catalog", total=log.num_rows)
        log.on_rows = lambda n: progress.update(collect_task, completed=n)
        got = collect(stream, split_rows, items)
        log.on_rows = None
    evals = [b for b in (got.valid, got.test) if b is not None]
    full = Batch.concat(evals) if evals else got.empty
    n_valid = len(got.valid) if got.valid is not None else 0
    n_test = len(got.test) if got.test is not None else 0
    split = np.concatenate([np.full(n_valid, VALID, np.int8), np.full(n_test, TEST, np.int8)])
    prepared = Prepared(cfg, pd.DataFrame(), split, proc, full, items)
    model, tasks, relations = build(cfg, prepared)
    trainer = Trainer(model, tasks, cfg, relations)
    if configure is not None:
        configure(trainer)
    result = trainer.fit(TrainStream(stream, d.shuffle_buffer_rows), got.valid)
    test_metrics = (
        evaluate(model, got.test, tasks, relations, cfg.train.eval_batch_size, trainer.device)
        if got.test is not None
        else {}
    )
    model.cpu()
    return Job(cfg, prepared, model, tasks, relations, result, test_metrics, catalog=got.catalog)


def streamed_test_rows(cfg: JobConfig, proc: FittedProcessor) -> Batch | None:
    """The test rows a streamed job was scored on, re-read from its log without holding it.

    The rows per split (on which the sampling rate depends) come from a pass over only the
    columns the split reads; then every chunk is encoded with the saved processor and the same
    hash-sampled test rows as in :func:`run_streaming_job` are kept, so ``mtrs evaluate``
    reproduces the saved test metrics.
    """
    d = cfg.data
    users = read_table(d.users, [d.user_col]) if d.users else None
    items = read_table(d.items, [d.item_col]) if d.items else None
    log = ParquetLog(cfg, users, items)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    with Progress(*columns, disable=not cfg.train.progress, transient=True) as progress:
        count_task = progress.add_task("count rows per split", total=log.num_rows)
        log.on_rows = lambda n: progress.update(count_task, completed=n)
        split_rows = log.split_counts()
        encode_task = progress.add_task("encode test rows", total=log.num_rows)
        log.on_rows = lambda n: progress.update(encode_task, completed=n)
        test = collect(EncodedStream(log, proc), split_rows, items, with_catalog=False).test
        log.on_rows = None
    return test
