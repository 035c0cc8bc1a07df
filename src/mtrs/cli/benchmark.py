"""``mtrs benchmark movielens-100k``: every architecture on the real-data quality workload."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mtrs.cli.output import console, err_console, print_json
from mtrs.outdir import BENCHMARK, check_out

benchmark_app = typer.Typer(help="Benchmarks on real data.", no_args_is_help=True)


@benchmark_app.command("movielens-100k")
def movielens_100k(
    out: Annotated[Path, typer.Option("--out", help="Directory for results and plots.")],
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Directory with u.data, u.item, u.user (default: download into the cache).",
        ),
    ] = None,
    seeds: Annotated[int, typer.Option(help="Number of seeds (mean ± std).")] = 3,
    architectures: Annotated[
        str | None,
        typer.Option(help="Comma-separated architectures (default: every registered one)."),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs (default 6).")] = None,
    negatives: Annotated[int, typer.Option(help="Sampled non-interactions per rating.")] = 4,
    max_users: Annotated[
        int | None, typer.Option(help="Use only this many users (quick runs).")
    ] = None,
    baselines: Annotated[
        str,
        typer.Option(help="Non-neural baselines, comma-separated (item_knn, ease, als) or none."),
    ] = "item_knn,ease,als",
    jobs: Annotated[
        int | None,
        typer.Option(
            help="Runs trained side by side in worker processes, the threads split between "
            "them (default: one run per thread, at most 4; docs/movielens.md)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print results.json on stdout.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a previous output in OUT.")
    ] = False,
) -> None:
    """Train every architecture for several seeds on MovieLens-100K; write results and plots."""
    from mtrs.baselines import BASELINES
    from mtrs.datasets.movielens import fetch_movielens_100k
    from mtrs.errors import MtrsUserError
    from mtrs.experiments.movielens import resolve_architectures, rich_tables, run_benchmark

    check_out(out, BENCHMARK, overwrite, [data_dir] if data_dir is not None else ())
    names = [a.strip() for a in architectures.split(",") if a.strip()] if architectures else None
    resolve_architectures(names)  # a bad name fails before any download or training
    chosen = [b.strip() for b in baselines.split(",") if b.strip() and b.strip() != "none"]
    for b in chosen:
        if b not in BASELINES:
            known = ", ".join(BASELINES)
            raise MtrsUserError(f"--baselines: unknown baseline '{b}' (known: {known}, none)")
    source = data_dir if data_dir is not None else fetch_movielens_100k()
    progress = err_console if as_json else console
    result = run_benchmark(
        source,
        out,
        seeds,
        names,
        epochs,
        negatives,
        max_users=max_users,
        baselines=chosen,
        console=progress,
        jobs=jobs,
    )
    if as_json:
        print_json(result.results)
        return
    for table in rich_tables(result.results, result.runs):
        console.print(table)
    console.print(f"done in {result.seconds:.0f} s; results in {out}/results.md and results.json")


def register(app: typer.Typer) -> None:
    """Add ``mtrs benchmark`` to the main app."""
    app.add_typer(benchmark_app, name="benchmark")
