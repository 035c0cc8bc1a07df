"""Task labels: how a label column becomes the float column of ``Batch.labels``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mtrs.config.models import TaskConfig
from mtrs.data.encoders import Scaler, as_keys
from mtrs.errors import MtrsUserError


@dataclass
class TaskEncoding:
    """One task's fitted label encoding: the classes of a multiclass task, a regression scaler."""

    config: TaskConfig
    classes: list[str] | None = None
    scaler: Scaler | None = None

    @property
    def output_dim(self) -> int:
        """Width of the task head: 1, or the number of classes."""
        return len(self.classes) if self.classes is not None else 1

    def to_json(self) -> dict[str, Any]:
        """JSON-ready state."""
        return {
            "name": self.config.name,
            "classes": self.classes,
            "scaler": self.scaler.to_json() if self.scaler else None,
        }


def label_values(col: pd.Series, t: TaskConfig) -> np.ndarray:
    """A binary or regression label column as floats, NaN where missing.

    With ``positive_value`` set, that value gives 1 and any other value 0.
    """
    if t.positive_value is None:
        return col.to_numpy(dtype=np.float64)
    keys = as_keys(col)
    # fillna before to_numpy: an Arrow-backed boolean with missing values rejects a float
    # na_value (pandas 3), and missing labels are masked anyway.
    v = (keys == t.positive_value).fillna(False).to_numpy(dtype=np.float64)
    return np.where(col.isna().to_numpy(), np.nan, v)


def label_classes(t: TaskConfig, classes: set[str]) -> list[str]:
    """The sorted classes of a multiclass task, checked against ``num_classes``.

    Raises:
        MtrsUserError: More classes than ``num_classes``, or fewer than two.
    """
    out = sorted(classes)
    if t.num_classes is not None and len(out) > t.num_classes:
        raise MtrsUserError(
            f"tasks.{t.name}: label column '{t.label}' has {len(out)} classes in the "
            f"training split, more than num_classes = {t.num_classes}"
        )
    if len(out) < 2:
        raise MtrsUserError(
            f"tasks.{t.name}: label column '{t.label}' has fewer than 2 classes in training"
        )
    return out


def encode_labels(df: pd.DataFrame, tasks: list[TaskEncoding]) -> tuple[np.ndarray, np.ndarray]:
    """Label matrix and mask [n, T]: a task's label counts where present and its condition is 1.

    Label columns absent from ``df`` give an all-False mask (serving rows have no labels).
    """
    n = len(df)
    labels = np.zeros((n, len(tasks)), dtype=np.float32)
    mask = np.zeros((n, len(tasks)), dtype=bool)
    for j, enc in enumerate(tasks):
        t = enc.config
        if t.label not in df.columns:
            continue
        if enc.classes is not None:
            keys = as_keys(df[t.label]).astype(object).where(df[t.label].notna(), None)
            idx = pd.Index(enc.classes, dtype=object).get_indexer(pd.Index(keys, dtype=object))
            ok = idx >= 0
            labels[:, j] = np.where(ok, idx, 0)
        else:
            v = label_values(df[t.label], t)
            ok = ~np.isnan(v)
            if enc.scaler is not None:
                v = enc.scaler.transform(v)
            labels[:, j] = np.where(ok, v, 0.0)
        if t.condition:
            if t.condition not in df.columns:
                continue
            ok &= df[t.condition].to_numpy(dtype=np.float64) == 1.0
        mask[:, j] = ok
    return labels, mask
