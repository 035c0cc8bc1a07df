"""Name → architecture class registry (``model.architecture = "mmoe"``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from mtrs.arch.base import ArchContext, Architecture
from mtrs.config.models import JobConfig, RelationConfig
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


def missing_relation(cls: ArchitectureClass, relations: Sequence[RelationConfig]) -> str | None:
    """Why an architecture cannot train on these ``[[relations]]`` (None when it can).

    ESMM (``requires_relation = "esmm"``) learns its child task only through a funnel; without
    one it would silently train independent towers.
    """
    need = cls.requires_relation
    if need is None or any(r.type == need for r in relations):
        return None
    return (
        f"needs a [[relations]] funnel of type '{need}': add a [[relations]] table with "
        'parent and child binary tasks (e.g. parent = "click", child = "purchase")'
    )


def check_architecture(cfg: JobConfig, name: str | None = None) -> ArchitectureClass:
    """The architecture class of a job, once the job has what it needs (e.g. a funnel).

    Args:
        cfg: The job config.
        name: The architecture (default ``cfg.model.architecture``).

    Raises:
        MtrsUserError: An unknown name, or a ``[[relations]]`` funnel the architecture needs
            is missing.
    """
    name = name or cfg.model.architecture
    cls = get_architecture(name)
    reason = missing_relation(cls, cfg.relations)
    if reason is not None:
        raise MtrsUserError(f"model.architecture: '{name}' {reason}")
    return cls
