"""Suite-wide fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def one_thread() -> Iterator[None]:
    """Run every test's torch work on one thread.

    The test models are tiny; with two OpenMP threads on two cores that other processes also
    use, threads spin-wait and a run can take 40× longer. Session-wide, so that module-scoped
    fixtures and the tests using them compute with the same thread count (same float sums):
    the determinism tests compare runs bit for bit.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
