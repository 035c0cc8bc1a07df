"""The one seam between the service and a scorer: :func:`load_backend`.

The service never builds a model itself; it asks :func:`load_backend` for an object with the
:class:`~mtrs.recommend.recommender.Recommender` interface (:class:`Scorer`). The torch
backend is the Recommender of :func:`mtrs.artifact.load_model`; the ONNX backend is whatever
``mtrs.export.onnx.load_recommender(model_dir)`` returns (the model exported once into a
cache keyed by its manifest digest, scored by onnxruntime).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mtrs.config.models import FeatureConfig
from mtrs.data.batch import Batch
from mtrs.data.processor import FittedProcessor
from mtrs.errors import MtrsUserError
from mtrs.recommend.catalog import Catalog
from mtrs.recommend.recommender import Recommendation, UserInput
from mtrs.tasks.taskset import TaskSet

BACKENDS = ("torch", "onnx")
ONNX_MODULE = "mtrs.export.onnx"


class Scorer(Protocol):
    """What the service uses of a :class:`~mtrs.recommend.recommender.Recommender`."""

    proc: FittedProcessor
    tasks: TaskSet
    catalog: Catalog
    list_tasks: list[str]

    def recommend(
        self,
        user_id: str,
        k: int | None = None,
        strategy: str | None = None,
        weights: dict[str, float] | None = None,
        candidates: list[str] | None = None,
        exclude_seen: bool | None = None,
        user: UserInput | None = None,
        context: Batch | None = None,
    ) -> Recommendation:
        """Top-K lists per task and the merged list."""
        ...

    def predict(
        self,
        user: int | UserInput,
        candidates: np.ndarray,
        context: Batch | None = None,
        tasks: list[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Per-task predictions of candidate positions."""
        ...

    def profile(self, user: int | UserInput, context: Batch | None = None) -> dict[str, Any]:
        """The user-scoped tasks' predictions."""
        ...

    def user_input(self, user_id: str) -> UserInput | None:
        """The catalog's input of a known user."""
        ...

    def blank_user(self) -> UserInput:
        """The input of a user the catalog lacks."""
        ...

    def context_features(self) -> dict[str, FeatureConfig]:
        """Context features by name."""
        ...

    def context_row(self, values: Mapping[str, Any]) -> Batch:
        """The default context with some features set."""
        ...


def load_backend(model_dir: str | Path, backend: str = "torch") -> Scorer:
    """Load a model directory (its manifest verified) as a scorer of the given backend.

    Args:
        model_dir: A model directory from ``mtrs train``.
        backend: ``torch`` (the PyTorch model) or ``onnx`` (needs ``mtrs.export.onnx``).

    Raises:
        MtrsUserError: Unknown backend, ONNX backend not available, or a broken directory.
    """
    if backend == "torch":
        from mtrs.artifact import load_model

        return load_model(model_dir).recommender()
    if backend == "onnx":
        try:
            module = importlib.import_module(ONNX_MODULE)
        except ModuleNotFoundError as err:
            if err.name is None or not ONNX_MODULE.startswith(err.name):
                missing = err.name or "a dependency"
                raise MtrsUserError(
                    f"--backend onnx: {missing} is not installed (pip install 'mtrs[onnx]')"
                ) from None
            raise MtrsUserError(
                f"--backend onnx: the ONNX backend ({ONNX_MODULE}) is not part of this "
                "installation; use --backend torch"
            ) from None
        loader = getattr(module, "load_recommender", None)
        if loader is None:
            raise MtrsUserError(
                f"--backend onnx: {ONNX_MODULE} has no load_recommender(model_dir); "
                "use --backend torch"
            )
        scorer: Scorer = loader(Path(model_dir))
        return scorer
    raise MtrsUserError(f"--backend: unknown backend '{backend}' ({', '.join(BACKENDS)})")
