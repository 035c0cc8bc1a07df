"""The ``mtrs`` command: sub-commands, and user errors turned into one line and exit code 2."""

from __future__ import annotations

import sys

import typer
from rich.text import Text

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
    # Command groups that live in modules of their own (comparison, benchmarks, serving,
    # export).
    for module in (
        "mtrs.cli.compare",
        "mtrs.cli.benchmark",
        "mtrs.cli.tune",
        "mtrs.cli.serve",
        "mtrs.cli.export",
    ):
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
        # Text, not markup: user text such as "[/x]" or "[[tasks]]" is printed literally.
        message = Text.assemble(("error:", "bold red"), " ", str(err))
        err_console.print(message, highlight=False, soft_wrap=True)
        return 2
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except typer.TyperException as err:
        # Usage errors (bad option value, unknown command, missing option) and the like:
        # typer's own exception classes. One line, then where the usage is.
        text = err.format_message() if hasattr(err, "format_message") else str(err)
        err_console.print(Text.assemble(("error:", "bold red"), " ", text), highlight=False)
        ctx = getattr(err, "ctx", None)
        if ctx is not None:
            path = "mtrs " + " ".join(ctx.command_path.split()[1:]) if ctx.command_path else "mtrs"
            err_console.print(f"Try '{path.strip()} --help' for usage.", markup=False)
        return int(getattr(err, "exit_code", 2))
    return result if isinstance(result, int) else 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())


if __name__ == "__main__":
    main()
