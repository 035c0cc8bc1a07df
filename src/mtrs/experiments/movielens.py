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
from rich.table import Table

from mtrs.arch import ARCHITECTURES
from mtrs.config.models import JobConfig
from mtrs.data.split import VALID
from mtrs.datasets.movielens import MovieLens100K, load_movielens_100k
from mtrs.datasets.movielens_job import DEFAULT_EPOCHS, movielens_config, movielens_tables
from mtrs.errors import MtrsUserError
from mtrs.experiments.aggregate import Results, SeedMetrics, aggregate, run_stats
from mtrs.experiments.baselines import LABELS as BASELINE_LABELS
from mtrs.experiments.baselines import NAMES as BASELINE_NAMES
from mtrs.experiments.baselines import BaselineRunner
from mtrs.experiments.grid import Grid, Scored, default_jobs, run_grid
from mtrs.experiments.merge_fit import fit_merge
from mtrs.experiments.ranking import (
    MERGED,
    POPULARITY,
    RankingSetup,
    default_weights,
    evaluate_lists,
    list_scores,
    popularity_evaluate,
    ranking_setup,
)
from mtrs.experiments.record import RunRecord
from mtrs.experiments.tables import PARAMETERS, Column, markdown, rich_table, rows
from mtrs.job import Job
from mtrs.jsonio import write_json
from mtrs.outdir import write_text
from mtrs.prepare import Prepared, prepare
from mtrs.report.plots import metric_bars

# The hard-parallel baseline and the plain shared bottom lead the table; the rest follow in
# registry order.
LEADING = ("single", "shared_bottom")
RANKING_KS = (10, 20)
# The config's fixed merge, p(interact) + p(like), kept beside the merge fitted on validation.
CONFIG_MERGE = "merged_fixed"
# The headline table; ranking columns read each system's final list (``merged``: a model's
# merged list, a baseline's only list).
MAIN_COLUMNS: tuple[Column, ...] = (
    ("interact", "auc", "interact AUC"),
    ("like", "auc", "like AUC"),
    ("rating", "rmse", "rating RMSE"),
    ("gender", "auc", "gender AUC"),
    ("age_group", "accuracy", "age_group acc."),
    (MERGED, "hit_rate@10", "HR@10"),
    (MERGED, "ndcg@10", "NDCG@10"),
    (MERGED, "recall@20", "Recall@20"),
)
RANKING_COLUMNS: tuple[Column, ...] = tuple(
    (lst, m, f"{lst} {title}")
    for lst in ("interact", "like", "rating", CONFIG_MERGE, MERGED)
    for m, title in (("hit_rate@10", "HR@10"), ("ndcg@10", "NDCG@10"), ("recall@20", "R@20"))
)
RUN_COLUMNS = (
    PARAMETERS,
    ("seconds", "wall s / run", "{:.0f}"),
    ("cpu_seconds", "CPU s / run", "{:.0f}"),
)
LABELS = {
    "single": "single (hard parallel)",
    POPULARITY: "popularity (baseline)",
    **BASELINE_LABELS,
}


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
class BenchmarkResult:
    """All runs, their aggregate, and where the outputs went."""

    results: Results
    runs: list[RunRecord] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    out: Path | None = None


