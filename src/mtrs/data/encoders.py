"""Per-feature encoders fitted on the training split: vocabularies, hashing, scalers, labels."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

PAD, OOV = 0, 1
_HASH_KEY = "mtrs-hash-key-01"
# (count, mean, sum of squared deviations) of a numeric column.
Moments = tuple[float, float, float]


def as_keys(col: pd.Series) -> pd.Series:
    """Values as strings, so that ``3``, ``3.0`` and ``"3"`` name the same category.

    Missing values stay missing (they encode as out-of-vocabulary).
    """
    if pd.api.types.is_float_dtype(col):
        vals = col.to_numpy()
        finite = vals[~np.isnan(vals)]
        # Whole numbers as integers — those that fit int64 (1e19 stays a float's text).
        whole = np.all(finite == np.round(finite)) and np.all(np.abs(finite) < 2.0**63)
        if finite.size and whole:
            col = col.astype("Int64")
    out = col.astype("string")
    return out


@dataclass
class Vocabulary:
    """Category → code: 0 is padding, 1 out-of-vocabulary, 2.. the fitted values.

    With ``hash_buckets`` > 0 no vocabulary is kept: code = 2 + hash(value) mod buckets.
    """

    values: list[str] = field(default_factory=list)
    hash_buckets: int = 0

    @property
    def size(self) -> int:
        """Rows the embedding table needs (padding and OOV included)."""
        return 2 + (self.hash_buckets if self.hash_buckets else len(self.values))

    @classmethod
    def fit(cls, keys: pd.Series, min_count: int, hash_buckets: int = 0) -> Vocabulary:
        """Fit on string keys; values seen fewer than ``min_count`` times go to OOV."""
        if hash_buckets:
            return cls([], hash_buckets)
        return cls.from_counts(keys.dropna().value_counts(), min_count)

    @classmethod
    def from_counts(cls, counts: pd.Series, min_count: int, hash_buckets: int = 0) -> Vocabulary:
        """Fit on value counts (string value → count), e.g. summed over chunks of a stream."""
        if hash_buckets:
            return cls([], hash_buckets)
        counts = counts[counts >= min_count]
        # Sort by frequency then value so that the vocabulary is deterministic.
        frame = pd.DataFrame({"v": counts.index.astype(str), "c": counts.to_numpy()})
        frame = frame.sort_values(["c", "v"], ascending=[False, True], kind="stable")
        return cls(frame["v"].tolist(), 0)

    def encode(self, keys: pd.Series) -> np.ndarray:
        """Codes (int64) for string keys; missing or unseen → OOV."""
        if self.hash_buckets:
            arr = keys.fillna("\x00missing").astype(str).to_numpy(dtype=object)
            h = pd.util.hash_array(arr, hash_key=_HASH_KEY, categorize=True)
            codes = (h % np.uint64(self.hash_buckets)).astype(np.int64) + 2
            codes[keys.isna().to_numpy()] = OOV
            return codes
        # The distinct keys are looked up (``pd.factorize`` hashes the column in one pass),
        # then spread back over the rows; missing keys are OOV.
        rows, distinct = pd.factorize(keys)
        if not len(distinct):
            return np.full(len(keys), OOV, np.int64)
        idx = self._index().get_indexer(pd.Index(np.asarray(distinct, dtype=object)))
        mapped = np.where(idx >= 0, idx + 2, OOV).astype(np.int64)
        return np.where(rows >= 0, mapped[rows], OOV)

    def _index(self) -> pd.Index:
        cached: pd.Index | None = getattr(self, "_cached_index", None)
        if cached is None:
            cached = pd.Index(self.values, dtype=object)
            object.__setattr__(self, "_cached_index", cached)
        return cached

    def to_json(self) -> dict[str, Any]:
        """JSON-ready state."""
        return {"values": self.values, "hash_buckets": self.hash_buckets}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Vocabulary:
        """Inverse of :meth:`to_json`."""
        return cls(list(d["values"]), int(d["hash_buckets"]))


@dataclass
class Scaler:
    """Standardisation ``(x - mean) / std`` after an optional ``log1p``; missing → 0 (the mean)."""

    mean: float = 0.0
    std: float = 1.0
    log1p: bool = False

    @classmethod
    def fit(cls, values: np.ndarray, log1p: bool = False) -> Scaler:
        """Fit on the training values (NaNs ignored)."""
        return cls.from_moments(*moments(values, log1p), log1p=log1p)

    @classmethod
    def from_moments(cls, count: float, mean: float, m2: float, log1p: bool = False) -> Scaler:
        """Fit on ``(count, mean, sum of squared deviations)`` of the non-missing values.

        The moments of several chunks combine with :func:`merge_moments`, so a stream fits
        the same scaler as the whole column (up to rounding).
        """
        if count <= 0:
            return cls(0.0, 1.0, log1p)
        std = float(np.sqrt(max(m2, 0.0) / count))
        return cls(float(mean), std if std > 1e-12 else 1.0, log1p)

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Scaled float32 values."""
        v = np.asarray(values, dtype=np.float64)
        if self.log1p:
            v = np.log1p(np.clip(v, 0.0, None))
        out = (v - self.mean) / self.std
        return np.nan_to_num(out, nan=0.0).astype(np.float32)

    def inverse(self, values: np.ndarray) -> np.ndarray:
        """Back to the original scale (before log1p)."""
        v = np.asarray(values, dtype=np.float64) * self.std + self.mean
        return np.expm1(v) if self.log1p else v

    def to_json(self) -> dict[str, Any]:
        """JSON-ready state."""
        return {"mean": self.mean, "std": self.std, "log1p": self.log1p}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Scaler:
        """Inverse of :meth:`to_json`."""
        return cls(float(d["mean"]), float(d["std"]), bool(d["log1p"]))


