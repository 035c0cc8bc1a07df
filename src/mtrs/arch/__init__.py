"""Architectures: representation in, one vector per task out (no embeddings, no losses)."""

from __future__ import annotations

from mtrs.arch.base import ArchContext, Architecture, ArchOutput
from mtrs.arch.registry import ARCHITECTURES, get_architecture, register

# Importing the modules registers their architectures.
from mtrs.arch import esmm, moe, ple, shared_bottom, single  # noqa: F401  isort: skip

__all__ = [
    "ARCHITECTURES",
    "ArchContext",
    "ArchOutput",
    "Architecture",
    "get_architecture",
    "register",
]
