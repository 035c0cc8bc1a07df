"""Task labels: how a label column becomes the float column of ``Batch.labels``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mtrs.config.models import LabelRule, TaskConfig
from mtrs.data.encoders import Scaler, as_keys
from mtrs.data.readers import data_row
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


def _numbers(col: pd.Series, field: str, where: str) -> np.ndarray:
    """A rule's column as floats (NaN where missing), naming the first non-numeric value."""
    v = pd.to_numeric(col, errors="coerce")
    bad = (v.isna() & col.notna()).to_numpy()
    if bad.any():
        row = int(bad.argmax())
        raise MtrsUserError(
            f"{where}: {field} compares column '{col.name}', which has non-numeric value "
            f"'{col.iloc[row]}' at data row {data_row(col, row)}"
        )
    return v.to_numpy(dtype=np.float64)


def _is_num(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def apply_rule(col: pd.Series, rule: LabelRule, field: str, where: str) -> pd.Series:
    """The values a :class:`LabelRule` derives from ``col``.

    Comparisons give 1.0 where every one holds, 0.0 where one fails and NaN where the value
    is missing; a map gives the class names (missing where the value is unmapped or missing).

    Args:
        col: The rule's column.
        rule: The rule.
        field: The config field, for messages (e.g. ``tasks.like.label``).
        where: The data source, for messages.

    Raises:
        MtrsUserError: A numeric comparison on a value that is not a number.
    """
    keys = as_keys(col)
    if rule.map is not None:
        return keys.map(rule.map).astype(object).where(keys.isin(list(rule.map)), None)
    ok = np.ones(len(col), dtype=bool)
    numeric: np.ndarray | None = None

    def num() -> np.ndarray:
        nonlocal numeric
        if numeric is None:
            numeric = _numbers(col, field, where)
        return numeric

    for op, bound in rule.comparisons.items():
        if op == "at_least":
            ok &= num() >= bound
        elif op == "above":
            ok &= num() > bound
        elif op == "at_most":
            ok &= num() <= bound
        elif op == "below":
            ok &= num() < bound
        else:
            values = bound if op == "one_of" else [bound]
            # Text that reads as a number matches a numeric column by value ("4" ~ 4.0).
            numeric_col = pd.api.types.is_numeric_dtype(col)
            texts = [v for v in values if isinstance(v, str) and not (numeric_col and _is_num(v))]
            nums = [float(v) for v in values if v not in texts]
            hit = keys.isin(texts).fillna(False).to_numpy(dtype=bool) if texts else False
            if nums:
                hit = hit | np.isin(num(), nums)
            ok &= hit
    out = np.where(col.isna().to_numpy(), np.nan, ok.astype(np.float64))
    return pd.Series(out, index=col.index, name=field)


def derive_labels(df: pd.DataFrame, tasks: list[TaskConfig], where: str) -> pd.DataFrame:
    """Add the columns of every derived label and condition (once, in the data stage).

    Rules whose column the rows lack (serving rows carry no labels) are skipped.
    """
    for t in tasks:
        for rule, column, field in (
            (t.label, t.label_column, f"tasks.{t.name}.label"),
            (t.condition, t.condition_column, f"tasks.{t.name}.condition"),
        ):
            if isinstance(rule, LabelRule) and column and rule.column in df.columns:
                df[column] = apply_rule(df[rule.column], rule, field, where).to_numpy()
    return df


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
            f"tasks.{t.name}: label column '{t.label_source}' has {len(out)} classes in the "
            f"training split, more than num_classes = {t.num_classes}"
        )
    if len(out) < 2:
        raise MtrsUserError(
            f"tasks.{t.name}: label column '{t.label_source}' has fewer than 2 classes in training"
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
        col = t.label_column
        if col not in df.columns:
            continue
        if enc.classes is not None:
            keys = as_keys(df[col]).astype(object).where(df[col].notna(), None)
            idx = pd.Index(enc.classes, dtype=object).get_indexer(pd.Index(keys, dtype=object))
            ok = idx >= 0
            labels[:, j] = np.where(ok, idx, 0)
        else:
            v = label_values(df[col], t)
            ok = ~np.isnan(v)
            if enc.scaler is not None:
                v = enc.scaler.transform(v)
            labels[:, j] = np.where(ok, v, 0.0)
        cond = t.condition_column
        if cond:
            if cond not in df.columns:
                continue
            ok &= df[cond].to_numpy(dtype=np.float64) == 1.0
        mask[:, j] = ok
    return labels, mask
