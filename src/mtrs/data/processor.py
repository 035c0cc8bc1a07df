"""The feature processor: fitted on the training split, saved as JSON, applied to any rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from mtrs.config.models import FeatureConfig, JobConfig
from mtrs.data.batch import Batch
from mtrs.data.encoders import Scaler, Vocabulary, as_keys, encode_multi_hot
from mtrs.data.fitter import ProcessorFitter
from mtrs.data.history import HistoryBuilder, HistoryInput
from mtrs.data.labels import TaskEncoding, encode_labels
from mtrs.errors import MtrsUserError

PROCESSOR_FORMAT = "mtrs.processor/1"


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
        """Fit every encoder on the training rows only (a one-chunk :class:`ProcessorFitter`).

        Args:
            train: The merged training rows.
            cfg: The job config (features and tasks).

        Returns:
            The fitted processor.
        """
        return cls.from_fitter(ProcessorFitter(cfg).add(train))

    @classmethod
    def from_fitter(cls, fitter: ProcessorFitter) -> FittedProcessor:
        """The processor of every chunk added to ``fitter``."""
        enc = fitter.finish()
        return cls(fitter.cfg, enc.vocabs, enc.scalers, enc.tasks)

    # ----- encoding -------------------------------------------------------------------------
    def encode(self, df: pd.DataFrame, history: HistoryInput | None = None) -> Batch:
        """Encode rows into a :class:`Batch`.

        Args:
            df: Merged rows (event columns plus user and item columns).
            history: The rows' histories (from a :class:`HistoryBuilder` fed the whole log,
                or the catalog's at serving time). Without it, each row's history is built
                from the earlier rows of ``df`` alone.

        Returns:
            The encoded batch; label columns absent from ``df`` give an all-False mask.
        """
        df = df.reset_index(drop=True)
        n = len(df)
        cat = np.zeros((n, len(self.categorical)), dtype=np.int64)
        for j, f in enumerate(self.categorical):
            cat[:, j] = self.vocabs[f.name].encode(as_keys(df[f.source_column]))
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
        user = pd.factorize(df[self.cfg.data.user_key])[0].astype(np.int64)
        if history is None and self.histories:
            history = HistoryBuilder(self).add(df, user)
        given = history or HistoryInput({}, {}, {})
        hist = {k: torch.from_numpy(v) for k, v in given.items.items()}
        hval = {k: torch.from_numpy(v) for k, v in given.values.items()}
        hgap = {k: torch.from_numpy(v) for k, v in given.gaps.items()}
        labels, mask = encode_labels(df, self.tasks)
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
        feature = next((f for f in self.categorical if f.name == name), None)
        if feature is None:
            raise MtrsUserError(f"features.{history.name}.item_feature: not a categorical feature")
        return self.vocabs[feature.name].encode(as_keys(df[feature.source_column]))

    def _item_id_feature(self) -> str:
        item_col = self.cfg.data.item_col
        for f in self.categorical:
            if f.source_column == item_col:
                return f.name
        raise MtrsUserError(f"no categorical feature reads the item column '{item_col}'")

    # ----- serialisation --------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """JSON-ready state (vocabularies, scalers, label encodings)."""
        return {
            "format": PROCESSOR_FORMAT,
            "vocabs": {k: v.to_json() for k, v in self.vocabs.items()},
            "scalers": {k: v.to_json() for k, v in self.scalers.items()},
            "tasks": [t.to_json() for t in self.tasks],
        }

    @classmethod
    def from_json(cls, state: dict[str, Any], cfg: JobConfig) -> FittedProcessor:
        """Rebuild from :meth:`to_json` output and the job config it was fitted with.

        Raises:
            ValueError: Not a processor document of this format.
        """
        if state.get("format") != PROCESSOR_FORMAT:
            raise ValueError(f"format is {state.get('format')!r}, expected '{PROCESSOR_FORMAT}'")
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
