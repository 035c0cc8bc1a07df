"""Encoded chunks of a log: global user codes, histories across chunks, epochs and samples."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

from mtrs.data.batch import Batch
from mtrs.data.chunk_cache import ChunkCache
from mtrs.data.encoders import KeyIndex
from mtrs.data.history import HistoryBuilder
from mtrs.data.log import Chunk, Log, row_hash_key
from mtrs.data.prefetch import prefetched
from mtrs.data.processor import FittedProcessor
from mtrs.data.profiles import hold_out_profiles
from mtrs.data.split import TRAIN, hash_uniform


class EncodedStream:
    """Every chunk of a log encoded, with user codes and histories that cross chunk boundaries.

    Args:
        log: The chunked log (one chunk when it is in memory).
        proc: The fitted processor.
    """

    def __init__(self, log: Log, proc: FittedProcessor) -> None:
        self.log = log
        self.proc = proc
        self.users = KeyIndex()
        self.history = HistoryBuilder(proc)

    def reset(self) -> None:
        """Start again from the first row (a new epoch)."""
        self.users = KeyIndex()
        self.history = HistoryBuilder(self.proc)

    def encoded(self, keep: Callable[[int], bool] | None = None) -> Iterator[tuple[Chunk, Batch]]:
        """Every chunk with its encoded rows (all splits).

        Args:
            keep: Which chunks (by position) to encode and yield; the others still feed the
                user codes and behaviour histories, which run across the whole log in order.
        """
        self.reset()
        user_col = self.proc.cfg.data.user_key
        for i, ch in enumerate(self.log.chunks()):
            user = self.users.codes(ch.frame[user_col])
            hist = self.history.add(ch.frame, user, ch.start)
            if keep is not None and not keep(i):
                continue
            batch = self.proc.encode(ch.frame, history=hist)
            batch.user = torch.from_numpy(user)
            hold_out_profiles(batch, ch.frame[user_col], ch.split, self.proc.cfg)
            yield ch, batch


def train_rows(chunk: Chunk, batch: Batch) -> Batch | None:
    """The training rows of an encoded chunk (None when it has none)."""
    idx = np.flatnonzero(chunk.split == TRAIN)
    return batch.take(torch.from_numpy(idx)) if len(idx) else None


class TrainStream:
    """The training rows of an :class:`EncodedStream`, for ``Trainer.fit`` (a ``BatchStream``).

    Args:
        stream: The encoded chunks.
        buffer_rows: Rows of the trainer's shuffle buffer.
        prefetch: Chunks read and encoded ahead on a background thread (0: none).
        cache: The training rows already encoded (filled by the preparation pass); when it is
            complete, epochs read it instead of reading and encoding the log.
    """

    def __init__(
        self,
        stream: EncodedStream,
        buffer_rows: int,
        prefetch: int = 0,
        cache: ChunkCache | None = None,
    ) -> None:
        self.stream = stream
        self.buffer_rows = buffer_rows
        self.prefetch = prefetch
        self.cache = cache
        # (rank, world) under data parallelism: chunk i trains on rank i mod world, so every
        # row trains exactly once per epoch, on one rank.
        self.shard = (0, 1)

    def batches(self, epoch: int) -> Iterator[Batch]:
        """The training rows of every chunk (of this rank's chunks), in file order, read up
        to ``prefetch`` chunks ahead of the caller."""
        return prefetched(self._batches(), self.prefetch)

    def _batches(self) -> Iterator[Batch]:
        rank, world = self.shard
        keep = None if world == 1 else (lambda i: i % world == rank)
        if self.cache is not None and self.cache.complete:
            yield from self.cache.batches(keep)
            return
        for ch, batch in self.stream.encoded(keep):
            rows = train_rows(ch, batch)
            if rows is not None:
                yield rows


def eval_sample(split: np.ndarray, start: int, rates: dict[int, float], seed: int) -> np.ndarray:
    """Rows of a chunk kept for validation / test metrics (hash-sampled at ``rates``).

    The draw depends only on the seed and each row's global position, so any later pass over
    the same log keeps the same rows.
    """
    rows = np.arange(start, start + len(split), dtype=np.int64)
    u = hash_uniform(rows, row_hash_key(seed, "e"))
    keep = np.zeros(len(split), dtype=bool)
    for which, rate in rates.items():
        keep |= (split == which) & (u < rate)
    return np.flatnonzero(keep)
