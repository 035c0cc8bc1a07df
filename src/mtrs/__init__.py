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

from mtrs import datasets, experiments
from mtrs.api import load, save, train
from mtrs.arch.registry import ARCHITECTURES
from mtrs.arch.registry import register as register_architecture
from mtrs.artifact import LoadedModel
from mtrs.config.load import load_config
from mtrs.config.models import JobConfig
from mtrs.job import Job
from mtrs.recommend.recommender import Recommendation, RecommendedItem, Recommender
from mtrs.version import __version__

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
