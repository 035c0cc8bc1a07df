"""``mtrs data synth`` (synthetic log with ground truth) and ``mtrs datasets fetch``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from mtrs.cli.output import console
from mtrs.data import synth
from mtrs.errors import MtrsUserError

data_app = typer.Typer(help="Generate data.", no_args_is_help=True)
datasets_app = typer.Typer(help="Public datasets.", no_args_is_help=True)


def quickstart_config_text(fmt: str = "csv") -> str:
    """The packaged quickstart config, pointing at tables with the given suffix."""
    text = resources.files("mtrs").joinpath("configs/quickstart.toml").read_text("utf-8")
    return text.replace(".csv", f".{fmt}")


def write_synth(out: Path, spec: synth.SynthSpec, fmt: str = "csv") -> Path:
    """Write the synthetic tables, truth and a ready config ``mtrs.toml``; returns the config."""
    synth.write(synth.generate(spec), out, fmt=fmt)  # type: ignore[arg-type]
    config = out / "mtrs.toml"
    config.write_text(quickstart_config_text(fmt), encoding="utf-8")
    return config


@data_app.command("synth")
def synth_command(
    out: Annotated[Path, typer.Option("--out", help="Directory to write.")],
    users: Annotated[int, typer.Option(help="Number of users.")] = 2000,
    items: Annotated[int, typer.Option(help="Number of items.")] = 500,
    events: Annotated[int, typer.Option(help="Number of impressions.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet")] = "csv",
) -> None:
    """Write a synthetic e-commerce log with known ground truth, and a config for it."""
    if fmt not in ("csv", "parquet"):
        raise MtrsUserError(f"--format: '{fmt}' is not csv or parquet")
    spec = synth.SynthSpec(num_users=users, num_items=items, num_events=events, seed=seed)
    config = write_synth(out, spec, fmt)
    console.print(f"wrote interactions, users, items and truth tables to {out}; config: {config}")


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
