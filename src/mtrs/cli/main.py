"""The ``mtrs`` command: sub-commands, and user errors turned into one line and exit code 2."""

from __future__ import annotations

import sys

import click
import typer

from mtrs.cli import data, models, quickstart
from mtrs.cli.output import err_console
from mtrs.errors import MtrsUserError

app = typer.Typer(
    name="mtrs",
    help="Multi-task recommender: train one model for several tasks, rank, merge, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models.register(app)
quickstart.register(app)
app.add_typer(data.data_app, name="data")
app.add_typer(data.datasets_app, name="datasets")


def _register_optional() -> None:
    # Command groups that live in modules of their own (comparison, benchmarks, serving).
    for module in ("mtrs.cli.compare", "mtrs.cli.benchmark", "mtrs.cli.serve"):
        try:
            mod = __import__(module, fromlist=["register"])
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
            continue
        mod.register(app)


_register_optional()


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; a user mistake prints ``error: ...`` and gives 2."""
    try:
        result = app(args=argv, standalone_mode=False)
    except MtrsUserError as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        return 2
    except click.exceptions.UsageError as err:
        err.show()
        return 2
    except click.exceptions.ClickException as err:
        err.show()
        return err.exit_code
    except click.exceptions.Abort:
        err_console.print("aborted")
        return 130
    return result if isinstance(result, int) else 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())


if __name__ == "__main__":
    main()
