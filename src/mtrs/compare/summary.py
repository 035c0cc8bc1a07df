"""Aggregate comparison runs: mean ± std per task metric, parameters and training time."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from mtrs.compare.runner import RunRecord

SHOWN = ("auc", "gauc", "logloss", "rmse", "mae", "accuracy", "macro_f1")


def run_label(rec: RunRecord, multiple_lambdas: bool) -> str:
    """Row label: the architecture, with λ when several λ values were run."""
    return f"{rec.architecture} λ={rec.lambda_shared:g}" if multiple_lambdas else rec.architecture


def summarise(records: list[RunRecord]) -> dict[str, dict[str, Any]]:
    """Row label → {"metrics": {task/metric: {mean, std}}, "num_parameters", "train_seconds"}."""
    multiple = len({r.lambda_shared for r in records}) > 1
    groups: dict[str, list[RunRecord]] = defaultdict(list)
    for r in records:
        groups[run_label(r, multiple)].append(r)
    out: dict[str, dict[str, Any]] = {}
    for label, runs in groups.items():
        values: dict[str, list[float]] = defaultdict(list)
        for r in runs:
            for task, ms in r.metrics.items():
                for m, v in ms.items():
                    values[f"{task}/{m}"].append(v)
        out[label] = {
            "architecture": runs[0].architecture,
            "lambda_shared": runs[0].lambda_shared,
            "seeds": len(runs),
            "metrics": {
                k: {"mean": float(np.mean(v)), "std": float(np.std(v))} for k, v in values.items()
            },
            "num_parameters": runs[0].num_parameters,
            "train_seconds": {
                "mean": float(np.mean([r.train_seconds for r in runs])),
                "std": float(np.std([r.train_seconds for r in runs])),
            },
        }
    return out


def shown_columns(summary: dict[str, dict[str, Any]]) -> list[str]:
    """The task/metric columns worth a table (primary metrics, in first-seen order)."""
    cols: list[str] = []
    for row in summary.values():
        for key in row["metrics"]:
            if key.split("/", 1)[1] in SHOWN and key not in cols and not key.endswith("logloss"):
                cols.append(key)
    return cols


def markdown_table(summary: dict[str, dict[str, Any]], skipped: dict[str, str]) -> str:
    """The comparison as a markdown table (mean ± std over seeds)."""
    cols = shown_columns(summary)
    lines = [
        "| architecture | " + " | ".join(cols) + " | parameters | train s |",
        "|---|" + "---:|" * (len(cols) + 2),
    ]
    for label, row in summary.items():
        cells = []
        for c in cols:
            v = row["metrics"].get(c)
            cells.append(f"{v['mean']:.4f} ± {v['std']:.4f}" if v else "–")
        t = row["train_seconds"]
        lines.append(
            f"| {label} | "
            + " | ".join(cells)
            + f" | {row['num_parameters']:,} | {t['mean']:.1f} |"
        )
    for arch, reason in skipped.items():
        lines.append(f"\nSkipped `{arch}`: {reason}.")
    return "\n".join(lines) + "\n"
