"""The MovieLens-100K multi-task benchmark: every architecture, several seeds, one table."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mtrs.arch import ARCHITECTURES
from mtrs.bench.ranking import popularity_evaluate, rank_evaluate, ranking_setup
from mtrs.bench.report import aggregate, write_outputs
from mtrs.config.load import config_from_dict
from mtrs.config.models import JobConfig
from mtrs.data.tables import Tables
from mtrs.datasets.movielens import MovieLens100K, build_multitask_tables, load_movielens_100k
from mtrs.errors import MtrsUserError
from mtrs.jsonio import write_json
from mtrs.pipeline import prepare, run_job

# The hard-parallel baseline and the plain shared bottom lead the table; the rest follow in
# registry order.
LEADING = ("single", "shared_bottom")
HISTORY_RATING = "hist_rating"
DEFAULT_EPOCHS = 3
RANKING_KS = (10, 20)


def _feature(name: str, kind: str, group: str, **options: Any) -> dict[str, Any]:
    return {"name": name, "kind": kind, "group": group, **options}


def _task(name: str, kind: str, **options: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, "label": name, **options}


def movielens_config(
    architecture: str = "shared_bottom", seed: int = 0, epochs: int | None = None
) -> JobConfig:
    """The MovieLens-100K multi-task job (see ``docs/movielens.md``), built in code.

    The history's side value is ``hist_rating``, a copy of ``rating``: a past rating is a
    legitimate input while the current event's rating is a target, and the history reads only
    strictly earlier events. An architecture that trains through a funnel (ESMM) gets the
    relation interact → like; the others get none.

    Args:
        architecture: A name registered in :data:`mtrs.arch.ARCHITECTURES`.
        seed: Seed of initialisation and shuffling.
        epochs: Training epochs (default 3; early stopping on ``interact/auc``).
    """
    relations = []
    cls = ARCHITECTURES.get(architecture)
    if cls is not None and cls.requires_relation == "esmm":
        relations = [{"type": "esmm", "parent": "interact", "child": "like"}]
    raw: dict[str, Any] = {
        "data": {"interactions": "<movielens-100k in memory>"},
        "features": [
            _feature(
                "history",
                "history",
                "behaviour",
                item_feature="item_id",
                history_filter="interact",
                history_value=HISTORY_RATING,
                max_length=20,
            ),
            _feature("item_id", "categorical", "item"),
            _feature("genres", "multi_hot", "item", separator="|"),
            _feature("year", "numeric", "item"),
            _feature("occupation", "categorical", "user"),
            _feature("zip_prefix", "categorical", "user"),
            _feature("hour", "categorical", "context"),
            _feature("weekday", "categorical", "context"),
        ],
        "tasks": [
            _task("interact", "binary"),
            _task("like", "binary", condition="interact"),
            _task("rating", "regression", condition="interact"),
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
            "early_stop": "interact/auc",
            "patience": 1,
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
    }
    return config_from_dict(raw, "movielens-100k benchmark config")


def movielens_tables(
    ml: MovieLens100K, negatives: int = 4, seed: int = 0, max_users: int | None = None
) -> Tables:
    """The multi-task tables with the history-value column ``hist_rating`` added.

    Args:
        ml: Loaded MovieLens tables.
        negatives: Sampled non-interactions per rating.
        seed: Seed of the negative sampling.
        max_users: Keep only the users with the smallest ids (quick runs and tests).
    """
    if max_users is not None:
        keep = ml.users["user_id"].sort_values().iloc[:max_users]
        ml = MovieLens100K(
            ratings=ml.ratings[ml.ratings["user_id"].isin(keep)].reset_index(drop=True),
            users=ml.users[ml.users["user_id"].isin(keep)].reset_index(drop=True),
            items=ml.items,
        )
    t = build_multitask_tables(ml, negatives=negatives, seed=seed)
    inter = t.interactions.assign(**{HISTORY_RATING: t.interactions["rating"]})
    return Tables(inter, t.users, t.items)


def resolve_architectures(names: Sequence[str] | None) -> list[str]:
    """The architectures to run: all registered ones by default, hard parallel first.

    Raises:
        MtrsUserError: A name that is not registered.
    """
    known = [a for a in LEADING if a in ARCHITECTURES]
    known += [a for a in ARCHITECTURES if a not in known]
    if not names:
        return known
    unknown = [n for n in names if n not in ARCHITECTURES]
    if unknown:
        raise MtrsUserError(
            f"--architectures: unknown architecture '{unknown[0]}' (known: {', '.join(known)})"
        )
    return list(dict.fromkeys(names))


@dataclass
class RunRecord:
    """One trained model's numbers.

    Attributes:
        metrics: Task (or ranked list) → metric → value.
        seconds: Wall time of training, test scoring and ranking.
        train_seconds: Wall time of training alone (with validation).
        cpu_seconds: Process CPU time of the run (all threads), which other jobs on the
            machine do not inflate the way they inflate wall time.
    """

    architecture: str
    seed: int
    metrics: dict[str, dict[str, float]]
    seconds: float
    train_seconds: float
    cpu_seconds: float
    parameters: int
    best_epoch: int


@dataclass
class BenchmarkResult:
    """All runs, their aggregate, and where the outputs went."""

    results: dict[str, dict[str, dict[str, dict[str, float]]]]
    runs: list[RunRecord] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    out: Path | None = None


def run_benchmark(
    data_dir: str | Path,
    out: str | Path,
    seeds: int = 3,
    architectures: Sequence[str] | None = None,
    epochs: int | None = None,
    negatives: int = 4,
    *,
    max_users: int | None = None,
    console: Console | None = None,
) -> BenchmarkResult:
    """Train every architecture for every seed, rank, aggregate, and write the outputs.

    Seed ``s`` draws the negatives with seed ``s`` and trains with seed ``s``, so the spread
    covers both sampling and initialisation; within a seed every architecture sees the same
    data and the same ranking setup (and the popularity baseline is computed on it).

    Args:
        data_dir: Directory with ``u.data``, ``u.item`` and ``u.user``.
        out: Output directory: ``results.json``, ``results.md``, ``runs.json``, PNG plots.
        seeds: Number of seeds (0 .. seeds-1).
        architectures: Names to run (default: every registered architecture).
        epochs: Training epochs (default 3).
        negatives: Sampled non-interactions per rating.
        max_users: Use only this many users (quick runs).
        console: Where progress goes (None: silent).

    Returns:
        The aggregate (architecture → task → metric → mean and std) and every run.

    Raises:
        MtrsUserError: Unknown architecture, bad arguments or unreadable data.
    """
    if seeds < 1:
        raise MtrsUserError(f"--seeds: must be at least 1, got {seeds}")
    if epochs is not None and epochs < 1:
        raise MtrsUserError(f"--epochs: must be at least 1, got {epochs}")
    if max_users is not None and max_users < 1:
        raise MtrsUserError(f"--max-users: must be at least 1, got {max_users}")
    archs = resolve_architectures(architectures)
    start, cpu_start = time.perf_counter(), time.process_time()
    ml = load_movielens_100k(data_dir)
    runs: list[RunRecord] = []
    popularity: list[dict[str, float]] = []
    ranked_users: list[int] = []
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(),
    )  # fmt: skip
    with Progress(*columns, console=console, disable=console is None) as progress:
        bar = progress.add_task("MovieLens-100K", total=seeds * len(archs))
        say = progress.console.print if console is not None else (lambda *_: None)
        for seed in range(seeds):
            progress.update(bar, description=f"seed {seed}: preparing data")
            tables = movielens_tables(ml, negatives, seed, max_users)
            prepared = prepare(movielens_config(seed=seed, epochs=epochs), tables)
            setup = ranking_setup(prepared)
            ranked_users.append(len(setup.rows))
            popularity.append(popularity_evaluate(setup, RANKING_KS))
            for arch in archs:
                progress.update(bar, description=f"seed {seed}: {arch}")
                t0, cpu0 = time.perf_counter(), time.process_time()
                job = run_job(movielens_config(arch, seed, epochs), prepared=prepared)
                metrics = {t: dict(m) for t, m in job.test_metrics.items()}
                for name, values in rank_evaluate(job, RANKING_KS, setup=setup).items():
                    metrics.setdefault(name, {}).update(values)
                rec = RunRecord(arch, seed, metrics, time.perf_counter() - t0,
                                job.result.seconds, time.process_time() - cpu0,
                                job.num_parameters, job.result.best_epoch)  # fmt: skip
                runs.append(rec)
                say(
                    f"seed {seed} {arch:<14} interact/auc {metrics['interact']['auc']:.4f}  "
                    f"merged HR@10 {metrics['merged']['hit_rate@10']:.4f}  "
                    f"({rec.seconds:.0f} s, CPU {rec.cpu_seconds:.0f} s, "
                    f"best epoch {rec.best_epoch})"
                )
                progress.advance(bar)
    results = aggregate(runs, popularity)
    result = BenchmarkResult(
        results, runs, time.perf_counter() - start, time.process_time() - cpu_start, Path(out)
    )
    settings = _settings(seeds, archs, epochs, negatives, max_users)
    settings["ranked_users"] = ranked_users
    _write_atomically(Path(out), result, settings)
    return result


def _settings(
    seeds: int, archs: list[str], epochs: int | None, negatives: int, max_users: int | None
) -> dict[str, Any]:
    return {
        "seeds": seeds,
        "architectures": archs,
        "epochs": epochs or DEFAULT_EPOCHS,
        "negatives": negatives,
        "max_users": max_users,
        "ranking_ks": list(RANKING_KS),
        "torch_threads": torch.get_num_threads(),
    }


def _write_atomically(out: Path, result: BenchmarkResult, settings: dict[str, Any]) -> None:
    """Write every output into a temporary directory, then move the files into ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        write_outputs(tmp, result.results, result.runs)
        write_json(
            tmp / "runs.json",
            {
                "settings": settings,
                "wall_seconds": result.seconds,
                "cpu_seconds": result.cpu_seconds,
                "runs": [vars(r) for r in result.runs],
            },
        )
        out.mkdir(parents=True, exist_ok=True)
        for path in sorted(tmp.iterdir()):
            os.replace(path, out / path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
