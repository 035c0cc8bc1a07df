"""Dynamic batching of ``/v1/recommend``: the requests that wait together are scored together.

One worker thread owns the model work. Each request is queued as a job (with the model it was
taken against, so a reload never changes the model under a request); the worker takes every
job already waiting, up to ``max_batch``, and answers them with one
:meth:`~mtrs.recommend.recommender.Recommender.recommend_many` call per model. Under load the
per-pass cost is shared by the batch; alone, a request is scored at once (nothing waits for a
batch to fill). One thread doing the model work also stops concurrent requests from
contending for the interpreter and the intra-op threads, which cost more than the work itself
at eight clients.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass

from mtrs.errors import MtrsUserError
from mtrs.recommend.recommender import Recommendation, RecommendRequest
from mtrs.serve.state import Served

DEFAULT_MAX_BATCH = 32


@dataclass(frozen=True)
class _Job:
    served: Served
    request: RecommendRequest
    future: Future[Recommendation]


class RecommendBatcher:
    """Queues recommend requests and answers them in batches on one worker thread.

    Args:
        max_batch: The most requests one model pass answers.
    """

    def __init__(self, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.requests = 0

    def submit(self, served: Served, request: RecommendRequest) -> Future[Recommendation]:
        """Queue one request against ``served``; the future holds its answer or user error."""
        future: Future[Recommendation] = Future()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="mtrs-recommend", daemon=True
                )
                self._thread.start()
            self._queue.put(_Job(served, request, future))
        return future

    def close(self) -> None:
        """Stop the worker after the jobs already queued (a later submit starts a new one)."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs = [job]
            stop = False
            while len(jobs) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                jobs.append(more)
            self._answer(jobs)
            if stop:
                return

    def _answer(self, jobs: list[_Job]) -> None:
        groups: dict[int, list[_Job]] = {}
        for job in jobs:
            if job.future.set_running_or_notify_cancel():
                groups.setdefault(id(job.served), []).append(job)
        for group in groups.values():
            self.batches += 1
            self.requests += len(group)
            try:
                answers = group[0].served.scorer.recommend_many([j.request for j in group])
            except Exception as err:  # a bug: every request of the batch answers 500
                for j in group:
                    j.future.set_exception(err)
                continue
            for j, answer in zip(group, answers, strict=True):
                if isinstance(answer, MtrsUserError):
                    j.future.set_exception(answer)
                else:
                    j.future.set_result(answer)


__all__ = ["DEFAULT_MAX_BATCH", "RecommendBatcher"]