def moments(values: np.ndarray, log1p: bool = False) -> Moments:
    """``(count, mean, sum of squared deviations)`` of the finite values (after log1p)."""
    v = np.asarray(values, dtype=np.float64)
    if log1p:
        v = np.log1p(np.clip(v, 0.0, None))
    v = v[~np.isnan(v)]
    if not len(v):
        return 0.0, 0.0, 0.0
    mean = float(v.mean())
    return float(len(v)), mean, float(((v - mean) ** 2).sum())


def merge_moments(a: Moments, b: Moments) -> Moments:
    """Moments of two parts combined (Chan et al.'s parallel update).

    An empty part leaves the other exactly as it is, so one chunk fits bit for bit what the
    whole column fits.
    """
    na, ma, qa = a
    nb, mb, qb = b
    if na == 0:
        return b
    if nb == 0:
        return a
    n = na + nb
    if n == 0:
        return 0.0, 0.0, 0.0
    delta = mb - ma
    return n, ma + delta * nb / n, qa + qb + delta * delta * na * nb / n


def encode_multi_hot(
    col: pd.Series, vocab: Vocabulary, separator: str, max_length: int
) -> np.ndarray:
    """Padded token codes [n, max_length] for separator-joined strings (unseen tokens dropped)."""
    col = col.reset_index(drop=True)
    n = len(col)
    tokens = col.fillna("").astype(str).str.split(separator, regex=False).explode()
    tokens = tokens[tokens.str.len() > 0]
    codes = vocab.encode(tokens.astype("string"))
    keep = codes != OOV
    rows = tokens.index.to_numpy()[keep]
    codes = codes[keep]
    out = np.zeros((n, max_length), dtype=np.int64)
    if len(rows):
        pos = pd.Series(rows).groupby(rows).cumcount().to_numpy()
        ok = pos < max_length
        out[rows[ok], pos[ok]] = codes[ok]
    return out


def fit_multi_hot_vocab(col: pd.Series, separator: str, min_count: int) -> Vocabulary:
    """Token vocabulary of a separator-joined column."""
    return Vocabulary.fit(multi_hot_tokens(col, separator), min_count)


def multi_hot_tokens(col: pd.Series, separator: str) -> pd.Series:
    """The non-empty tokens of a separator-joined column, as string keys."""
    tokens = col.dropna().astype(str).str.split(separator, regex=False).explode()
    return tokens[tokens.str.len() > 0].astype("string")


class KeyIndex:
    """Raw ids → dense codes in order of first appearance, grown chunk by chunk."""

    def __init__(self) -> None:
        self._code: dict[object, int] = {}
        self._keys: list[object] = []

    def codes(self, values: pd.Series) -> np.ndarray:
        """Codes of ``values``, adding ids not seen before.

        Each chunk's distinct ids (``pd.factorize``: in order of first appearance) are
        looked up once, not every row's; new ones get the next codes in that order.
        """
        rows, distinct = pd.factorize(as_keys(values), use_na_sentinel=False)
        keys = np.asarray(distinct, dtype=object)
        lookup = map(self._code.get, keys, itertools.repeat(-1, len(keys)))
        mapped = np.fromiter(lookup, np.int64, count=len(keys))
        fresh = np.flatnonzero(mapped < 0)
        if len(fresh):
            new = len(self._keys) + np.arange(len(fresh), dtype=np.int64)
            mapped[fresh] = new
            fresh_keys = keys[fresh].tolist()
            self._code.update(zip(fresh_keys, new.tolist(), strict=True))
            self._keys.extend(fresh_keys)
        return mapped[rows]

    def keys(self) -> list[str]:
        """The ids as strings, in code order."""
        return [str(k) for k in self._keys]

    def __len__(self) -> int:
        return len(self._keys)
