"""Name → architecture class registry (``model.architecture = "mmoe"``)."""

from __future__ import annotations

from collections.abc import Callable

from mtrs.arch.base import Architecture
from mtrs.errors import MtrsUserError

ARCHITECTURES: dict[str, type[Architecture]] = {}


def register(name: str) -> Callable[[type[Architecture]], type[Architecture]]:
    """Class decorator that makes an architecture available under ``name``."""

    def deco(cls: type[Architecture]) -> type[Architecture]:
        ARCHITECTURES[name] = cls
        return cls

    return deco


def get_architecture(name: str) -> type[Architecture]:
    """The class registered as ``name``; a clear error lists the known names otherwise."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise MtrsUserError(
            f"model.architecture: unknown architecture '{name}' (known: {known})"
        ) from None
