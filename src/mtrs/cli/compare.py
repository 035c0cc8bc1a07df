"""``mtrs compare``: architectures (and λ values) side by side on one split and budget."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mtrs.cli.output import console, print_json
from mtrs.config.load import load_config
from mtrs.errors import MtrsUserError
from mtrs.outdir import COMPARE, check_out, data_files

if TYPE_CHECKING:
    from mtrs.experiments.record import RunRecord


def parse_lambdas(text: str | None) -> tuple[float, ...] | None:
    """``"0,0.1,0.3"`` → (0.0, 0.1, 0.3), each in [0, 1]."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise MtrsUserError(
            f"--lambdas: '{text}' is not a comma-separated list of numbers"
        ) from None
    bad = [v for v in values if not 0.0 <= v <= 1.0]
    if bad or not values:
        raise MtrsUserError(f"--lambdas: values must lie in [0, 1] (got '{text}')")
    return values


def compare(
    config: Annotated[Path, typer.Argument(help="The job's TOML config.")],
    out: Annotated[Path, typer.Option("--out", help="Output directory.")],
    architectures: Annotated[str, typer.Option(help="Comma-separated architecture names.")] = (
        "single,shared_bottom,omoe,mmoe,ple,esmm"
    ),
    seeds: Annotated[int, typer.Option(help="Seeds per architecture (0 … N−1).")] = 3,
    lambdas: Annotated[str | None, typer.Option(help="λ values to sweep, e.g. 0,0.1,0.3")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a previous output in OUT.")
    ] = False,
) -> None:
    """Train each architecture on the same split with the same budget; table, plots, report."""
    from mtrs.arch.registry import get_architecture
    from mtrs.experiments.aggregate import aggregate
    from mtrs.experiments.compare import comparison_markdown, run_comparison, write_comparison
    from mtrs.experiments.grid import Grid

    cfg = load_config(config)
    check_out(out, COMPARE, overwrite, data_files(cfg))
    names = tuple(a.strip() for a in architectures.split(",") if a.strip())
    for name in names:
        get_architecture(name)
    if seeds < 1:
        raise MtrsUserError("--seeds: must be at least 1")
    cfg.train.progress = False
    grid = Grid(names, seeds, parse_lambdas(lambdas))

    def progress(rec: RunRecord) -> None:
        main = next(iter(rec.metrics.values()), {})
        first = next(iter(main.items()), ("", float("nan")))
        if not as_json:
            console.print(
                f"  {rec.architecture:<14} λ={rec.lambda_shared:<4g} seed {rec.seed}: "
                f"{first[0]} {first[1]:.4f}  ({rec.train_seconds:.1f} s)"
            )

    records, skipped = run_comparison(cfg, grid, on_run=progress)
    if not records:
        raise MtrsUserError(f"{config}: no architecture could run ({'; '.join(skipped.values())})")
    write_comparison(records, skipped, out, f"mtrs compare — {config}")
    if as_json:
        print_json({"summary": aggregate(records), "skipped": skipped})
        return
    console.print(comparison_markdown(records, skipped), markup=False, highlight=False)
    console.print(f"wrote {out / 'compare.json'}, {out / 'compare.md'}, {out / 'report.html'}")


def register(app: typer.Typer) -> None:
    """Add the command to the main app."""
    app.command()(compare)
