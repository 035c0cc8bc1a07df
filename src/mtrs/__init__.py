"""mtrs: multi-task recommender system — one model, several tasks, one list per task, merged.

The public API::

    import mtrs

    cfg = mtrs.load_config("configs/quickstart.toml")
    job = mtrs.train(cfg)                      # train with validation, score the test split
    print(job.test_metrics["click"]["auc"])
    mtrs.save(job, "runs/model")
    model = mtrs.load("runs/model")
    rec = model.recommender().recommend("42", k=10)   # per-task lists and the merged list
    rec.merged[0].item, rec.merged[0].title, rec.merged[0].score   # a RecommendedItem

``mtrs.ARCHITECTURES`` lists the architectures by name; ``mtrs.register_architecture(name)``
adds one. ``mtrs.datasets`` has the synthetic log (with its oracle) and MovieLens-100K;
``mtrs.experiments`` runs comparisons and ranking evaluations.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from mtrs.version import __version__

if TYPE_CHECKING:
    from mtrs import datasets, experiments
    from mtrs.api import load, save, train
    from mtrs.arch.registry import ARCHITECTURES
    from mtrs.arch.registry import register as register_architecture
    from mtrs.artifact import LoadedModel
    from mtrs.config.load import load_config
    from mtrs.config.models import JobConfig
    from mtrs.job import Job
    from mtrs.recommend.recommender import Recommendation, RecommendedItem, Recommender

# Public name → (module, attribute in it; None for the module itself). Imported on first use
# (PEP 562), so that ``import mtrs`` and the command line start without torch or pandas.
_LAZY: dict[str, tuple[str, str | None]] = {
    "ARCHITECTURES": ("mtrs.arch.registry", "ARCHITECTURES"),
    "Job": ("mtrs.job", "Job"),
    "JobConfig": ("mtrs.config.models", "JobConfig"),
    "LoadedModel": ("mtrs.artifact", "LoadedModel"),
    "Recommendation": ("mtrs.recommend.recommender", "Recommendation"),
    "RecommendedItem": ("mtrs.recommend.recommender", "RecommendedItem"),
    "Recommender": ("mtrs.recommend.recommender", "Recommender"),
    "datasets": ("mtrs.datasets", None),
    "experiments": ("mtrs.experiments", None),
    "load": ("mtrs.api", "load"),
    "load_config": ("mtrs.config.load", "load_config"),
    "register_architecture": ("mtrs.arch.registry", "register"),
    "save": ("mtrs.api", "save"),
    "train": ("mtrs.api", "train"),
}

__all__ = [
    "ARCHITECTURES",
    "Job",
    "JobConfig",
    "LoadedModel",
    "Recommendation",
    "RecommendedItem",
    "Recommender",
    "__version__",
    "datasets",
    "experiments",
    "load",
    "load_config",
    "register_architecture",
    "save",
    "train",
]


def __getattr__(name: str) -> Any:
    """The public API, imported on first access."""
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'mtrs' has no attribute {name!r}") from None
    value = importlib.import_module(module)
    if attr is not None:
        value = getattr(value, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


class _Package(types.ModuleType):
    """``mtrs`` itself: importing the subpackage ``mtrs.train`` does not shadow ``mtrs.train()``.

    The import system binds a subpackage to its parent's attribute of the same name; the
    public API's function of that name is kept (the subpackage stays in ``sys.modules``).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        lazy = _LAZY.get(name)
        if isinstance(value, types.ModuleType) and lazy is not None and lazy[1] is not None:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
