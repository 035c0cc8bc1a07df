"""Write a comparison: compare.json, compare.md, figures and an HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from mtrs.compare.runner import RunRecord
from mtrs.compare.summary import markdown_table, shown_columns, summarise
from mtrs.jsonio import write_json
from mtrs.report.html import Report
from mtrs.report.plots import heatmap, metric_bars, trajectories


def _lambda_plot(records: list[RunRecord], columns: list[str], path: Path) -> Path:
    """Each task's metric against λ, one line per architecture (mean over seeds)."""
    archs = sorted({r.architecture for r in records})
    fig, axes = plt.subplots(1, len(columns), figsize=(4 * len(columns), 3.2), squeeze=False)
    for j, col in enumerate(columns):
        task, metric = col.split("/", 1)
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
        axes[0, j].set_title(col)
        axes[0, j].set_xlabel("λ (lambda_shared)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_comparison(
    records: list[RunRecord], skipped: dict[str, str], out: Path, title: str
) -> dict[str, Any]:
    """Write every output of a comparison into ``out``; returns the JSON document."""
    out.mkdir(parents=True, exist_ok=True)
    figs = out / "figures"
    figs.mkdir(exist_ok=True)
    summary = summarise(records)
    doc = {"summary": summary, "skipped": skipped, "runs": [r.to_json() for r in records]}
    write_json(out / "compare.json", doc)
    md = markdown_table(summary, skipped)
    (out / "compare.md").write_text(f"# {title}\n\n{md}", encoding="utf-8")
    cols = shown_columns(summary)
    rep = Report(title)
    rep.heading("Test metrics (mean ± std over seeds)")
    rows = []
    for label, row in summary.items():
        cells = [
            f"{row['metrics'][c]['mean']:.4f} ± {row['metrics'][c]['std']:.4f}"
            if c in row["metrics"]
            else "–"
            for c in cols
        ]
        rows.append(
            [label, *cells, f"{row['num_parameters']:,}", f"{row['train_seconds']['mean']:.1f}"]
        )
    rep.table(["architecture", *cols, "parameters", "train s"], rows)
    for arch, reason in skipped.items():
        rep.text(f"Skipped {arch}: {reason}.", note=True)
    means = {
        label: {c: row["metrics"][c]["mean"] for c in cols if c in row["metrics"]}
        for label, row in summary.items()
    }
    stds = {
        label: {c: row["metrics"][c]["std"] for c in cols if c in row["metrics"]}
        for label, row in summary.items()
    }
    rep.image(metric_bars(means, figs / "metrics.png", "test metrics", errors=stds))
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


def _series(records: list[dict[str, float]]) -> dict[str, list[float]]:
    keys = sorted({k for r in records for k in r})
    return {k: [r.get(k, float("nan")) for r in records] for k in keys}
