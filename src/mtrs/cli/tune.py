"""``mtrs tune`` (hyper-parameter search) and ``mtrs fit-merge`` (merge weights on validation)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mtrs.cli.output import console, print_json
from mtrs.config.load import load_config, override
from mtrs.errors import MtrsUserError
from mtrs.eval.names import RANKING_CHOICES, is_ranking_metric
from mtrs.outdir import TUNE, check_out, data_files


def tune(
    config: Annotated[
        Path, typer.Argument(help="The job's TOML config (with an optional [tune]).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Directory for the study and its outputs.")],
    trials: Annotated[
        int | None, typer.Option(help="Finished trials per study (default tune.trials).")
    ] = None,
    architectures: Annotated[
        str | None,
        typer.Option(help="Comma-separated architectures: one study each, the same budget."),
    ] = None,
    metric: Annotated[str | None, typer.Option(help="Override tune.metric.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Search hyper-parameters on validation data with Optuna; resumes from OUT/study.db."""
    from mtrs.experiments.tune import run_tune
    from mtrs.experiments.tune_report import summary

    cfg = load_config(config)
    check_out(out, TUNE, protect=data_files(cfg))  # a previous study is resumed
    if metric is not None:
        cfg = override(cfg, {"tune.metric": metric}, str(config))
    n = trials if trials is not None else cfg.tune.trials
    if n < 1:
        raise MtrsUserError("--trials: must be at least 1")
    names = [a.strip() for a in architectures.split(",") if a.strip()] if architectures else None

    def progress(study: str, row: dict[str, Any]) -> None:
        if not as_json:
            value = row["value"]
            shown = "–" if value is None else f"{value:.4f}"
            console.print(f"  {study} trial {row['trial']}: {row['state']} {shown}", markup=False)

    results = run_tune(cfg, out, n, names, on_trial=progress)
    if as_json:
        print_json(summary(results))
        return
    for r in results:
        console.print(
            f"{r.name}: best validation {r.metric} {r.best_value:.4f} (trial {r.best_trial}); "
            f"config: {(out / r.name if names else out) / 'best.toml'}",
            markup=False,
        )


def fit_merge_command(
    model_dir: Annotated[Path, typer.Argument(help="A model directory from `mtrs train`.")],
    relevant: Annotated[
        str, typer.Option(help="Column whose 1s in the validation period are relevant.")
    ],
    metric: Annotated[str, typer.Option(help="Ranking metric to maximise.")] = "ndcg@10",
    as_json: Annotated[bool, typer.Option("--json", help="Print the fit as JSON.")] = False,
) -> None:
    """Fit the merge strategy and weights on the validation period; saved into config.toml."""
    if not is_ranking_metric(metric):
        raise MtrsUserError(f"--metric: '{metric}' is not a ranking metric ({RANKING_CHOICES})")
    from mtrs.experiments.merge_fit import fit_saved_merge

    fit = fit_saved_merge(model_dir, relevant, metric)
    doc = {"strategy": fit.strategy, "weights": fit.weights, "metric": metric, "value": fit.value}
    if as_json:
        print_json(doc)
        return
    weights = ", ".join(f"{t}={w:g}" for t, w in fit.weights.items())
    console.print(
        f"merge: {fit.strategy} ({weights}); validation {metric} {fit.value:.4f}; "
        f"saved to {model_dir / 'config.toml'}",
        markup=False,
    )


def register(app: typer.Typer) -> None:
    """Add the commands to the main app."""
    app.command()(tune)
    app.command("fit-merge")(fit_merge_command)
