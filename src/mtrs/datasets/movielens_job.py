"""The MovieLens-100K multi-task job: its ratings-only tables and its config.

The config's ``[data.negatives]`` samples the non-interactions (label ``interact``) when the
log is read, with the generic mechanism of :mod:`mtrs.data.negatives`.

See ``docs/movielens.md``: tasks interact / like / rating (given interact) and the user's
gender and age group (profiling), one shared model, ranked lists over the whole catalogue.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mtrs.arch import ARCHITECTURES
from mtrs.config.load import config_from_dict, dump_config
from mtrs.config.models import JobConfig
from mtrs.data.tables import Tables
from mtrs.datasets.movielens import MovieLens100K, build_multitask_tables, write_tables
from mtrs.errors import MtrsUserError

# Chosen on the validation period of seed 0 (merged-list NDCG@10; docs/movielens.md): six
# epochs with a cosine learning-rate decay, a user-id embedding with 5% id dropout to its
# cold-start vector, and the conditional tasks (like, rating) at weight 0.1, which limits their
# negative transfer onto the interaction task.
DEFAULT_EPOCHS = 6
CONDITIONAL_WEIGHT = 0.1
USER_ID_OOV_RATE = 0.05


def _feature(name: str, kind: str, group: str, **options: Any) -> dict[str, Any]:
    return {"name": name, "kind": kind, "group": group, **options}


def _task(name: str, kind: str, **options: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, "label": name, **options}


def movielens_config(
    architecture: str = "shared_bottom",
    seed: int = 0,
    epochs: int | None = None,
    negatives: int = 4,
    popularity: float = 0.0,
) -> JobConfig:
    """The MovieLens-100K multi-task job (see ``docs/movielens.md``), built in code.

    The history's side value is the ``rating`` label itself: a past rating is a legitimate
    input while the current event's rating is a target, and the history reads only strictly
    earlier events. An architecture that trains through a funnel (ESMM) gets the
    relation interact → like; the others get none. ``[data.negatives]`` gives every rating
    ``negatives`` movies the user never rated (label ``interact``: 1 rated, 0 sampled).

    Args:
        architecture: A name registered in :data:`mtrs.arch.ARCHITECTURES`.
        seed: Seed of initialisation and shuffling, and of the negative sampling.
        epochs: Training epochs (default 6; early stopping on ``interact/auc``).
        negatives: Sampled non-interactions per rating (``data.negatives.per_positive``).
        popularity: α of the negatives' distribution, p(item) ∝ (ratings of the item + 1)^α:
            0 draws uniformly; 0.75 (word2vec's choice) or 1 draws popular movies more often,
            harder negatives for a ranker. The counts are the whole data set's.
    """
    if not 0.0 <= popularity <= 2.0:
        raise MtrsUserError(f"popularity must lie in [0, 2], got {popularity}.")
    sampling: dict[str, Any] = {"per_positive": negatives, "label": "interact", "seed": seed}
    if popularity > 0:
        sampling |= {"distribution": "popularity", "alpha": popularity}
    relations = []
    cls = ARCHITECTURES.get(architecture)
    if cls is not None and cls.requires_relation == "esmm":
        relations = [{"type": "esmm", "parent": "interact", "child": "like"}]
    raw: dict[str, Any] = {
        "data": {"interactions": "<movielens-100k in memory>", "negatives": sampling},
        "features": [
            _feature(
                "history",
                "history",
                "behaviour",
                item_feature="item_id",
                history_filter="interact",
                history_value="rating",
                max_length=20,
            ),
            _feature("item_id", "categorical", "item"),
            _feature("genres", "multi_hot", "item", separator="|"),
            _feature("year", "numeric", "item"),
            _feature("user_id", "categorical", "user", oov_rate=USER_ID_OOV_RATE),
            _feature("occupation", "categorical", "user"),
            _feature("zip_prefix", "categorical", "user"),
            _feature("hour", "categorical", "context"),
            _feature("weekday", "categorical", "context"),
        ],
        "tasks": [
            _task("interact", "binary"),
            _task("like", "binary", condition="interact", weight=CONDITIONAL_WEIGHT),
            _task("rating", "regression", condition="interact", weight=CONDITIONAL_WEIGHT),
            _task("gender", "binary", scope="user"),
            _task("age_group", "multiclass", scope="user"),
        ],
        "relations": relations,
        "model": {
            "architecture": architecture,
            "embedding_dim": 16,
            "shared": {"hidden": [128, 64]},
            "tower": {"hidden": [32]},
        },
        "train": {
            "epochs": epochs or DEFAULT_EPOCHS,
            "batch_size": 1024,
            "lr": 1e-2,
            "lr_schedule": "cosine",
            "early_stop": "interact/auc",
            # Stop at the first epoch without gain: in the runs measured for this choice the
            # validation optimum was epoch 3 and a later epoch never beat an earlier one, so a
            # second epoch of patience only cost time (docs/movielens.md, "Run time").
            "patience": 0,
            "seed": seed,
            "progress": False,
        },
        "split": {
            "method": "leave_last",
            "unit": "event_id",
            "valid_fraction": 0.1,
            "test_fraction": 0.1,
        },
        # The merged list: p(interact) + p(like | interact), equal weights.
        "recommend": {"merge": "weighted_sum", "weights": {"interact": 1.0, "like": 1.0}},
        # `mtrs tune` on the exported job: the merged list's NDCG@10 over the validation period.
        "tune": {"metric": "merged/ndcg@10", "relevant": "like"},
    }
    return config_from_dict(raw, "movielens-100k benchmark config")


def movielens_tables(ml: MovieLens100K, max_users: int | None = None) -> Tables:
    """The ratings-only multi-task tables.

    The negatives are sampled by the config's ``[data.negatives]`` (:func:`movielens_config`).

    Args:
        ml: Loaded MovieLens tables.
        max_users: Keep only the users with the smallest ids (quick runs and tests).
    """
    if max_users is not None:
        keep = ml.users["user_id"].sort_values().iloc[:max_users]
        ml = MovieLens100K(
            ratings=ml.ratings[ml.ratings["user_id"].isin(keep)].reset_index(drop=True),
            users=ml.users[ml.users["user_id"].isin(keep)].reset_index(drop=True),
            items=ml.items,
        )
    t = build_multitask_tables(ml)
    return Tables(t.interactions, t.users, t.items)


def write_movielens_job(
    ml: MovieLens100K,
    out: str | Path,
    negatives: int = 4,
    seed: int = 0,
    architecture: str = "shared_bottom",
) -> Path:
    """Write the benchmark's ratings-only tables (Parquet) and its config ``mtrs.toml``.

    The config is the benchmark's job with its data paths filled in and its
    ``[data.negatives]`` (``negatives`` per rating, drawn with ``seed``), so ``mtrs train``,
    ``mtrs tune`` and ``mtrs compare`` run on exactly the benchmark's data and settings.

    Returns:
        The config's path.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t = movielens_tables(ml)
    assert t.users is not None and t.items is not None
    paths = write_tables((t.interactions, t.users, t.items), out, fmt="parquet")
    cfg = movielens_config(architecture, seed, negatives=negatives)
    cfg.data.interactions = paths["interactions"].name
    cfg.data.users = paths["users"].name
    cfg.data.items = paths["items"].name
    cfg.train.progress = True
    tmp = out / ".mtrs.toml.part"
    dump_config(cfg, tmp)
    os.replace(tmp, out / "mtrs.toml")
    return out / "mtrs.toml"
