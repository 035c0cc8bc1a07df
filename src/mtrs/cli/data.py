"""``mtrs data synth`` (synthetic log with ground truth) and ``mtrs datasets fetch``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mtrs.cli.output import console
from mtrs.errors import MtrsUserError
from mtrs.outdir import EXAMPLE, EXPORT, SYNTH, check_out

data_app = typer.Typer(help="Generate data.", no_args_is_help=True)
datasets_app = typer.Typer(help="Public datasets.", no_args_is_help=True)


@data_app.command("synth")
def synth_command(
    out: Annotated[Path, typer.Option("--out", help="Directory to write.")],
    users: Annotated[int, typer.Option(help="Number of users.")] = 2000,
    items: Annotated[int, typer.Option(help="Number of items.")] = 500,
    events: Annotated[int, typer.Option(help="Number of impressions.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet")] = "csv",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a previous output in OUT.")
    ] = False,
) -> None:
    """Write a synthetic e-commerce log with known ground truth, and a config for it."""
    if fmt not in ("csv", "parquet"):
        raise MtrsUserError(f"--format: '{fmt}' is not csv or parquet")
    from mtrs.datasets import synth
    from mtrs.datasets.quickstart import write_synth

    check_out(out, SYNTH, overwrite)
    spec = synth.SynthSpec(num_users=users, num_items=items, num_events=events, seed=seed)
    config = write_synth(out, spec, fmt)
    console.print(f"wrote interactions, users, items and truth tables to {out}; config: {config}")


@data_app.command("example")
def example_command(
    name: Annotated[str, typer.Argument(help="ratings | impressions | numeric")],
    out: Annotated[Path, typer.Option("--out", help="Directory to write.")],
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a previous output in OUT.")
    ] = False,
) -> None:
    """Write a small synthetic log in one of the layouts of docs/own-data.md."""
    from mtrs.datasets.examples import write_example

    check_out(out, EXAMPLE, overwrite)

    ex = write_example(name, out, seed)
    files = ", ".join(str(p) for p in ex.files.values())
    console.print(
        f"wrote {files}; copy configs/examples/{name}.toml into {out} and train it",
        markup=False,
    )


@datasets_app.command("fetch")
def fetch(
    name: Annotated[str, typer.Argument(help="Dataset name: movielens-100k")],
    directory: Annotated[Path | None, typer.Option("--dir", help="Cache directory.")] = None,
) -> None:
    """Download a public dataset into the cache ($MTRS_DATA or ~/.cache/mtrs) and verify it."""
    if name != "movielens-100k":
        raise MtrsUserError(f"unknown dataset '{name}' (known: movielens-100k)")
    from mtrs.datasets.movielens import fetch_movielens_100k

    path = fetch_movielens_100k(directory)
    console.print(f"MovieLens-100K ready at {path}")


@datasets_app.command("export")
def export(
    name: Annotated[str, typer.Argument(help="Dataset name: movielens-100k")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the tables and mtrs.toml.")],
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Directory with u.data, u.item, u.user (default: fetch)."),
    ] = None,
    negatives: Annotated[int, typer.Option(help="Sampled non-interactions per rating.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the negative sampling.")] = 0,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a previous output in OUT.")
    ] = False,
) -> None:
    """Write the MovieLens benchmark job (tables + mtrs.toml) for train, tune and compare."""
    if name != "movielens-100k":
        raise MtrsUserError(f"unknown dataset '{name}' (known: movielens-100k)")
    check_out(out, EXPORT, overwrite, [data_dir] if data_dir is not None else ())
    from mtrs.datasets.movielens import fetch_movielens_100k, load_movielens_100k
    from mtrs.datasets.movielens_job import write_movielens_job

    source = data_dir if data_dir is not None else fetch_movielens_100k()
    config = write_movielens_job(load_movielens_100k(source), out, negatives, seed)
    console.print(f"wrote the MovieLens-100K job to {out}; config: {config}", markup=False)
