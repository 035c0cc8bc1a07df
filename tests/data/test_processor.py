"""Tests for the encoders and the fitted processor: vocabularies, scalers, labels, JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mtrs.config.load import config_from_dict
from mtrs.config.models import JobConfig
from mtrs.data.batch import Batch
from mtrs.data.encoders import (
    OOV,
    PAD,
    Scaler,
    Vocabulary,
    as_keys,
    encode_multi_hot,
    fit_multi_hot_vocab,
)
from mtrs.data.processor import FittedProcessor
from mtrs.errors import MtrsUserError
from mtrs.tasks.taskset import TaskSet

E = math.e
SQRT_2_3 = math.sqrt(2.0 / 3.0)


# ----- vocabularies ---------------------------------------------------------------------------
def test_vocabulary_min_count_oov_and_padding() -> None:
    keys = pd.Series(["a", "b", "a", "c", "c", "c"], dtype="string")
    vocab = Vocabulary.fit(keys, min_count=2)
    # c (3×) then a (2×); b (1×) is below min_count.
    assert vocab.values == ["c", "a"]
    assert vocab.size == 4  # padding + OOV + 2
    codes = vocab.encode(pd.Series(["c", "a", "b", None, "zzz"], dtype="string"))
    np.testing.assert_array_equal(codes, [2, 3, OOV, OOV, OOV])
    assert PAD == 0 and OOV == 1
    assert PAD not in codes


def test_vocabulary_order_is_deterministic() -> None:
    keys = ["b", "a", "c", "a", "b", "d"]
    first = Vocabulary.fit(pd.Series(keys, dtype="string"), 1).values
    # Ties in frequency are ordered by value; the input order does not matter.
    assert first == ["a", "b", "c", "d"]
    for seed in range(3):
        shuffled = list(np.random.default_rng(seed).permutation(keys))
        assert Vocabulary.fit(pd.Series(shuffled, dtype="string"), 1).values == first


def test_int_float_and_string_spellings_are_one_key() -> None:
    vocab = Vocabulary.fit(as_keys(pd.Series([3, 3, 7])), 1)
    assert vocab.values == ["3", "7"]
    as_float = vocab.encode(as_keys(pd.Series([3.0, 7.0, np.nan])))
    as_text = vocab.encode(as_keys(pd.Series(["3", "7", None])))
    as_int = vocab.encode(as_keys(pd.Series([3, 7, 8])))
    np.testing.assert_array_equal(as_float, [2, 3, OOV])
    np.testing.assert_array_equal(as_text, [2, 3, OOV])
    np.testing.assert_array_equal(as_int, [2, 3, OOV])
    # Non-integral floats keep their decimals.
    assert as_keys(pd.Series([3.5])).tolist() == ["3.5"]


def test_hashing_buckets_in_range_and_stable() -> None:
    vocab = Vocabulary.fit(pd.Series(["x"], dtype="string"), 1, hash_buckets=5)
    assert vocab.values == [] and vocab.size == 7
    keys = as_keys(pd.Series([f"user{i}" for i in range(500)]))
    codes = vocab.encode(keys)
    assert codes.min() >= 2 and codes.max() <= 6
    assert len(np.unique(codes)) == 5  # 500 keys fill all 5 buckets
    np.testing.assert_array_equal(vocab.encode(keys), codes)
    again = Vocabulary.from_json(json.loads(json.dumps(vocab.to_json())))
    np.testing.assert_array_equal(again.encode(keys), codes)
    # Spelling-independent, and a missing value is OOV rather than a bucket.
    np.testing.assert_array_equal(
        vocab.encode(as_keys(pd.Series([3.0, np.nan]))),
        [vocab.encode(as_keys(pd.Series(["3"])))[0], OOV],
    )


def test_hash_codes_do_not_change_between_versions() -> None:
    # Saved models depend on these exact codes; recorded once, they must never move.
    vocab = Vocabulary([], hash_buckets=1000)
    codes = vocab.encode(pd.Series(["a", "b", "item_42"], dtype="string"))
    np.testing.assert_array_equal(codes, [363, 656, 421])


# ----- scaler ---------------------------------------------------------------------------------
def test_scaler_log1p_hand_computed() -> None:
    # log1p → [0, 1, 2]: mean 1, population std sqrt(2/3).
    s = Scaler.fit(np.array([0.0, E - 1, E**2 - 1, np.nan]), log1p=True)
    assert s.mean == pytest.approx(1.0)
    assert s.std == pytest.approx(SQRT_2_3)
    out = s.transform(np.array([0.0, E - 1, E**2 - 1, np.nan, -5.0]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(
        out, [-1 / SQRT_2_3, 0.0, 1 / SQRT_2_3, 0.0, -1 / SQRT_2_3], rtol=1e-6
    )
    np.testing.assert_allclose(s.inverse(np.array([0.0, 1 / SQRT_2_3])), [E - 1, E**2 - 1])


def test_scaler_constant_column_does_not_divide_by_zero() -> None:
    s = Scaler.fit(np.array([4.0, 4.0, 4.0]))
    assert s.std == 1.0
    np.testing.assert_array_equal(s.transform(np.array([4.0, 6.0])), [0.0, 2.0])


# ----- multi-hot ------------------------------------------------------------------------------
def test_multi_hot_padding_and_unseen_tokens_dropped() -> None:
    vocab = fit_multi_hot_vocab(pd.Series(["x|y", "y", "", None, "z|y|x", "y|x"]), "|", 1)
    assert vocab.values == ["y", "x", "z"]  # y 4×, x 3×, z 1×
    codes = encode_multi_hot(
        pd.Series(["x|q|z|y", "q", None, "y|y|x|z|x", ""], index=[10, 11, 12, 13, 14]),
        vocab,
        "|",
        3,
    )
    np.testing.assert_array_equal(
        codes,
        [
            [3, 4, 2],  # q unseen → dropped, the rest packed to the left
            [0, 0, 0],
            [0, 0, 0],
            [2, 2, 3],  # cut at max_length
            [0, 0, 0],
        ],
    )


def test_multi_hot_min_count() -> None:
    vocab = fit_multi_hot_vocab(pd.Series(["a|b", "a", "c|a|b"]), "|", 2)
    assert vocab.values == ["a", "b"]


# ----- a processor over every feature and task kind ---------------------------------------
def _cfg() -> JobConfig:
    return config_from_dict(
        {
            "data": {"interactions": "/x.csv"},
            "features": [
                {"name": "item_id", "kind": "categorical", "group": "item", "min_count": 2},
                {"name": "city", "kind": "categorical", "group": "user", "hash_buckets": 5},
                {"name": "price", "kind": "numeric", "group": "item", "log1p": True},
                {"name": "genres", "kind": "multi_hot", "group": "item", "max_length": 3},
            ],
            "tasks": [
                {"name": "click", "type": "binary", "label": "click"},
                {"name": "like", "type": "binary", "label": "like", "condition": "click"},
                {"name": "rating", "type": "regression", "label": "rating"},
                {"name": "genre", "type": "multiclass", "label": "genre_label"},
                {
                    "name": "gender",
                    "type": "binary",
                    "label": "gender",
                    "positive_value": "F",
                    "scope": "user",
                },
            ],
        }
    )


TRAIN = pd.DataFrame(
    {
        "user_id": ["u1", "u1", "u2", "u2", "u3", "u3"],
        "timestamp": [1, 2, 3, 4, 5, 6],
        "item_id": [3, 3, 4, 4, 5, 4],
        "city": ["a", "b", "a", "c", "b", "a"],
        "price": [0.0, E - 1, E**2 - 1, 0.0, E - 1, E**2 - 1],
        "genres": ["x|y", "y", "", None, "z|y|x", "y|x"],
        "click": [1.0, 0.0, 1.0, np.nan, 1.0, 0.0],
        "like": [1.0, 0.0, 0.0, 1.0, np.nan, 1.0],
        "rating": [1.0, 3.0, np.nan, 1.0, 3.0, 2.0],
        "genre_label": ["b", "a", "c", "a", None, "d"],
        "gender": ["F", "M", "F", "M", None, "F"],
    }
)
LABELS = ["click", "like", "rating", "genre_label", "gender"]


@pytest.fixture(scope="module")
def proc() -> FittedProcessor:
    # Fit on the first five rows: the sixth has a class ("d") never seen in training.
    return FittedProcessor.fit(TRAIN.iloc[:5], _cfg())


def test_processor_categorical_and_numeric(proc: FittedProcessor) -> None:
    # 3 and 4 seen twice each (tie → value order); 5 seen once < min_count 2.
    assert proc.vocabs["item_id"].values == ["3", "4"]
    b = proc.encode(TRAIN)
    np.testing.assert_array_equal(b.cat[:, 0].numpy(), [2, 2, 3, 3, OOV, 3])
    city = b.cat[:, 1].numpy()
    assert ((city >= 2) & (city <= 6)).all()
    assert city[0] == city[2] == city[5]  # "a" always lands in one bucket
    # price: log1p → [0, 1, 2, 0, 1]: mean 0.8, std 0.748…; checked against the formula.
    logp = np.log1p(TRAIN["price"].to_numpy()[:5])
    mean, std = logp.mean(), logp.std()
    np.testing.assert_allclose(
        b.num[:, 0].numpy(), (np.log1p(TRAIN["price"]) - mean) / std, rtol=1e-5
    )
    assert mean == pytest.approx(0.8) and std == pytest.approx(math.sqrt(0.56))


def test_processor_multi_hot(proc: FittedProcessor) -> None:
    # Training tokens (first five rows): y 3×, x 2×, z 1×.
    assert proc.vocabs["genres"].values == ["y", "x", "z"]
    np.testing.assert_array_equal(
        proc.encode(TRAIN).multi["genres"].numpy(),
        [[3, 2, 0], [2, 0, 0], [0, 0, 0], [0, 0, 0], [4, 2, 3], [2, 3, 0]],
    )


def test_binary_labels_nan_and_condition(proc: FittedProcessor) -> None:
    b = proc.encode(TRAIN)
    mask, labels = b.mask.numpy(), b.labels.numpy()
    # click: NaN at row 3 → masked.
    np.testing.assert_array_equal(mask[:, 0], [True, True, True, False, True, True])
    np.testing.assert_array_equal(labels[mask[:, 0], 0], [1, 0, 1, 1, 0])
    # like counts only where click == 1 and like is present: rows 0 and 2.
    np.testing.assert_array_equal(mask[:, 1], [True, False, True, False, False, False])
    np.testing.assert_array_equal(labels[[0, 2], 1], [1, 0])


def test_regression_label_standardised_and_inverted(proc: FittedProcessor) -> None:
    # Training ratings 1, 3, 1, 3 (NaN ignored): mean 2, std 1.
    enc = proc.tasks[2]
    assert enc.scaler is not None
    assert (enc.scaler.mean, enc.scaler.std) == pytest.approx((2.0, 1.0))
    b = proc.encode(TRAIN)
    m = b.mask[:, 2].numpy()
    np.testing.assert_array_equal(m, [True, True, False, True, True, True])
    np.testing.assert_allclose(b.labels[m, 2].numpy(), [-1.0, 1.0, -1.0, 1.0, 0.0])
    rating = TaskSet.build(proc.tasks, [])["rating"]
    assert rating.name == "rating"
    np.testing.assert_allclose(rating.to_output(b.labels[m, 2].numpy()), [1.0, 3.0, 1.0, 3.0, 2.0])


def test_multiclass_classes_sorted_and_unknown_masked(proc: FittedProcessor) -> None:
    assert proc.tasks[3].classes == ["a", "b", "c"]
    assert proc.tasks[3].output_dim == 3
    b = proc.encode(TRAIN)
    m = b.mask[:, 3].numpy()
    # Row 4 has no label, row 5's class "d" was never seen in training.
    np.testing.assert_array_equal(m, [True, True, True, True, False, False])
    np.testing.assert_array_equal(b.labels[m, 3].numpy(), [1, 0, 2, 0])


def test_positive_value_makes_a_binary_label(proc: FittedProcessor) -> None:
    b = proc.encode(TRAIN)
    m = b.mask[:, 4].numpy()
    np.testing.assert_array_equal(m, [True, True, True, True, False, True])
    np.testing.assert_array_equal(b.labels[m, 4].numpy(), [1, 0, 1, 0, 1])


def test_multiclass_with_too_few_classes_is_a_user_error() -> None:
    with pytest.raises(MtrsUserError, match="genre_label"):
        FittedProcessor.fit(TRAIN.assign(genre_label="a"), _cfg())


def _assert_batches_equal(a: Batch, b: Batch) -> None:
    for name in ("cat", "num", "labels", "mask", "user"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    for name in ("multi", "hist", "hist_value", "hist_gap"):
        da, db = getattr(a, name), getattr(b, name)
        assert da.keys() == db.keys(), name
        for k in da:
            assert torch.equal(da[k], db[k]), f"{name}.{k}"


def test_json_round_trip_encodes_identically(proc: FittedProcessor) -> None:
    state = json.loads(json.dumps(proc.to_json()))
    again = FittedProcessor.from_json(state, _cfg())
    assert again.to_json() == proc.to_json()
    other = TRAIN.assign(
        item_id=[4.0, 3.0, np.nan, 5.0, 3.0, 4.0], city=["z", "a", "b", "c", "q", "a"]
    )
    _assert_batches_equal(again.encode(other), proc.encode(other))
    _assert_batches_equal(again.encode(TRAIN), proc.encode(TRAIN))


def test_encode_without_label_columns_masks_everything(proc: FittedProcessor) -> None:
    b = proc.encode(TRAIN.drop(columns=LABELS))
    assert b.mask.shape == (6, 5)
    assert not b.mask.any()
    # Features still encode exactly as with labels present.
    full = proc.encode(TRAIN)
    assert torch.equal(b.cat, full.cat) and torch.equal(b.num, full.num)


@settings(max_examples=50, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.integers(-50, 50), st.sampled_from(["a", "b", "x y", ""])),
        min_size=1,
        max_size=30,
    ),
    min_count=st.integers(1, 3),
)
def test_vocabulary_codes_match_counts(values: list[object], min_count: int) -> None:
    keys = pd.Series([str(v) for v in values], dtype="string")
    vocab = Vocabulary.fit(keys, min_count)
    counts = pd.Series([str(v) for v in values]).value_counts()
    assert set(vocab.values) == {k for k, c in counts.items() if c >= min_count}
    codes = vocab.encode(keys)
    for key, code in zip(keys, codes, strict=True):
        if counts[key] >= min_count:
            assert vocab.values[code - 2] == key
        else:
            assert code == OOV
    # Frequencies never increase along the vocabulary.
    freq = [counts[v] for v in vocab.values]
    assert freq == sorted(freq, reverse=True)
