"""A switch that makes the layers run plain forward ops only (for graph export).

Training uses hand-written autograd Functions (:mod:`mtrs.layers.fused_experts`, the
feature-major expert mix, the ``index_add_`` lookup backward) and ``nn.EmbeddingBag``; they
compute the same values as plain tensor ops but export badly: an exporter cannot trace
through a custom Function, and ``EmbeddingBag`` becomes an ONNX ``Loop`` that onnxruntime
runs about 200× slower than a lookup and a masked mean. Inside :func:`plain_ops` every layer
takes its plain path, with the same weights and the same values.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

_PLAIN = [False]


def plain_ops_enabled() -> bool:
    """True inside :func:`plain_ops` (the layers then use plain forward ops only)."""
    return _PLAIN[0]


@contextmanager
def plain_ops() -> Iterator[None]:
    """Run the layers with plain forward ops (no custom autograd Function, no EmbeddingBag)."""
    before = _PLAIN[0]
    _PLAIN[0] = True
    try:
        yield
    finally:
        _PLAIN[0] = before
