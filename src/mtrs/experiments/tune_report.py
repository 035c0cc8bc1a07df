"""What ``mtrs tune`` writes: the best config, the table of trials, a plot, a summary."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from mtrs.config.load import dump_config
from mtrs.config.models import JobConfig
from mtrs.experiments.tables import markdown
from mtrs.jsonio import write_json
from mtrs.outdir import atomic_path, write_text


@dataclass
class StudyResult:
    """One study: its best trial and every trial."""

    name: str
    metric: str
    direction: str
    best_value: float
    best_trial: int
    best_params: dict[str, Any]
    best_config: JobConfig
    trials: list[dict[str, Any]] = field(default_factory=list)


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def trial_rows(result: StudyResult) -> tuple[list[str], list[list[str]]]:
    """Header and one row per trial: number, state, value, epoch, seconds, parameters."""
    names = sorted({k for t in result.trials for k in t["params"]})
    header = ["trial", "state", result.metric, "best epoch", "seconds", *names]
    body = [
        [str(t["trial"]), t["state"], _fmt(t["value"]), _fmt(t["best_epoch"]),
         _fmt(t["seconds"]), *[_fmt(t["params"].get(n)) for n in names]]
        for t in result.trials
    ]  # fmt: skip
    return header, body


def _plot(result: StudyResult, path: Path) -> Path:
    done = [t for t in result.trials if t["state"] == "complete" and t["value"] is not None]
    xs = [t["trial"] for t in done]
    ys = [t["value"] for t in done]
    best: list[float] = []
    best_so_far: float | None = None
    for y in ys:
        better = best_so_far is None or (
            y > best_so_far if result.direction == "maximize" else y < best_so_far
        )
        best_so_far = y if better or best_so_far is None else best_so_far
        best.append(best_so_far)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.scatter(xs, ys, s=14, label="trial")
    ax.step(xs, best, where="post", color="C1", label="best so far")
    pruned = [t["trial"] for t in result.trials if t["state"] == "pruned"]
    if pruned:
        ax.scatter(pruned, [min(ys)] * len(pruned), marker="x", color="grey", label="pruned")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {result.metric}")
    ax.set_title(f"mtrs tune — {result.name}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def write_study(out: Path, result: StudyResult) -> None:
    """``best.toml`` (trainable with ``mtrs train``), ``trials.csv``, ``trials.md``, the plot."""
    out.mkdir(parents=True, exist_ok=True)
    dump_config(result.best_config, out / "best.toml")
    header, body = trial_rows(result)
    with atomic_path(out / "trials.csv") as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(body)
    write_text(
        out / "trials.md",
        f"# mtrs tune — {result.name}\n\nValidation {result.metric} ({result.direction}); best "
        f"trial {result.best_trial}: {result.best_value:.4f}.\n\n{markdown(header, body)}",
    )
    _plot(result, out / "history.png")


def summary(results: Sequence[StudyResult]) -> dict[str, Any]:
    """``summary.json``: per study its best value, trial, parameters and trial counts."""
    return {
        r.name: {
            "metric": r.metric,
            "direction": r.direction,
            "best_value": r.best_value,
            "best_trial": r.best_trial,
            "best_params": r.best_params,
            "trials": {
                s: sum(t["state"] == s for t in r.trials) for s in ("complete", "pruned", "fail")
            },
        }
        for r in results
    }


def write_summary(out: Path, results: Sequence[StudyResult]) -> None:
    """``summary.json`` and, for several studies, ``summary.md`` side by side."""
    write_json(out / "summary.json", summary(results))
    if len(results) > 1:
        header = ["architecture", f"best validation {results[0].metric}", "best trial", "trials"]
        body = [
            [r.name, f"{r.best_value:.4f}", str(r.best_trial), str(len(r.trials))] for r in results
        ]
        write_text(out / "summary.md", markdown(header, body))
