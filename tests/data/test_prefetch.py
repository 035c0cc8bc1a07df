"""Prefetching on a background thread keeps the items and their order, runs ahead by at most
``depth`` items, raises the producer's errors in the consumer and stops when closed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from mtrs.data.prefetch import prefetched


def _wait_for(condition: object, seconds: float = 5.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.005)
    return False


def test_items_come_in_order_from_another_thread() -> None:
    threads: list[str] = []

    def source() -> Iterator[int]:
        for i in range(50):
            threads.append(threading.current_thread().name)
            yield i * i

    assert list(prefetched(source(), depth=2)) == [i * i for i in range(50)]
    assert set(threads) == {"mtrs-prefetch"}


def test_depth_zero_runs_the_source_in_the_caller() -> None:
    threads: list[str] = []

    def source() -> Iterator[int]:
        for i in range(3):
            threads.append(threading.current_thread().name)
            yield i

    assert list(prefetched(source(), depth=0)) == [0, 1, 2]
    assert threads == [threading.current_thread().name] * 3


@pytest.mark.parametrize("depth", [1, 3])
def test_the_producer_runs_ahead_by_at_most_depth_items(depth: int) -> None:
    produced: list[int] = []

    def source() -> Iterator[int]:
        for i in range(20):
            produced.append(i)
            yield i

    it = prefetched(source(), depth=depth)
    assert next(it) == 0
    # While the consumer holds item 0, the producer fills the queue (depth items) and
    # computes one more that waits to be put: no further.
    assert _wait_for(lambda: len(produced) == depth + 2)
    time.sleep(0.2)
    assert len(produced) == depth + 2
    assert list(it) == list(range(1, 20))


def test_an_error_of_the_producer_is_raised_after_the_items_before_it() -> None:
    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("chunk 3 is broken")

    got: list[int] = []
    with pytest.raises(ValueError, match="chunk 3 is broken"):
        for item in prefetched(source()):
            got.append(item)
    assert got == [1, 2]


def test_closing_early_stops_the_producer_and_closes_the_source() -> None:
    closed = threading.Event()

    def endless() -> Iterator[int]:
        i = 0
        try:
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    it = prefetched(endless(), depth=2)
    assert [next(it), next(it)] == [0, 1]
    it.close()
    assert closed.is_set()
    assert not any(t.name == "mtrs-prefetch" and t.is_alive() for t in threading.enumerate())
