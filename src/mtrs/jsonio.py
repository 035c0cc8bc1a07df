"""Strict JSON for files and stdout: NaN and infinities become null, NumPy scalars plain."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from mtrs.outdir import write_text


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
    """Write :func:`dumps` of ``data`` to ``path`` atomically (:func:`mtrs.outdir.atomic_path`)."""
    write_text(path, dumps(data))
