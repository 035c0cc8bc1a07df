"""A job's data made ready: the log read, the processor fitted, rows encoded, the catalog built.

In memory or streamed, it is one path over the chunks of the log (see :mod:`mtrs.data.log`):
pass 1 fits the processor on the training rows of every chunk, pass 2 encodes every chunk
(histories carried across chunks), builds the serving catalog and keeps the evaluation rows.
A log in memory is one chunk and keeps every row; a streamed log keeps a hash-sampled share of
the validation and test rows and re-reads its training rows every epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from mtrs.config.models import JobConfig
from mtrs.data.batch import Batch
from mtrs.data.chunk_cache import ChunkCache
from mtrs.data.fitter import ProcessorFitter
from mtrs.data.log import FrameLog, Log, open_log
from mtrs.data.processor import FittedProcessor
from mtrs.data.split import TEST, TRAIN, VALID
from mtrs.data.stream import EncodedStream, TrainStream, eval_sample, train_rows
from mtrs.data.tables import Tables, check_item_columns
from mtrs.errors import MtrsUserError
from mtrs.recommend.catalog import Catalog, CatalogBuilder


@dataclass
class Prepared:
    """A job's data after the processor fit: what training, evaluation and serving read.

    Attributes:
        log: Where the rows come from (``log.memory`` is the frame when it is in memory).
        train: The training rows: one batch in memory, else a stream re-read every epoch.
        valid, test: The evaluation rows (None when the split has none); when streamed, a
            hash-sampled share of at most ``data.eval_rows`` rows.
        catalog: What serving needs from the whole log (items, users' latest state, seen
            items, training popularity).
    """

    cfg: JobConfig
    log: Log
    processor: FittedProcessor
    catalog: Catalog
    train: Batch | TrainStream
    valid: Batch | None
    test: Batch | None

    def in_memory(self) -> FrameLog:
        """The log held in memory (the frame and its split).

        Raises:
            MtrsUserError: The log is streamed.
        """
        if self.log.memory is None:
            raise MtrsUserError(
                f"{self.cfg.data.log_name}: this needs the log in memory "
                "(set data.streaming = 'never')"
            )
        return self.log.memory

    def all_rows(self) -> Batch:
        """Every row of a log in memory, encoded exactly as for training (all splits).

        Raises:
            MtrsUserError: The log is streamed.
        """
        ((_, batch),) = EncodedStream(self.in_memory(), self.processor).encoded()
        return batch


def fit_processor(log: Log) -> tuple[FittedProcessor, np.ndarray]:
    """Pass 1: fit the processor on the training rows of every chunk.

    Returns:
        The fitted processor and the rows per split (train, validation, test).

    Raises:
        MtrsUserError: The training split is empty.
    """
    fitter = ProcessorFitter(log.cfg)
    split_rows = np.zeros(3, dtype=np.int64)
    for ch in log.chunks():
        split_rows += np.bincount(ch.split, minlength=3)[:3]
        fitter.add(ch.frame[ch.split == TRAIN])
    if split_rows[TRAIN] == 0:
        raise MtrsUserError(f"{log.cfg.data.log_name}: the training split is empty")
    return FittedProcessor.from_fitter(fitter), split_rows


@dataclass
class Collected:
    """Pass 2's result: the evaluation rows, all rows in memory, and the catalog."""

    valid: Batch | None
    test: Batch | None
    catalog: Catalog | None
    full: Batch | None


