"""The one seam between the service and a scorer: :func:`load_backend`.

The service never builds a model itself; it asks :func:`load_backend` for a
:class:`~mtrs.recommend.recommender.Recommender`. The torch backend is the Recommender of
:func:`mtrs.artifact.load_model`; the ONNX backend is the same Recommender scored by
onnxruntime, from ``mtrs.export.onnx.load_recommender`` (the model exported once into a cache
keyed by its manifest digest).
"""

from __future__ import annotations

from pathlib import Path

from mtrs.errors import MtrsUserError
from mtrs.recommend.recommender import Recommender

BACKENDS = ("torch", "onnx")


def load_backend(model_dir: str | Path, backend: str = "torch") -> Recommender:
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
        import torch

        from mtrs.export.onnx import load_recommender  # onnx itself is imported lazily there

        # onnxruntime would take every core by default; it gets the threads torch was given.
        return load_recommender(Path(model_dir), threads=torch.get_num_threads())
    raise MtrsUserError(f"--backend: unknown backend '{backend}' ({', '.join(BACKENDS)})")
