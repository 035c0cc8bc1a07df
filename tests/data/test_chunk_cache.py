"""Tests for the on-disk cache of encoded training chunks."""

from __future__ import annotations

import gc

import pytest
import torch

from mtrs.data.batch import Batch
from mtrs.data.chunk_cache import ChunkCache


def _batch(rows: int, offset: int) -> Batch:
    codes = torch.arange(rows * 3, dtype=torch.long).reshape(rows, 3) + offset
    return Batch(
        cat=codes,
        num=codes.float() / 7.0,
        labels=torch.ones(rows, 2) * offset,
        mask=codes[:, :2] % 2 == 0,
        user=torch.arange(rows) + offset,
        multi={"genres": codes % 5},
        hist={"clicked/items": codes[:, :2]},  # a name with a slash stays one name
        hist_value={"clicked/items": codes[:, :2].float()},
        hist_gap={},
    )


def _same(a: Batch, b: Batch) -> bool:
    ta, tb = a.to_tensors(), b.to_tensors()
    return ta.keys() == tb.keys() and all(
        torch.equal(ta[k], tb[k]) and ta[k].dtype == tb[k].dtype for k in ta
    )


def test_batch_tensors_round_trip() -> None:
    b = _batch(4, 10)
    flat = b.to_tensors()
    assert sorted(flat) == sorted(
        ["cat", "num", "labels", "mask", "user", "multi/genres", "hist/clicked/items",
         "hist_value/clicked/items"]
    )  # fmt: skip
    back = Batch.from_tensors(flat)
    assert _same(back, b) and back.hist_gap == {}
    # A view of a larger tensor (a taken slice) is stored as its own rows.
    assert _same(Batch.from_tensors(b.take(slice(1, 3)).to_tensors()), b.take(slice(1, 3)))


def test_cache_gives_back_the_chunks_in_order_and_deletes_its_files() -> None:
    cache = ChunkCache()
    chunks = {0: _batch(3, 0), 2: _batch(5, 100), 3: _batch(1, 200)}
    for position, batch in chunks.items():
        cache.write(position, batch)
    with pytest.raises(RuntimeError, match="not complete"):
        next(cache.batches())
    cache.finish()
    got = list(cache.batches())
    assert len(got) == 3 and all(_same(g, e) for g, e in zip(got, chunks.values(), strict=True))
    odd = list(cache.batches(lambda p: p % 2 == 1))
    assert len(odd) == 1 and _same(odd[0], chunks[3])
    assert cache.nbytes == sum(p.stat().st_size for p in cache.directory.iterdir())
    with pytest.raises(RuntimeError, match="complete"):
        cache.write(4, _batch(1, 0))
    directory = cache.directory
    cache.close()
    assert not directory.exists()
    cache.close()  # twice is harmless


def test_cache_refuses_chunks_out_of_order_and_cleans_up_when_dropped() -> None:
    cache = ChunkCache()
    cache.write(1, _batch(2, 0))
    with pytest.raises(ValueError, match="chunk 1 written after chunk 1"):
        cache.write(1, _batch(2, 0))
    directory = cache.directory
    del cache
    gc.collect()
    assert not directory.exists()


def test_a_failed_write_is_one_clear_error_and_leaves_no_files(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mtrs.data.chunk_cache as cc
    from mtrs.errors import MtrsUserError

    def full_disk(tensors: object, path: str) -> None:
        raise OSError(28, "No space left on device")

    cache = ChunkCache()
    monkeypatch.setattr(cc, "save_file", full_disk)
    with pytest.raises(MtrsUserError, match=r"No space left on device.*cache_chunks = false"):
        cache.write(0, _batch(2, 0))
    assert not cache.directory.exists()