class BenchmarkRuns:
    """The benchmark's data, configs and scorer for one run, picklable for worker processes.

    Seed ``s`` draws the negatives with seed ``s`` and trains with seed ``s``. The prepared
    data and ranking setups are cached per seed in the process that uses them; pickling
    sends only the settings, so each worker prepares (identically) what it needs.
    """

    def __init__(
        self, data_dir: Path, epochs: int | None, negatives: int, max_users: int | None
    ) -> None:
        self.data_dir, self.epochs = data_dir, epochs
        self.negatives, self.max_users = negatives, max_users
        self._ml: MovieLens100K | None = None
        self._prepared: dict[int, Prepared] = {}
        self._setups: dict[int, tuple[RankingSetup, RankingSetup]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_ml": None, "_prepared": {}, "_setups": {}}

    def drop_cache(self) -> None:
        """Forget the prepared data (memory) once this process trains no more runs."""
        self._prepared.clear()
        self._setups.clear()

    def data(self, seed: int) -> Prepared:
        """The prepared log of a seed."""
        if seed not in self._prepared:
            if self._ml is None:
                self._ml = load_movielens_100k(self.data_dir)
            tables = movielens_tables(self._ml, self.max_users)
            cfg = movielens_config(seed=seed, epochs=self.epochs, negatives=self.negatives)
            self._prepared[seed] = prepare(cfg, tables)
        return self._prepared[seed]

    def setups(self, seed: int) -> tuple[RankingSetup, RankingSetup]:
        """The ranking setups of a seed: (test period, validation period)."""
        if seed not in self._setups:
            prepared = self.data(seed)
            self._setups[seed] = (ranking_setup(prepared), ranking_setup(prepared, period=VALID))
        return self._setups[seed]

    def config_for(self, arch: str, lam: float | None, seed: int) -> JobConfig:
        """The config of one run (λ: the config's own)."""
        return movielens_config(arch, seed, self.epochs, self.negatives)

    def score(self, job: Job, seed: int) -> Scored:
        """Rank the test period with the merge fitted on the validation period.

        The notes hold the fitted merge and the wall seconds of each phase: ``list_scores``
        (both periods), ``fit_merge`` and ``ranking`` (the test period's metrics).
        """
        test, valid = self.setups(seed)
        t0 = time.perf_counter()
        rec = job.recommender(valid.catalog)
        probability = [t for t in rec.list_tasks if job.tasks.is_probability(t)]
        valid_scores = list_scores(rec, valid)
        t1 = time.perf_counter()
        fit = fit_merge(
            valid_scores, valid.seen_mask(), valid.relevant, probability, RANKING_KS,
            rrf_k=rec.cfg.rrf_k,
        )  # fmt: skip
        t2 = time.perf_counter()
        merge = {
            "architecture": job.cfg.model.architecture, "seed": seed,
            "strategy": fit.strategy, "weights": fit.weights, "valid": fit.metrics,
        }  # fmt: skip
        rec = job.recommender(test.catalog)
        fixed = (rec.cfg.merge, default_weights(rec))
        test_scores = list_scores(rec, test)
        t3 = time.perf_counter()
        metrics = evaluate_lists(
            test_scores, test, {MERGED: (fit.strategy, fit.weights), CONFIG_MERGE: fixed},
            RANKING_KS, rec.cfg.rrf_k,
        )  # fmt: skip
        seconds = {
            "list_scores": t1 - t0 + t3 - t2, "fit_merge": t2 - t1,
            "ranking": time.perf_counter() - t3,
        }  # fmt: skip
        return Scored(metrics, {"merge": merge, "seconds": seconds})


def run_benchmark(
    data_dir: str | Path,
    out: str | Path,
    seeds: int = 3,
    architectures: Sequence[str] | None = None,
    epochs: int | None = None,
    negatives: int = 4,
    *,
    max_users: int | None = None,
    baselines: Sequence[str] = BASELINE_NAMES,
    console: Console | None = None,
    jobs: int | None = None,
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
        epochs: Training epochs (default 6).
        negatives: Sampled non-interactions per rating.
        max_users: Use only this many users (quick runs).
        baselines: Non-neural baselines to tune (on the validation period) and rank with.
        console: Where progress goes (None: silent).
        jobs: Runs trained side by side in worker processes (threads split between them;
            :func:`~mtrs.experiments.grid.run_grid`); default
            :func:`~mtrs.experiments.grid.default_jobs` (one run per thread, at most 4).

    Returns:
        The aggregate (row → task or list → metric → mean and std) and every run.

    Raises:
        MtrsUserError: Unknown architecture, bad arguments or unreadable data.
    """
    if seeds < 1:
        raise MtrsUserError(f"--seeds: must be at least 1, got {seeds}")
    if epochs is not None and epochs < 1:
        raise MtrsUserError(f"--epochs: must be at least 1, got {epochs}")
    if max_users is not None and max_users < 1:
        raise MtrsUserError(f"--max-users: must be at least 1, got {max_users}")
    if jobs is None:
        jobs = default_jobs()
    if jobs < 1:
        raise MtrsUserError(f"--jobs: must be at least 1, got {jobs}")
    archs = resolve_architectures(architectures)
    start, cpu_start = time.perf_counter(), time.process_time()
    runs_spec = BenchmarkRuns(Path(data_dir), epochs, negatives, max_users)
    extra: dict[str, list[SeedMetrics]] = {POPULARITY: [], **{b: [] for b in baselines}}
    chosen: dict[str, list[dict[str, Any]]] = {b: [] for b in baselines}
    ranked_users: list[int] = []
    runner = BaselineRunner(baselines, RANKING_KS)
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(),
    )  # fmt: skip
    with Progress(*columns, console=console, disable=console is None) as progress:
        bar = progress.add_task("MovieLens-100K", total=seeds * len(archs))
        say = progress.console.print if console is not None else (lambda *_: None)

        # Per seed, here: the popularity list and the baselines (tuned on validation).
        for seed in range(seeds):
            progress.update(bar, description=f"seed {seed}: preparing data")
            prepared = runs_spec.data(seed)
            test, valid = runs_spec.setups(seed)
            ranked_users.append(len(test.rows))
            extra[POPULARITY].append({MERGED: popularity_evaluate(test, RANKING_KS)})
            if baselines:
                progress.update(bar, description=f"seed {seed}: tuning the baselines")
            for b in runner.run(prepared, test, valid) if baselines else []:
                extra[b.name].append({MERGED: b.test})
                chosen[b.name].append({"params": b.params, "valid": b.valid})
                say(f"seed {seed} {b.name:<14} {b.params}  HR@10 {b.test['hit_rate@10']:.4f}")
        if jobs > 1:
            runs_spec.drop_cache()  # the workers prepare their own copies

        running: list[str] = []

        def started(arch: str, seed: int) -> None:
            running.append(f"seed {seed}: {arch}")
            progress.update(bar, description=", ".join(running[-jobs:]))

        def finished(rec: RunRecord) -> None:
            m = rec.metrics
            say(
                f"seed {rec.seed} {rec.architecture:<14} interact/auc {m['interact']['auc']:.4f}  "
                f"merged HR@10 {m[MERGED]['hit_rate@10']:.4f}  "
                f"({rec.seconds:.0f} s, CPU {rec.cpu_seconds:.0f} s, best epoch {rec.best_epoch})"
            )
            label = f"seed {rec.seed}: {rec.architecture}"
            if label in running:
                running.remove(label)
            progress.advance(bar)

        runs, _ = run_grid(
            Grid(tuple(archs), seeds),
            runs_spec.config_for,
            runs_spec.data,
            score=runs_spec.score,
            on_start=started,
            on_run=finished,
            jobs=jobs,
        )
    merges = [r.notes["merge"] for r in runs]
    results = aggregate(runs, extra)
    result = BenchmarkResult(
        results, runs, time.perf_counter() - start, time.process_time() - cpu_start, Path(out)
    )
    settings = _settings(seeds, archs, epochs, negatives, max_users)
    settings["ranked_users"] = ranked_users
    settings["jobs"] = jobs
    settings["baselines"] = chosen
    settings["merges"] = merges
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


def main_rows(
    results: Results, runs: Sequence[RunRecord], style: str = "spread"
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the headline table (architectures, then the baselines)."""
    return rows(results, MAIN_COLUMNS, run_stats(runs), RUN_COLUMNS, style=style, labels=LABELS)


def ranking_rows(results: Results) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-list ranking table (means over seeds)."""
    return rows(results, RANKING_COLUMNS, style="mean", labels=LABELS)


def results_markdown(results: Results, runs: Sequence[RunRecord]) -> str:
    """``results.md``: the headline table and the per-list ranking table."""
    seeds = len({r.seed for r in runs})
    return (
        f"# MovieLens-100K multi-task benchmark\n\nMean ± sample std over {seeds} seed(s). "
        "Task metrics on the test split (`leave_last`, 10%); ranking over every movie the user "
        "had not rated before the test period, relevant = test movies rated ≥ 4. `merged` is "
        "each model's merge with the strategy and weights fitted on the validation period "
        "(NDCG@10), `merged_fixed` the config's p(interact) + p(like); a baseline's only list "
        "is its merged list.\n\n"
        f"{markdown(*main_rows(results, runs))}\n## Ranking per list (means)\n\n"
        f"{markdown(*ranking_rows(results))}"
    )


def rich_tables(results: Results, runs: Sequence[RunRecord]) -> list[Table]:
    """The two tables for the console."""
    return [
        rich_table("MovieLens-100K: test metrics (mean±std)", *main_rows(results, runs, "compact")),
        rich_table("ranking per list (mean)", *ranking_rows(results)),
    ]


def _plot_table(
    results: Results, columns: Sequence[Column]
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    means: dict[str, dict[str, float]] = {}
    stds: dict[str, dict[str, float]] = {}
    for row, tasks in results.items():
        label = LABELS.get(row, row)
        means[label], stds[label] = {}, {}
        for task, metric, title in columns:
            stat = tasks.get(task, {}).get(metric)
            if stat is not None and stat["mean"] == stat["mean"]:
                means[label][title] = stat["mean"]
                stds[label][title] = stat["std"]
    return means, stds


def write_outputs(out: Path, results: Results, runs: Sequence[RunRecord]) -> list[Path]:
    """``results.json``, ``results.md`` and the PNG plots in ``out``."""
    write_json(out / "results.json", results)
    write_text(out / "results.md", results_markdown(results, runs))
    rmse = MAIN_COLUMNS[2]
    plots = (
        ("task_metrics.png", "test AUC / accuracy", [c for c in MAIN_COLUMNS[:5] if c != rmse]),
        ("rating_rmse.png", "rating RMSE (lower is better)", [rmse]),
        ("ranking.png", "merged-list ranking", list(MAIN_COLUMNS[5:])),
    )
    paths = [out / "results.json", out / "results.md"]
    for name, title, cols in plots:
        means, stds = _plot_table(results, cols)
        means = {k: v for k, v in means.items() if v}
        if means:
            paths.append(metric_bars(means, out / name, title, errors=stds))
    return paths


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
                "runs": [r.to_json() for r in result.runs],
            },
        )
        out.mkdir(parents=True, exist_ok=True)
        for path in sorted(tmp.iterdir()):
            os.replace(path, out / path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
