"""Figures for reports: training curves, per-task metric bars, heat-maps, trajectories."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from mtrs.outdir import atomic_path


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def training_curves(runs: Mapping[str, list[dict[str, Any]]], path: Path) -> Path:
    """Training loss per task and validation metric per task, per epoch, for each run.

    Args:
        runs: Run name → ``metrics.json`` history (list of epoch records).
        path: Output PNG.
    """
    tasks = sorted({k for h in runs.values() for e in h for k in e["train_loss"] if k != "total"})
    fig, axes = plt.subplots(
        2, max(len(tasks), 1), figsize=(4 * max(len(tasks), 1), 6), squeeze=False
    )
    for j, task in enumerate(tasks):
        for name, hist in runs.items():
            ep = [e["epoch"] for e in hist if task in e["train_loss"]]
            axes[0, j].plot(
                ep,
                [e["train_loss"][task] for e in hist if task in e["train_loss"]],
                marker="o",
                label=name,
            )
            vals = [
                (e["epoch"], next(iter(e["valid"].get(task, {}).values()), np.nan)) for e in hist
            ]
            axes[1, j].plot([v[0] for v in vals], [v[1] for v in vals], marker="o", label=name)
        axes[0, j].set_title(f"{task}: training loss")
        metric = next(
            (
                next(iter(e["valid"][task]))
                for h in runs.values()
                for e in h
                if e["valid"].get(task)
            ),
            "metric",
        )
        axes[1, j].set_title(f"{task}: validation {metric}")
        axes[1, j].set_xlabel("epoch")
    axes[0, 0].legend(fontsize=8)
    return _save(fig, path)


def metric_bars(
    table: Mapping[str, Mapping[str, float]],
    path: Path,
    title: str,
    errors: Mapping[str, Mapping[str, float]] | None = None,
    reference: Mapping[str, float] | None = None,
) -> Path:
    """Grouped bars: one group per column (task/metric), one bar per row (system).

    Args:
        table: System → {column → value}.
        path: Output PNG.
        title: Figure title.
        errors: Optional standard deviations, same shape as ``table``.
        reference: Optional reference value per column (e.g. the oracle AUC), drawn as a line.
    """
    systems = list(table)
    cols = sorted({c for row in table.values() for c in row})
    x = np.arange(len(cols))
    width = 0.8 / max(len(systems), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(cols)), 4))
    for i, s in enumerate(systems):
        vals = [table[s].get(c, np.nan) for c in cols]
        err = [errors[s].get(c, 0.0) for c in cols] if errors else None
        ax.bar(x + i * width - 0.4 + width / 2, vals, width, yerr=err, label=s)
    if reference:
        for j, c in enumerate(cols):
            if c in reference:
                ax.hlines(reference[c], j - 0.45, j + 0.45, colors="black", linestyles="dashed")
    ax.set_xticks(x, cols, rotation=20, ha="right", fontsize=8)
    finite = [v for row in table.values() for v in row.values() if np.isfinite(v)]
    if finite:
        lo = min(finite)
        ax.set_ylim(max(0.0, lo - 0.1 * abs(lo)), None)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def heatmap(
    matrix: Sequence[Sequence[float]], rows: list[str], cols: list[str], path: Path, title: str
) -> Path:
    """A labelled heat-map (e.g. mean gate weight of each task on each expert)."""
    m = np.asarray(matrix, dtype=float)
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(cols) + 2), max(2.5, 0.5 * len(rows) + 1.5)))
    im = ax.imshow(m, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(cols)), cols, fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", color="white", fontsize=7)
    fig.colorbar(im, ax=ax)
    ax.set_title(title)
    return _save(fig, path)


def trajectories(
    series: Mapping[str, Mapping[str, Sequence[float]]],
    path: Path,
    title: str,
    ylabel: str,
    zero_line: bool = False,
) -> Path:
    """Lines per epoch: panel per run, one line per key (e.g. task weights, gradient cosines)."""
    runs = list(series)
    fig, axes = plt.subplots(
        1, max(len(runs), 1), figsize=(4 * max(len(runs), 1), 3.2), squeeze=False
    )
    for j, run in enumerate(runs):
        ax = axes[0, j]
        for key, vals in series[run].items():
            ax.plot(range(1, len(vals) + 1), vals, marker="o", label=key)
        if zero_line:
            ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_title(run, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        if series[run]:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)
