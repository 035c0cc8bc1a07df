"""Strict JSON for files and stdout: NaN and infinities become null, NumPy scalars plain."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def json_safe(x: Any) -> Any:
    """``x`` with non-finite floats as None and NumPy scalars as Python ones (recursively)."""
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    return x


def dumps(data: Any) -> str:
    """Indented strict JSON (strict readers reject NaN)."""
    return json.dumps(json_safe(data), indent=2, allow_nan=False)


def write_json(path: Path, data: Any) -> None:
    """Write :func:`dumps` of ``data`` to ``path`` atomically.

    The text goes to a temporary file in the same directory, which then replaces ``path``, so
    a concurrent reader sees the old file or the new one, never a half-written one.
    """
    text = dumps(data)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
