"""Reading CSV and Parquet tables with errors that name the file and column."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from mtrs.errors import MtrsUserError

_READERS = {
    ".csv": lambda p: pd.read_csv(p, low_memory=False),
    ".tsv": lambda p: pd.read_csv(p, sep="\t", low_memory=False),
    ".parquet": lambda p: pd.read_parquet(p),
    ".pq": lambda p: pd.read_parquet(p),
}


def read_table(path: str | Path, required: Iterable[str] = ()) -> pd.DataFrame:
    """Read a CSV or Parquet table and check it has rows and the required columns.

    Args:
        path: File path; the suffix (.csv, .tsv, .parquet, .pq) picks the reader.
        required: Columns that must be present.

    Returns:
        The table.

    Raises:
        MtrsUserError: Missing file, unknown format, unreadable, empty, or missing column.
    """
    p = Path(path)
    if p.is_dir():
        raise MtrsUserError(f"{p}: is a directory; name a data file (CSV or Parquet) in it")
    if not p.is_file():
        raise MtrsUserError(f"{p}: data file not found")
    reader = _READERS.get(p.suffix.lower())
    if reader is None:
        raise MtrsUserError(f"{p}: unsupported format '{p.suffix}' (use .csv or .parquet)")
    try:
        df = reader(p)
    except Exception as err:  # pandas/pyarrow raise many types; the user needs the file named
        raise MtrsUserError(f"{p}: could not be read ({type(err).__name__}: {err})") from None
    if len(df) == 0:
        raise MtrsUserError(f"{p}: the table is empty")
    missing = [c for c in required if c not in df.columns]
    if missing:
        present = ", ".join(map(str, df.columns))
        raise MtrsUserError(f"{p}: missing column '{missing[0]}' (columns present: {present})")
    return df


def data_row(values: pd.Series | pd.DataFrame, pos: int) -> int:
    """The 1-based data row of position ``pos``: the frame's integer index when it has one.

    A streamed chunk carries its rows' numbers in the file as its index, so a message about
    its 3rd row names the file's row, not the chunk's.
    """
    label = values.index[pos]
    return int(label) + 1 if isinstance(label, (int, np.integer)) else pos + 1
