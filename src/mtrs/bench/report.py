"""Benchmark results: mean and spread over seeds, a markdown table, Rich tables and plots."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich.table import Table

from mtrs.bench.ranking import MERGED, POPULARITY
from mtrs.jsonio import write_json
from mtrs.report.plots import metric_bars

if TYPE_CHECKING:
    from mtrs.bench.movielens import RunRecord

Results = dict[str, dict[str, dict[str, dict[str, float]]]]

# (task or list, metric, column title) of the headline table; ranking columns read the merged
# list (the popularity row reads its own single list).
MAIN_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("interact", "auc", "interact AUC"),
    ("like", "auc", "like AUC"),
    ("rating", "rmse", "rating RMSE"),
    ("gender", "auc", "gender AUC"),
    ("age_group", "accuracy", "age_group acc."),
    (MERGED, "hit_rate@10", "HR@10"),
    (MERGED, "ndcg@10", "NDCG@10"),
    (MERGED, "recall@20", "Recall@20"),
)
RANKING_LISTS = ("interact", "like", "rating", MERGED)
RANKING_METRICS = (("hit_rate@10", "HR@10"), ("ndcg@10", "NDCG@10"), ("recall@20", "R@20"))
LABELS = {"single": "single (hard parallel)", POPULARITY: "popularity (baseline)"}


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for a single value); NaNs are left out."""
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=np.float64)
    if v.size == 0:
        return {"mean": math.nan, "std": math.nan}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0}


def aggregate(runs: Iterable[RunRecord], popularity: Sequence[Mapping[str, float]]) -> Results:
    """architecture → task (or list) → metric → {"mean", "std"} over seeds.

    The popularity baseline is the row ``"popularity"`` with the single list ``"popularity"``.
    """
    values: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for r in runs:
        for task, metrics in r.metrics.items():
            for metric, value in metrics.items():
                values[r.architecture][task][metric].append(float(value))
    for p in popularity:
        for metric, value in p.items():
            values[POPULARITY][POPULARITY][metric].append(float(value))
    return {
        arch: {t: {m: mean_std(v) for m, v in ms.items()} for t, ms in tasks.items()}
        for arch, tasks in values.items()
    }


def _cell(results: Results, row: str, task: str, metric: str, style: str = "spread") -> str:
    """A cell: ``"spread"`` 0.8123 ± 0.0012, ``"compact"`` 0.812±0.001, ``"mean"`` 0.8123."""
    tasks = results[row]
    if task == MERGED and row == POPULARITY:
        task = POPULARITY
    stat = tasks.get(task, {}).get(metric)
    if stat is None or math.isnan(stat["mean"]):
        return "–"
    if style == "compact":
        return f"{stat['mean']:.3f}±{stat['std']:.3f}"
    return f"{stat['mean']:.4f} ± {stat['std']:.4f}" if style == "spread" else f"{stat['mean']:.4f}"


def _run_stats(runs: Sequence[RunRecord]) -> dict[str, tuple[float, float, float]]:
    """Per architecture: parameters, wall seconds and CPU seconds per run (means)."""
    by: dict[str, list[RunRecord]] = defaultdict(list)
    for r in runs:
        by[r.architecture].append(r)

    def mean(rs: Sequence[RunRecord], name: str) -> float:
        return float(np.mean([getattr(r, name) for r in rs]))

    return {
        a: (mean(rs, "parameters"), mean(rs, "seconds"), mean(rs, "cpu_seconds"))
        for a, rs in by.items()
    }


def main_rows(
    results: Results, runs: Sequence[RunRecord], style: str = "spread"
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the headline table (architectures, then popularity)."""
    stats = _run_stats(runs)
    header = ["system", *[c[2] for c in MAIN_COLUMNS], "parameters", "wall s / run", "CPU s / run"]
    rows = []
    for row in results:
        params, secs, cpu = stats.get(row, (math.nan, math.nan, math.nan))
        rows.append(
            [
                LABELS.get(row, row),
                *[_cell(results, row, t, m, style) for t, m, _ in MAIN_COLUMNS],
                "–" if math.isnan(params) else f"{params:,.0f}",
                "–" if math.isnan(secs) else f"{secs:.0f}",
                "–" if math.isnan(cpu) else f"{cpu:.0f}",
            ]
        )
    return header, rows


def ranking_rows(results: Results) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-list ranking table (means over seeds)."""
    header = ["system"]
    header += [f"{lst} {title}" for lst in RANKING_LISTS for _, title in RANKING_METRICS]
    rows = [
        [LABELS.get(row, row)]
        + [_cell(results, row, lst, m, "mean") for lst in RANKING_LISTS for m, _ in RANKING_METRICS]
        for row in results
    ]
    return header, rows


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def markdown(results: Results, runs: Sequence[RunRecord]) -> str:
    """``results.md``: the headline table and the per-list ranking table."""
    seeds = len({r.seed for r in runs})
    head, rows = main_rows(results, runs)
    rhead, rrows = ranking_rows(results)
    return (
        f"# MovieLens-100K multi-task benchmark\n\nMean ± sample std over {seeds} seed(s). "
        "Task metrics on the test split (`leave_last`, 10%); ranking over every movie the user "
        "had not rated before the test period, relevant = test movies rated ≥ 4; the merged "
        "list is p(interact) + p(like).\n\n"
        f"{_markdown(head, rows)}\n\n## Ranking per list (means)\n\n{_markdown(rhead, rrows)}\n"
    )


def rich_tables(results: Results, runs: Sequence[RunRecord]) -> list[Table]:
    """The two tables for the console."""
    out = []
    for title, (head, rows) in (
        ("MovieLens-100K: test metrics (mean±std)", main_rows(results, runs, "compact")),
        ("ranking per list (mean)", ranking_rows(results)),
    ):
        table = Table(title=title)
        for j, h in enumerate(head):
            table.add_column(h, justify="left" if j == 0 else "right")
        for r in rows:
            table.add_row(*r)
        out.append(table)
    return out


def _plot_table(
    results: Results, columns: Sequence[tuple[str, str, str]]
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    means: dict[str, dict[str, float]] = {}
    stds: dict[str, dict[str, float]] = {}
    for row, tasks in results.items():
        label = LABELS.get(row, row)
        means[label], stds[label] = {}, {}
        for task, metric, title in columns:
            src = POPULARITY if (task == MERGED and row == POPULARITY) else task
            stat = tasks.get(src, {}).get(metric)
            if stat is not None and not math.isnan(stat["mean"]):
                means[label][title] = stat["mean"]
                stds[label][title] = stat["std"]
    return means, stds


def write_outputs(out: Path, results: Results, runs: Sequence[RunRecord]) -> list[Path]:
    """``results.json``, ``results.md`` and the PNG plots in ``out``."""
    write_json(out / "results.json", results)
    (out / "results.md").write_text(markdown(results, runs), encoding="utf-8")
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
