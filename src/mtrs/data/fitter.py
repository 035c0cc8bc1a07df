"""The processor's fit, incremental: add the training rows chunk by chunk, then finish.

Fitting the whole training split in memory is the same fit with a single chunk, so the
in-memory and the streamed paths cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mtrs.config.models import JobConfig
from mtrs.data.encoders import (
    Moments,
    Scaler,
    Vocabulary,
    as_keys,
    merge_moments,
    moments,
    multi_hot_tokens,
)
from mtrs.data.labels import TaskEncoding, label_classes, label_values


@dataclass
class FittedEncoders:
    """What a fit produces: vocabularies and scalers by feature name, one encoding per task."""

    vocabs: dict[str, Vocabulary]
    scalers: dict[str, Scaler]
    tasks: list[TaskEncoding]


@dataclass
class ProcessorFitter:
    """Sufficient statistics of the training rows: value counts, moments and label classes.

    Args:
        cfg: The job config (features and tasks).
    """

    cfg: JobConfig
    counts: dict[str, pd.Series] = field(default_factory=dict)
    moments: dict[str, Moments] = field(default_factory=dict)
    classes: dict[str, set[str]] = field(default_factory=dict)
    rows: int = 0

    def _add_counts(self, name: str, keys: pd.Series) -> None:
        vc = keys.dropna().value_counts()
        old = self.counts.get(name)
        self.counts[name] = vc if old is None else old.add(vc, fill_value=0)

    def _add_moments(self, name: str, values: np.ndarray, log1p: bool = False) -> None:
        m = moments(values, log1p)
        self.moments[name] = merge_moments(self.moments.get(name, (0.0, 0.0, 0.0)), m)

    def add(self, train: pd.DataFrame) -> ProcessorFitter:
        """Fold in a chunk of training rows (merged with the users and items tables)."""
        self.rows += len(train)
        for f in self.cfg.features:
            if f.kind == "categorical" and not f.hash_buckets:
                self._add_counts(f.name, as_keys(train[f.source_column]))
            elif f.kind == "numeric":
                self._add_moments(f.name, train[f.source_column].to_numpy(np.float64), f.log1p)
            elif f.kind == "multi_hot":
                self._add_counts(f.name, multi_hot_tokens(train[f.source_column], f.separator))
            elif f.kind == "history" and f.history_value:
                self._add_moments(f.name, train[f.history_value].to_numpy(np.float64))
        for t in self.cfg.tasks:
            if t.type == "multiclass":
                keys = as_keys(train[t.label_column]).dropna().unique().tolist()
                self.classes.setdefault(t.name, set()).update(str(k) for k in keys)
            elif t.type == "regression":
                self._add_moments(t.name, label_values(train[t.label_column], t))
        return self

    def finish(self) -> FittedEncoders:
        """The vocabularies, scalers and label encodings of every row added.

        Raises:
            MtrsUserError: A multiclass label with too many or too few classes.
        """
        vocabs: dict[str, Vocabulary] = {}
        scalers: dict[str, Scaler] = {}
        empty = pd.Series([], dtype="int64")
        for f in self.cfg.features:
            if f.kind in ("categorical", "multi_hot"):
                counts = self.counts.get(f.name, empty).astype(np.int64)
                # Multi-hot tokens are never hashed.
                buckets = f.hash_buckets if f.kind == "categorical" else 0
                vocabs[f.name] = Vocabulary.from_counts(counts, f.min_count, buckets)
            elif f.kind == "numeric" or (f.kind == "history" and f.history_value):
                log1p = f.log1p if f.kind == "numeric" else False
                m = self.moments.get(f.name, (0.0, 0.0, 0.0))
                scalers[f.name] = Scaler.from_moments(*m, log1p=log1p)
        tasks: list[TaskEncoding] = []
        for t in self.cfg.tasks:
            if t.type == "multiclass":
                tasks.append(
                    TaskEncoding(t, classes=label_classes(t, self.classes.get(t.name, set())))
                )
            elif t.type == "regression":
                m = self.moments.get(t.name, (0.0, 0.0, 0.0))
                tasks.append(TaskEncoding(t, scaler=Scaler.from_moments(*m)))
            else:
                tasks.append(TaskEncoding(t))
        return FittedEncoders(vocabs, scalers, tasks)
