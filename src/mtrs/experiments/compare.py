"""``mtrs compare``: architectures (and λ values) on one split with one budget; the report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from mtrs.config.models import JobConfig
from mtrs.experiments.aggregate import Results, aggregate, run_stats
from mtrs.experiments.grid import Grid, run_grid
from mtrs.experiments.record import RunRecord
from mtrs.experiments.tables import PARAMETERS, Column, markdown, primary_columns, rows
from mtrs.jsonio import write_json
from mtrs.outdir import atomic_path, write_text
from mtrs.prepare import Prepared, prepare
from mtrs.report.html import Report
from mtrs.report.plots import heatmap, metric_bars, trajectories

SHOWN = ("auc", "gauc", "rmse", "mae", "accuracy", "macro_f1")
TRAIN_SECONDS = ("train_seconds", "train s", "{:.1f}")


def run_comparison(
    cfg: JobConfig,
    grid: Grid,
    prepared: Prepared | None = None,
    on_run: Callable[[RunRecord], None] | None = None,
) -> tuple[list[RunRecord], dict[str, str]]:
    """Train every (architecture, λ, seed) of ``grid`` on the config's one split and budget.

    Args:
        cfg: The base job config (its split, features, tasks and training budget are shared).
        grid: Architectures, λ values (default: the config's) and seeds.
        prepared: Already prepared data (else prepared once here).
        on_run: Called after each run (progress output).

    Returns:
        ``(records, skipped)``: one record per run; architecture → reason for skipped ones.
    """
    data = prepared or prepare(cfg)

    def config_for(arch: str, lam: float | None, seed: int) -> JobConfig:
        c = cfg.model_copy(deep=True)
        c.model.architecture = arch
        if lam is not None:
            c.model.lambda_shared = lam
        c.train.seed = seed
        return c

    return run_grid(grid, config_for, lambda _: data, diagnostics=True, on_run=on_run)


def comparison_markdown(records: list[RunRecord], skipped: dict[str, str]) -> str:
    """The comparison as a markdown table (mean ± sample std over seeds)."""
    results = aggregate(records)
    head, body = rows(
        results,
        primary_columns(results, SHOWN),
        run_stats(records),
        [PARAMETERS, TRAIN_SECONDS],
        first="architecture",
    )
    text = markdown(head, body)
    for arch, reason in skipped.items():
        text += f"\nSkipped `{arch}`: {reason}.\n"
    return text


def _means(results: Results, columns: list[Column], key: str) -> dict[str, dict[str, float]]:
    return {
        label: {title: tasks[t][m][key] for t, m, title in columns if m in tasks.get(t, {})}
        for label, tasks in results.items()
    }


def _lambda_plot(records: list[RunRecord], columns: list[Column], path: Path) -> Path:
    """Each task's metric against λ, one line per architecture (mean over seeds)."""
    archs = sorted({r.architecture for r in records})
    fig, axes = plt.subplots(1, len(columns), figsize=(4 * len(columns), 3.2), squeeze=False)
    for j, (task, metric, title) in enumerate(columns):
        for arch in archs:
            lams = sorted({r.lambda_shared for r in records if r.architecture == arch})
            means = []
            for lam in lams:
                vals = [
                    r.metrics.get(task, {}).get(metric, float("nan"))
                    for r in records
                    if r.architecture == arch and r.lambda_shared == lam
                ]
                means.append(sum(vals) / len(vals))
            axes[0, j].plot(lams, means, marker="o", label=arch)
        axes[0, j].set_title(title)
        axes[0, j].set_xlabel("λ (lambda_shared)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def _series(records: list[dict[str, float]]) -> dict[str, list[float]]:
    keys = sorted({k for r in records for k in r})
    return {k: [r.get(k, float("nan")) for r in records] for k in keys}


def write_comparison(
    records: list[RunRecord], skipped: dict[str, str], out: Path, title: str
) -> dict[str, Any]:
    """Write compare.json, compare.md, figures and report.html into ``out``; returns the JSON."""
    out.mkdir(parents=True, exist_ok=True)
    figs = out / "figures"
    figs.mkdir(exist_ok=True)
    results = aggregate(records)
    doc = {"summary": results, "skipped": skipped, "runs": [r.to_json() for r in records]}
    write_json(out / "compare.json", doc)
    write_text(out / "compare.md", f"# {title}\n\n{comparison_markdown(records, skipped)}")
    cols = primary_columns(results, SHOWN)
    rep = Report(title)
    rep.heading("Test metrics (mean ± sample std over seeds)")
    head, body = rows(
        results, cols, run_stats(records), [PARAMETERS, TRAIN_SECONDS], first="architecture"
    )
    rep.table(head, body)
    for arch, reason in skipped.items():
        rep.text(f"Skipped {arch}: {reason}.", note=True)
    rep.image(
        metric_bars(
            _means(results, cols, "mean"),
            figs / "metrics.png",
            "test metrics",
            errors=_means(results, cols, "std"),
        )
    )
    if len({r.lambda_shared for r in records}) > 1:
        rep.heading("Sweeping λ (the weight of the shared objective)")
        rep.image(_lambda_plot(records, cols, figs / "lambda.png"))
    first: dict[tuple[str, float], RunRecord] = {}
    for r in records:
        first.setdefault((r.architecture, r.lambda_shared), r)
    gated = [r for r in first.values() if r.gates]
    if gated:
        rep.heading("Mean gate weight of each task on each expert (validation set)")
        for r in gated:
            tasks = list(r.gates)
            n = len(r.gates[tasks[0]])
            rep.image(
                heatmap(
                    [r.gates[t] for t in tasks],
                    tasks,
                    [f"e{i}" for i in range(n)],
                    figs / f"gates_{r.architecture}_{r.lambda_shared:g}.png",
                    f"{r.architecture}: gate weights",
                )
            )
    cos = {
        f"{r.architecture} λ={r.lambda_shared:g}": _series(r.grad_cosine)
        for r in first.values()
        if r.grad_cosine
    }
    if cos:
        rep.heading("Cosine similarity of the tasks' gradients on shared parameters")
        rep.text(
            "Negative values mean the tasks pull the shared parameters in opposing "
            "directions: a warning of negative transfer.",
            note=True,
        )
        rep.image(
            trajectories(cos, figs / "grad_cosine.png", "gradient cosine", "cosine", zero_line=True)
        )
    weights = {
        f"{r.architecture} λ={r.lambda_shared:g}": _series(r.weights)
        for r in first.values()
        if r.weights
    }
    if weights:
        rep.heading("Task weights per epoch")
        rep.image(trajectories(weights, figs / "weights.png", "task weights", "w_i"))
    rep.write(out / "report.html")
    return doc
