"""Name → architecture class registry (``model.architecture = "mmoe"``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from mtrs.arch.base import ArchContext, Architecture
from mtrs.errors import MtrsUserError


class ArchitectureClass(Protocol):
    """What a registered name stands for: an :class:`Architecture` subclass built from a context.

    The class flags are read before anything is built (one model per task or one for all,
    which ``[[relations]]`` the architecture needs).
    """

    @property
    def hard_parallel(self) -> bool: ...

    @property
    def requires_relation(self) -> str | None: ...

    def __call__(self, ctx: ArchContext) -> Architecture: ...


C = TypeVar("C", bound=ArchitectureClass)

ARCHITECTURES: dict[str, ArchitectureClass] = {}


def register(name: str) -> Callable[[C], C]:
    """Class decorator that makes an architecture available under ``name``."""

    def deco(cls: C) -> C:
        ARCHITECTURES[name] = cls
        return cls

    return deco


def get_architecture(name: str) -> ArchitectureClass:
    """The class registered as ``name``; a clear error lists the known names otherwise."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise MtrsUserError(
            f"model.architecture: unknown architecture '{name}' (known: {known})"
        ) from None