def collect(
    stream: EncodedStream,
    split_rows: np.ndarray,
    with_catalog: bool = True,
    cache: ChunkCache | None = None,
) -> Collected:
    """Pass 2: encode every chunk, keep the evaluation rows and (optionally) build the catalog.

    A log in memory keeps every row. A streamed log keeps validation and test rows sampled
    by a hash of the split seed and each row's position, at the rates that leave about
    ``data.eval_rows`` of each, so a later pass over the same log keeps the same rows; with a
    ``cache``, it also writes each chunk's training rows there.
    """
    cfg = stream.proc.cfg
    in_memory = stream.log.memory is not None
    cap = cfg.data.eval_rows
    rates = {w: min(1.0, cap / max(int(split_rows[w]), 1)) for w in (VALID, TEST)}
    parts: dict[int, list[Batch]] = {VALID: [], TEST: []}
    builder = CatalogBuilder(stream.proc) if with_catalog else None
    full: Batch | None = None
    for position, (ch, batch) in enumerate(stream.encoded()):
        if builder is not None:
            builder.add(ch.frame, batch.user.numpy(), ch.split == TRAIN, ch.start)
        if cache is not None and (rows := train_rows(ch, batch)) is not None:
            cache.write(position, rows)
        if in_memory:
            full = batch
            idx = np.arange(len(ch.split))
        else:
            idx = eval_sample(ch.split, ch.start, rates, cfg.split.seed)
        for which in (VALID, TEST):
            rows = idx[ch.split[idx] == which]
            if len(rows):
                parts[which].append(batch.take(torch.from_numpy(rows)))
    if cache is not None:
        cache.finish()
    catalog = None
    if builder is not None:
        n_users = len(stream.users)
        catalog = builder.finish(
            stream.users.keys(), stream.history.latest(n_users), stream.log.items
        )

    def joined(which: int) -> Batch | None:
        if not parts[which]:
            return None
        b = Batch.concat(parts[which]) if len(parts[which]) > 1 else parts[which][0]
        return b.take(slice(0, cap)) if len(b) > cap and not in_memory else b

    return Collected(joined(VALID), joined(TEST), catalog, full)


@contextmanager
def _passes(cfg: JobConfig, log: Log) -> Iterator[Callable[[str], None]]:
    """Progress bars for the passes over a streamed log (a log in memory needs none)."""
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    show = cfg.train.progress and log.memory is None
    with Progress(*columns, disable=not show, transient=True) as progress:

        def start(title: str) -> None:
            task = progress.add_task(title, total=log.num_rows)
            log.on_rows = lambda n: progress.update(task, completed=n)

        try:
            yield start
        finally:
            log.on_rows = None


def prepare(
    cfg: JobConfig,
    tables: Tables | None = None,
    processor: FittedProcessor | None = None,
    share: Callable[[Callable[[], FittedProcessor]], FittedProcessor] | None = None,
) -> Prepared:
    """Read the log (in memory or streamed), fit the processor, encode, build the catalog.

    Args:
        cfg: The job config.
        tables: Tables already in memory (else read from ``[data]``).
        processor: An already fitted processor (evaluating a saved model); else fitted on the
            training split here.
        share: Under data parallelism: given the fit, runs it on rank 0 only and returns the
            processor rank 0 fitted on every rank (so all ranks encode identically).

    Raises:
        MtrsUserError: Bad data (missing column, wrong type, empty table or split).
    """
    log = open_log(cfg, tables)
    check_item_columns(cfg.data, log.items)
    with _passes(cfg, log) as start:
        counted: list[np.ndarray] = []
        if processor is None and share is not None:

            def fit() -> FittedProcessor:
                start("pass 1: fit")
                fitted, rows = fit_processor(log)
                counted.append(rows)
                return fitted

            processor = share(fit)
        if processor is None:
            start("pass 1: fit")
            processor, split_rows = fit_processor(log)
        else:
            split_rows = counted[0] if counted else log.split_counts()
        stream = EncodedStream(log, processor)
        cache = ChunkCache() if log.memory is None and cfg.data.cache_chunks else None
        start("pass 2: evaluation rows, catalog" + (", encoded training rows" if cache else ""))
        got = collect(stream, split_rows, cache=cache)
    assert got.catalog is not None
    train: Batch | TrainStream
    if got.full is not None:
        memory = log.memory
        assert memory is not None
        is_train = memory.split == TRAIN
        # No copy when every row trains (e.g. a benchmark without held-out rows).
        train = (
            got.full
            if is_train.all()
            else got.full.take(torch.from_numpy(np.flatnonzero(is_train)))
        )
    else:
        train = TrainStream(stream, cfg.data.shuffle_buffer_rows, cfg.data.prefetch_chunks, cache)
    return Prepared(cfg, log, processor, got.catalog, train, got.valid, got.test)


def read_test_rows(cfg: JobConfig, processor: FittedProcessor) -> Batch | None:
    """The test rows a job was scored on, re-read with its saved processor.

    For a streamed log the rows per split (on which the sampling rate depends) come from a
    pass over only the columns the split reads; then the chunks are encoded and the same
    hash-sampled test rows are kept, so re-scoring reproduces the saved test metrics without
    holding the log.
    """
    log = open_log(cfg)
    with _passes(cfg, log) as start:
        start("count rows per split")
        split_rows = log.split_counts()
        start("encode test rows")
        return collect(EncodedStream(log, processor), split_rows, with_catalog=False).test
