"""Items of an iterator produced ahead on a background thread (reading overlapped with training).

A streamed epoch reads, joins and encodes each chunk of the log (pyarrow, pandas, NumPy:
mostly outside the interpreter lock) and then trains on it (torch: likewise). Run in turn,
each waits for the other; :func:`prefetched` runs the producer on its own thread, at most
``depth`` items ahead, so the next chunk is encoded while the model trains on this one. The
items and their order are the producer's own: a seeded run gives the same steps.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

# How long a blocked hand-off waits before it looks again whether the other side stopped.
_POLL_SECONDS = 0.1


class _Raised:
    """An exception of the producer, to re-raise on the consumer's side."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


class _Producer(Generic[T]):
    """The background thread and its bounded queue."""

    def __init__(self, source: Iterator[T], depth: int) -> None:
        self.source = source
        self.items: queue.Queue[object] = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="mtrs-prefetch", daemon=True)

    def _put(self, item: object) -> bool:
        while not self.stop.is_set():
            try:
                self.items.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self.source:
                if not self._put(item):
                    return
        except BaseException as err:  # handed to the consumer, raised there
            self._put(_Raised(err))
            return
        self._put(_DONE)

    def close(self) -> None:
        """Stop the thread (it finishes the item it is on) and wait for it."""
        self.stop.set()
        while self.thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self.items.get_nowait()  # unblock a pending put
            self.thread.join(timeout=_POLL_SECONDS)
        close = getattr(self.source, "close", None)
        if close is not None:
            close()


def prefetched(source: Iterator[T], depth: int = 1) -> Iterator[T]:
    """``source``'s items, produced on a background thread up to ``depth`` items ahead.

    An exception of the producer is raised here, at the item where it happened. Closing
    this generator early (``break``, an error in the consumer) stops the thread and waits
    for it before returning, so nothing runs on behind the caller's back.

    Args:
        source: The iterator to run ahead (it runs entirely on the background thread).
        depth: How many finished items may wait (0 runs ``source`` here, not ahead).
    """
    if depth < 1:
        yield from source
        return
    producer: _Producer[T] = _Producer(source, depth)
    producer.thread.start()
    try:
        while True:
            item = producer.items.get()
            if item is _DONE:
                return
            if isinstance(item, _Raised):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        producer.close()
