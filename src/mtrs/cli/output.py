"""Console output helpers: metric tables (Rich) and JSON for machines."""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

# Output to a pipe or file (CI logs, `| grep`) has no width to fit: Rich's default of 80
# columns would cut table headers (`conversion/ga…`), so such output is never narrowed.
PIPE_WIDTH = 10_000


def _width(stream: TextIO | None) -> int | None:
    """None (the terminal's own width) for a terminal, else :data:`PIPE_WIDTH`."""
    return None if stream is not None and stream.isatty() else PIPE_WIDTH


console = Console(width=_width(sys.stdout))
err_console = Console(stderr=True, width=_width(sys.stderr))


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a table cell ("–" for missing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_json(data: Any) -> None:
    """Strict JSON on stdout (NaN as null)."""
    from mtrs.jsonio import dumps  # NumPy-aware: imported when JSON is printed

    sys.stdout.write(dumps(data) + "\n")


def metrics_table(
    title: str,
    rows: Mapping[str, Mapping[str, Mapping[str, float]]],
    only: tuple[str, ...] | None = None,
) -> Table:
    """Rows = systems/splits, columns = ``task/metric``.

    Args:
        title: Table title.
        rows: Row name → {task → {metric → value}}.
        only: Metric names to show (all when None).
    """
    cols: list[str] = []
    for r in rows.values():
        for task, ms in r.items():
            for m in ms:
                if only is not None and m not in only:
                    continue
                key = f"{task}/{m}"
                if key not in cols:
                    cols.append(key)
    table = Table(title=title)
    table.add_column("")
    for c in cols:
        table.add_column(c, justify="right")
    for name, r in rows.items():
        cells = []
        for c in cols:
            task, m = c.split("/", 1)
            cells.append(fmt(r.get(task, {}).get(m)))
        table.add_row(name, *cells)
    return table
