"""``mtrs train``, ``mtrs evaluate`` and ``mtrs recommend``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from mtrs.cli.output import console, err_console, fmt, metrics_table, print_json
from mtrs.config.load import config_to_dict, load_config, override
from mtrs.config.models import seed_keys
from mtrs.errors import MtrsUserError
from mtrs.outdir import CHECKPOINTS, MODEL, check_out, data_files

if TYPE_CHECKING:
    from mtrs.recommend.recommender import Recommendation

# Torch and pandas are imported inside the commands that use them: `mtrs --help` and config
# errors answer in a fraction of a second.


def parse_weights(text: str | None) -> dict[str, float] | None:
    """``"click=1,purchase=2"`` → ``{"click": 1.0, "purchase": 2.0}``."""
    if text is None:
        return None
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise MtrsUserError(
                f"--weights: '{part}' is not task=number (e.g. click=1,purchase=2)"
            ) from None
    return out


def train(
    config: Annotated[Path, typer.Argument(help="The job's TOML config.")],
    out: Annotated[Path, typer.Option("--out", help="Model directory to write.")],
    seed: Annotated[
        int | None,
        typer.Option(
            help="Seed for every random source: sets train.seed, split.seed and tune.seed."
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Override train.epochs.")] = None,
    architecture: Annotated[str | None, typer.Option(help="Override model.architecture.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics as JSON.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing mtrs model directory.")
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue from the latest checkpoint in OUT/checkpoints (start afresh when "
            "there is none); writes checkpoints at least at every epoch's end.",
        ),
    ] = False,
) -> None:
    """Train a model from a config and write its model directory (new, empty or --overwrite).

    With ``train.checkpoint_every`` or ``--resume`` the run writes checkpoints into
    OUT/checkpoints; a killed run continued with ``--resume`` ends exactly as the
    uninterrupted run would have. Under ``torchrun`` the processes train one model together
    (docs/distributed.md).
    """
    cfg = load_config(config)
    # before hours of training, not after
    check_out(out, MODEL, overwrite, data_files(cfg), resume=resume)
    options: dict[str, Any] = dict.fromkeys(seed_keys(cfg), seed) if seed is not None else {}
    if epochs is not None:
        options["train.epochs"] = epochs
    if architecture is not None:
        options["model.architecture"] = architecture
    cfg = override(cfg, options, str(config))
    cfg.train.progress = cfg.train.progress and not as_json
    from mtrs.artifact import save_job  # torch: only once the config is valid
    from mtrs.job import run_job
    from mtrs.train.checkpoint import Checkpoints
    from mtrs.train.distributed import Distributed

    dist = Distributed.from_env(cfg.train.device)  # under torchrun: join the process group
    main = dist is None or dist.is_main
    # Only rank 0 draws progress bars and writes; every rank trains.
    cfg.train.progress = cfg.train.progress and main
    store = None
    if cfg.train.checkpoint_every or resume:
        store = Checkpoints(
            out / CHECKPOINTS,
            config_to_dict(cfg),
            keep=cfg.train.keep_checkpoints,
            rank=dist.rank if dist else 0,
            world=dist.world if dist else 1,
            barrier=dist.barrier if dist else None,
        )
        if not resume:
            store.clear()  # --overwrite: the unfinished run is replaced, not continued
        elif store.latest() is None and main:
            err_console.print(f"{out / CHECKPOINTS}: no checkpoint yet; training from the start")
    try:
        job = run_job(cfg, checkpoints=store, dist=dist)
        if main:
            save_job(job, out, overwrite)
    finally:
        if dist is not None:
            dist.close()
    if not main:
        return
    for warning in job.warnings:
        err_console.print(f"warning: {warning}", markup=False, highlight=False)
    if as_json:
        print_json(
            {
                "model_dir": str(out),
                "warnings": job.warnings,
                "tasks": job.test_metrics,
                "num_parameters": job.num_parameters,
                "best_epoch": job.result.best_epoch,
            }
        )
        return
    console.print(
        metrics_table(
            f"test metrics — {cfg.model.architecture}",
            {"valid (best epoch)": job.result.best_valid, "test": job.test_metrics},
        )
    )
    console.print(
        f"parameters: {job.num_parameters:,}   best epoch: {job.result.best_epoch}   model: {out}"
    )


def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="A model directory from `mtrs train`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics as JSON.")] = False,
) -> None:
    """Re-score a saved model on its test split; rewrites MODEL_DIR/metrics.json."""
    from mtrs.rescore import rescore

    doc = rescore(model_dir)
    if as_json:
        print_json(doc)
        return
    console.print(metrics_table(f"test metrics — {model_dir}", {"test": doc["tasks"]}))


def _cell(value: object) -> str:
    """A data value as table text: empty when missing, never read as rich markup."""
    return "" if value is None else escape(str(value))


def print_recommendation(rec: Recommendation) -> None:
    """The merged list, then each task's list (id, title, display columns, score), and the profile.

    An unknown user's lists are the popularity fallback: a ``popularity`` column (the item's
    share of the training positives, as a percentage) instead of scores.
    """
    if rec.fallback:
        console.print(
            f"user {escape(rec.user)}: [yellow]unknown user — popularity fallback[/] (popularity = "
            "share of training interactions; a task's list: share of that task's training "
            "positives)",
            soft_wrap=True,
        )
        merged_title = "merged (popularity)"
    else:
        console.print(f"user {escape(rec.user)}: lists from the model", soft_wrap=True)
        weights = ", ".join(f"{t}={w:g}" for t, w in rec.weights.items())
        merged_title = f"merged ({rec.strategy}: {weights})"
    lists = {merged_title: rec.merged, **rec.lists}
    every = [item for items in lists.values() for item in items]
    titled = any(item.title is not None for item in every)
    display = list(dict.fromkeys(c for item in every for c in item.display))
    for name, items in lists.items():
        console.print(f"[bold]{escape(name)}[/]", soft_wrap=True)
        table = Table()
        table.add_column("rank", justify="right")
        table.add_column("item")
        if titled:
            table.add_column("title")
        for c in display:
            table.add_column(escape(c))
        table.add_column("popularity" if rec.fallback else "score", justify="right")
        for r, item in enumerate(items, start=1):
            shown = [_cell(item.display.get(c)) for c in display]
            value = (
                f"{100 * item.popularity:.2f}%"
                if item.popularity is not None
                else fmt(item.score, 3)
            )
            table.add_row(
                str(r), _cell(item.item), *([_cell(item.title)] if titled else []), *shown, value
            )
        console.print(table)
    if rec.profile:
        parts = []
        for task, value in rec.profile.items():
            if isinstance(value, dict):
                best = max(value, key=value.__getitem__)
                parts.append(f"{task}: {best} ({value[best]:.2f})")
            else:
                parts.append(f"{task}: {fmt(value, 3)}")
        console.print("predicted profile — " + "; ".join(parts))


def recommend(
    model_dir: Annotated[Path, typer.Argument(help="A model directory from `mtrs train`.")],
    user: Annotated[str, typer.Option("--user", help="The user's id.")],
    k: Annotated[int | None, typer.Option("--k", help="List length.")] = None,
    merge: Annotated[str | None, typer.Option(help="weighted_sum | weighted_product | rrf")] = None,
    weights: Annotated[
        str | None, typer.Option(help="Task weights, e.g. click=1,purchase=2")
    ] = None,
    candidates: Annotated[
        str | None,
        typer.Option(help="Comma-separated item ids to rank (default: every item not yet seen)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Top-K list per task and the merged list for one user."""
    if merge is not None and merge not in ("weighted_sum", "weighted_product", "rrf"):
        raise MtrsUserError(
            f"--merge: unknown strategy '{merge}' (weighted_sum, weighted_product, rrf)"
        )
    if k is not None and k < 1:
        raise MtrsUserError("--k: must be at least 1")
    from mtrs.artifact import load_model

    cands = [c.strip() for c in candidates.split(",") if c.strip()] if candidates else None
    rec = (
        load_model(model_dir)
        .recommender()
        .recommend(user, k, merge, parse_weights(weights), candidates=cands)
    )
    if as_json:
        print_json(rec.to_json())
    else:
        print_recommendation(rec)


def predict(
    model_dir: Annotated[Path, typer.Argument(help="A model directory from `mtrs train`.")],
    rows: Annotated[Path, typer.Argument(help="CSV or Parquet rows to score.")],
    out: Annotated[Path, typer.Option("--out", help="Predictions file (.csv or .parquet).")],
    keep: Annotated[
        str | None, typer.Option(help="Comma-separated input columns to copy (e.g. an id).")
    ] = None,
) -> None:
    """Score given rows (e.g. the candidate impressions of an id-less log): one column per task."""
    from mtrs.predict_rows import predict_file

    cols = [c.strip() for c in keep.split(",") if c.strip()] if keep else []
    result = predict_file(model_dir, rows, out, cols)
    console.print(f"scored {len(result):,} rows; predictions: {out}", markup=False)


def register(app: typer.Typer) -> None:
    """Add the commands to the main app."""
    app.command()(train)
    app.command()(evaluate)
    app.command()(recommend)
    app.command()(predict)
