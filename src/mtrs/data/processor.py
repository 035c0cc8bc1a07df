"""The feature processor: fitted on the training split, saved as JSON, applied to any rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from mtrs.config.models import FeatureConfig, JobConfig, TaskConfig
from mtrs.data.batch import Batch
from mtrs.data.encoders import (
    Scaler,
    Vocabulary,
    as_keys,
    encode_multi_hot,
    fit_multi_hot_vocab,
)
from mtrs.data.history import history_indices
from mtrs.errors import MtrsUserError

GAP_SCALE_SECONDS = 3600.0


@dataclass
class TaskEncoding:
    """How one task's label column becomes the float column of ``Batch.labels``."""

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


@dataclass
class HistoryInput:
    """Precomputed histories for rows (used when serving, where the log is not at hand)."""

    items: dict[str, np.ndarray]
    values: dict[str, np.ndarray]
    gaps: dict[str, np.ndarray]


class FittedProcessor:
    """Vocabularies, scalers and label encodings fitted on training rows.

    The same object encodes training, validation, test and serving rows, so prediction and
    training never diverge. It round-trips through JSON (:meth:`to_json`, :meth:`from_json`).
    """

    def __init__(
        self,
        cfg: JobConfig,
        vocabs: dict[str, Vocabulary],
        scalers: dict[str, Scaler],
        tasks: list[TaskEncoding],
    ) -> None:
        self.cfg = cfg
        self.vocabs = vocabs
        self.scalers = scalers
        self.tasks = tasks

    # ----- layout ---------------------------------------------------------------------------
    @property
    def categorical(self) -> list[FeatureConfig]:
        """Categorical features, in the column order of ``Batch.cat``."""
        return [f for f in self.cfg.features if f.kind == "categorical"]

    @property
    def numeric(self) -> list[FeatureConfig]:
        """Numeric features, in the column order of ``Batch.num``."""
        return [f for f in self.cfg.features if f.kind == "numeric"]

    @property
    def multi_hot(self) -> list[FeatureConfig]:
        """Multi-hot features (keys of ``Batch.multi``)."""
        return [f for f in self.cfg.features if f.kind == "multi_hot"]

    @property
    def histories(self) -> list[FeatureConfig]:
        """Behaviour-history features (keys of ``Batch.hist``)."""
        return [f for f in self.cfg.features if f.kind == "history"]

    def vocab_size(self, name: str) -> int:
        """Embedding rows needed by a categorical or multi-hot feature."""
        return self.vocabs[name].size

    def task_names(self) -> list[str]:
        """Task names in label-column order."""
        return [t.config.name for t in self.tasks]

    # ----- fitting --------------------------------------------------------------------------
    @classmethod
    def fit(cls, train: pd.DataFrame, cfg: JobConfig) -> FittedProcessor:
        """Fit every encoder on the training rows only.

        Args:
            train: The merged training rows.
            cfg: The job config (features and tasks).

        Returns:
            The fitted processor.
        """
        vocabs: dict[str, Vocabulary] = {}
        scalers: dict[str, Scaler] = {}
        for f in cfg.features:
            col = train[f.source_column] if f.kind != "history" else None
            if f.kind == "categorical" and col is not None:
                vocabs[f.name] = Vocabulary.fit(as_keys(col), f.min_count, f.hash_buckets)
            elif f.kind == "numeric" and col is not None:
                scalers[f.name] = Scaler.fit(col.to_numpy(dtype=np.float64), f.log1p)
            elif f.kind == "multi_hot" and col is not None:
                vocabs[f.name] = fit_multi_hot_vocab(col, f.separator, f.min_count)
            elif f.kind == "history" and f.history_value:
                scalers[f.name] = Scaler.fit(train[f.history_value].to_numpy(dtype=np.float64))
        tasks = [cls._fit_task(train, t) for t in cfg.tasks]
        return cls(cfg, vocabs, scalers, tasks)

    @staticmethod
    def _fit_task(train: pd.DataFrame, t: TaskConfig) -> TaskEncoding:
        col = train[t.label]
        if t.type == "multiclass":
            keys = as_keys(col).dropna()
            classes = sorted(keys.unique().tolist())
            if t.num_classes is not None and len(classes) > t.num_classes:
                raise MtrsUserError(
                    f"tasks.{t.name}: label column '{t.label}' has {len(classes)} classes in the "
                    f"training split, more than num_classes = {t.num_classes}"
                )
            if len(classes) < 2:
                raise MtrsUserError(
                    f"tasks.{t.name}: label column '{t.label}' has fewer than 2 classes in training"
                )
            return TaskEncoding(t, classes=classes)
        if t.type == "regression":
            return TaskEncoding(t, scaler=Scaler.fit(FittedProcessor.label_values(col, t)))
        return TaskEncoding(t)

    # ----- encoding -------------------------------------------------------------------------
    def encode(self, df: pd.DataFrame, history: HistoryInput | None = None) -> Batch:
        """Encode rows into a :class:`Batch`.

        Args:
            df: Merged rows (event columns plus user and item columns).
            history: Histories to use instead of computing them from ``df`` itself (serving).
                Without it, each row's history is built from the earlier rows of ``df``.

        Returns:
            The encoded batch; label columns absent from ``df`` give an all-False mask.
        """
        df = df.reset_index(drop=True)
        n = len(df)
        cat = np.zeros((n, len(self.categorical)), dtype=np.int64)
        codes_by_name: dict[str, np.ndarray] = {}
        for j, f in enumerate(self.categorical):
            codes_by_name[f.name] = self.vocabs[f.name].encode(as_keys(df[f.source_column]))
            cat[:, j] = codes_by_name[f.name]
        num = np.zeros((n, len(self.numeric)), dtype=np.float32)
        for j, f in enumerate(self.numeric):
            num[:, j] = self.scalers[f.name].transform(df[f.source_column].to_numpy())
        multi = {
            f.name: torch.from_numpy(
                encode_multi_hot(
                    df[f.source_column], self.vocabs[f.name], f.separator, f.max_length
                )
            )
            for f in self.multi_hot
        }
        hist, hval, hgap = self._histories(df, codes_by_name, history)
        labels, mask = self._labels(df)
        user = pd.factorize(df[self.cfg.data.user_col])[0].astype(np.int64)
        return Batch(
            cat=torch.from_numpy(cat),
            num=torch.from_numpy(num),
            labels=torch.from_numpy(labels),
            mask=torch.from_numpy(mask),
            user=torch.from_numpy(user),
            multi=multi,
            hist=hist,
            hist_value=hval,
            hist_gap=hgap,
        )

    def encode_items(self, item_ids: pd.Series) -> np.ndarray:
        """Codes of raw item ids in the vocabulary of the history's item feature."""
        feats = self.histories
        name = feats[0].item_feature if feats else self._item_id_feature()
        assert name is not None
        return self.vocabs[name].encode(as_keys(item_ids))

    def history_item_codes(self, df: pd.DataFrame, history: FeatureConfig) -> np.ndarray:
        """Codes of each row's item in ``history``'s item feature (read from its source column)."""
        name = history.item_feature
        assert name is not None
        source = next(f.source_column for f in self.cfg.features if f.name == name)
        return self.vocabs[name].encode(as_keys(df[source]))

    def _item_id_feature(self) -> str:
        item_col = self.cfg.data.item_col
        for f in self.categorical:
            if f.source_column == item_col:
                return f.name
        raise MtrsUserError(f"no categorical feature reads the item column '{item_col}'")

    def _histories(
        self,
        df: pd.DataFrame,
        codes_by_name: dict[str, np.ndarray],
        given: HistoryInput | None,
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        hist: dict[str, torch.Tensor] = {}
        hval: dict[str, torch.Tensor] = {}
        hgap: dict[str, torch.Tensor] = {}
        if not self.histories:
            return hist, hval, hgap
        if given is not None:
            for f in self.histories:
                hist[f.name] = torch.from_numpy(given.items[f.name])
                if f.name in given.values:
                    hval[f.name] = torch.from_numpy(given.values[f.name])
                if f.name in given.gaps:
                    hgap[f.name] = torch.from_numpy(given.gaps[f.name])
            return hist, hval, hgap
        d = self.cfg.data
        user = pd.factorize(df[d.user_col])[0]
        time = df[d.time_col].to_numpy()
        tnum = pd.to_numeric(df[d.time_col], errors="coerce").to_numpy(dtype=np.float64)
        for f in self.histories:
            if f.history_filter and f.history_filter not in df.columns:
                raise MtrsUserError(
                    f"feature '{f.name}': history_filter column '{f.history_filter}' is not in "
                    "the rows to encode (pass precomputed histories instead)"
                )
            is_src = (
                df[f.history_filter].to_numpy(dtype=np.float64) == 1.0
                if f.history_filter
                else np.ones(len(df), dtype=bool)
            )
            rows, valid = history_indices(user, time, is_src, f.max_length)
            assert f.item_feature is not None
            item_codes = codes_by_name.get(f.item_feature)
            if item_codes is None:
                raise MtrsUserError(f"features.{f.name}.item_feature: not a categorical feature")
            hist[f.name] = torch.from_numpy(np.where(valid, item_codes[rows], 0))
            if f.history_value:
                v = self.scalers[f.name].transform(df[f.history_value].to_numpy())
                hval[f.name] = torch.from_numpy(np.where(valid, v[rows], 0.0).astype(np.float32))
            if self.cfg.model.sequence.time_gaps:
                gap = np.log1p(np.clip(tnum[:, None] - tnum[rows], 0, None) / GAP_SCALE_SECONDS)
                hgap[f.name] = torch.from_numpy(np.where(valid, gap, 0.0).astype(np.float32))
        return hist, hval, hgap

    def _labels(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        n = len(df)
        labels = np.zeros((n, len(self.tasks)), dtype=np.float32)
        mask = np.zeros((n, len(self.tasks)), dtype=bool)
        for j, enc in enumerate(self.tasks):
            t = enc.config
            if t.label not in df.columns:
                continue
            if enc.classes is not None:
                keys = as_keys(df[t.label]).astype(object).where(df[t.label].notna(), None)
                idx = pd.Index(enc.classes, dtype=object).get_indexer(pd.Index(keys, dtype=object))
                ok = idx >= 0
                labels[:, j] = np.where(ok, idx, 0)
            else:
                v = self.label_values(df[t.label], t)
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

    @staticmethod
    def label_values(col: pd.Series, t: TaskConfig) -> np.ndarray:
        """A binary or regression label column as floats, NaN where missing.

        With ``positive_value`` set, that value gives 1 and any other value 0.
        """
        if t.positive_value is None:
            return col.to_numpy(dtype=np.float64)
        keys = as_keys(col)
        # fillna before to_numpy: an Arrow-backed boolean with missing values rejects a float
        # na_value (pandas 3), and missing labels are masked below anyway.
        v = (keys == t.positive_value).fillna(False).to_numpy(dtype=np.float64)
        return np.where(col.isna().to_numpy(), np.nan, v)

    # ----- serialisation --------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """JSON-ready state (vocabularies, scalers, label encodings)."""
        return {
            "format": "mtrs.processor/1",
            "vocabs": {k: v.to_json() for k, v in self.vocabs.items()},
            "scalers": {k: v.to_json() for k, v in self.scalers.items()},
            "tasks": [t.to_json() for t in self.tasks],
        }

    @classmethod
    def from_json(cls, state: dict[str, Any], cfg: JobConfig) -> FittedProcessor:
        """Rebuild from :meth:`to_json` output and the job config it was fitted with."""
        vocabs = {k: Vocabulary.from_json(v) for k, v in state["vocabs"].items()}
        scalers = {k: Scaler.from_json(v) for k, v in state["scalers"].items()}
        by_name = {t.name: t for t in cfg.tasks}
        tasks = [
            TaskEncoding(
                by_name[t["name"]],
                classes=t["classes"],
                scaler=Scaler.from_json(t["scaler"]) if t["scaler"] else None,
            )
            for t in state["tasks"]
        ]
        return cls(cfg, vocabs, scalers, tasks)
