"""Result tables of an experiment: cells, rows, markdown and Rich renderings."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from rich.table import Table

from mtrs.experiments.aggregate import Results

# (task or list, metric, column title).
Column = tuple[str, str, str]
# (key of a run_stats row, column title, number format).
StatColumn = tuple[str, str, str]

PARAMETERS: StatColumn = ("num_parameters", "parameters", "{:,.0f}")


def cell(results: Results, row: str, task: str, metric: str, style: str = "spread") -> str:
    """One cell: ``"spread"`` 0.8123 ± 0.0012, ``"compact"`` 0.812±0.001, ``"mean"`` 0.8123."""
    stat = results.get(row, {}).get(task, {}).get(metric)
    if stat is None or math.isnan(stat["mean"]):
        return "–"
    if style == "compact":
        return f"{stat['mean']:.3f}±{stat['std']:.3f}"
    if style == "spread":
        return f"{stat['mean']:.4f} ± {stat['std']:.4f}"
    return f"{stat['mean']:.4f}"


def rows(
    results: Results,
    columns: Sequence[Column],
    stats: Mapping[str, Mapping[str, float]] | None = None,
    stat_columns: Sequence[StatColumn] = (),
    *,
    style: str = "spread",
    first: str = "system",
    labels: Mapping[str, str] | None = None,
) -> tuple[list[str], list[list[str]]]:
    """Header and one row per result row: metric cells, then run statistics.

    Args:
        results: The aggregate.
        columns: The metric columns.
        stats: Per row label, run statistics (rows without any show "–").
        stat_columns: Which statistics, their titles and number formats.
        style: The metric cells' style (see :func:`cell`).
        first: Title of the label column.
        labels: Display names of row labels.
    """
    header = [first, *[c[2] for c in columns], *[s[1] for s in stat_columns]]
    out = []
    for row in results:
        st = (stats or {}).get(row, {})
        values = [
            fmt.format(st[key]) if key in st and not math.isnan(st[key]) else "–"
            for key, _, fmt in stat_columns
        ]
        cells = [cell(results, row, t, m, style) for t, m, _ in columns]
        out.append([(labels or {}).get(row, row), *cells, *values])
    return header, out


def markdown(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines) + "\n"


def rich_table(title: str, header: Sequence[str], body: Sequence[Sequence[str]]) -> Table:
    """A Rich table (labels left, numbers right)."""
    table = Table(title=title)
    for j, h in enumerate(header):
        table.add_column(h, justify="left" if j == 0 else "right")
    for r in body:
        table.add_row(*r)
    return table


def primary_columns(results: Results, shown: Sequence[str]) -> list[Column]:
    """Every task's metrics named in ``shown``, in first-seen order (``task/metric`` titles)."""
    cols: list[Column] = []
    for tasks in results.values():
        for task, metrics in tasks.items():
            for metric in metrics:
                col = (task, metric, f"{task}/{metric}")
                if metric in shown and col not in cols:
                    cols.append(col)
    return cols
