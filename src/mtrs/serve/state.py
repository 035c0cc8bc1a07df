"""The model being served, swapped atomically on reload.

A request takes one reference, :meth:`ModelHolder.current`, at its start and uses only it, so
a reload that swaps in a new model mid-request lets the request finish on the old one (which
lives as long as a request holds it).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mtrs.errors import MtrsUserError
from mtrs.jsonio import json_safe
from mtrs.recommend.recommender import Recommender
from mtrs.serve.backend import load_backend


class NotReady(Exception):
    """No model is loaded yet."""


@dataclass(frozen=True)
class Served:
    """A loaded model and what the service says about it.

    Attributes:
        scorer: The backend's scorer (Recommender interface).
        directory: The model directory.
        backend: ``torch`` or ``onnx``.
        model_id: sha256 of the directory's ``manifest.json`` (which holds the sha256 of
            every other file), so equal ids mean the same model.
        loaded_at: When it was loaded (UTC).
        metrics: ``metrics.json`` (non-finite numbers as null).
    """

    scorer: Recommender
    directory: Path
    backend: str
    model_id: str
    loaded_at: datetime
    metrics: dict[str, Any] = field(default_factory=dict)


def model_id(directory: Path) -> str:
    """sha256 of ``manifest.json``.

    Raises:
        MtrsUserError: The directory has no readable manifest.
    """
    try:
        return hashlib.sha256((directory / "manifest.json").read_bytes()).hexdigest()
    except OSError:
        raise MtrsUserError(
            f"{directory}: not an mtrs model directory (no manifest.json)"
        ) from None


def load_served(directory: str | Path, backend: str = "torch") -> Served:
    """Load and verify a model directory (manifest checksums) for serving.

    Raises:
        MtrsUserError: A missing or broken directory, or an unavailable backend.
    """
    d = Path(directory)
    if not d.is_dir():
        raise MtrsUserError(f"{d}: model directory not found")
    digest = model_id(d)
    scorer = load_backend(d, backend)
    if model_id(d) != digest:
        raise MtrsUserError(f"{d}: the model directory changed while it was loaded; try again")
    try:
        metrics = json_safe(json.loads((d / "metrics.json").read_text("utf-8")))
    except (OSError, ValueError):
        metrics = {}
    return Served(scorer, d, backend, digest, datetime.now(UTC), metrics)


class ModelHolder:
    """The served model: read by every request, replaced by a reload. Thread-safe.

    Args:
        served: The model loaded at start (None: not ready until a reload).
    """

    def __init__(self, served: Served | None = None) -> None:
        self._served = served
        self._lock = threading.Lock()
        self.reload_lock = threading.Lock()

    def current(self) -> Served:
        """The model to use for one whole request.

        Raises:
            NotReady: No model is loaded.
        """
        with self._lock:
            served = self._served
        if served is None:
            raise NotReady
        return served

    @property
    def ready(self) -> bool:
        """Whether a model is loaded."""
        with self._lock:
            return self._served is not None

    def swap(self, served: Served) -> Served | None:
        """Put a new model in place; returns the previous one."""
        with self._lock:
            old, self._served = self._served, served
        return old
