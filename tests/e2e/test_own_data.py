"""The worked examples of docs/own-data.md: each layout trains from its config alone.

The data are synthetic with known truth (``mtrs.datasets.examples``); the configs are the
ones in ``configs/examples/``, copied next to the data as the docs say.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtrs.cli.main import run
from mtrs.datasets.examples import write_example
from mtrs.eval.metrics import auc

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "examples"


def _train(name: str, root: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict:
    cfg = root / f"{name}.toml"
    if not cfg.exists():
        shutil.copy(CONFIGS / f"{name}.toml", cfg)
    out = root / f"model-{len(extra)}"
    assert run(["train", str(cfg), "--out", str(out), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_ratings_only_log_with_derived_like_negatives_and_titles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ex = write_example("ratings", tmp_path)
    ratings = pd.read_csv(ex.files["interactions"])
    movies = pd.read_csv(ex.files["items"]).set_index("movieId")
    tasks = _train("ratings", tmp_path, capsys)["tasks"]
    # The choice of movie follows taste (negatives teach it), the stars follow it too.
    assert tasks["rated"]["auc"] > 0.62 and tasks["like"]["auc"] > 0.78
    assert tasks["rating"]["rmse"] < 1.0  # the stars' own spread is about 1.1
    model = str(tmp_path / "model-0")
    assert run(["recommend", model, "--user", "7", "--k", "10", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    seen = set(ratings.loc[ratings["userId"] == 7, "movieId"])
    merged = rec["merged"]
    assert len(merged) == 10 and not rec["fallback"]
    for entry in merged:
        movie = int(entry["item"])
        assert movie not in seen  # exclude_seen: never a movie the user rated
        assert entry["title"] == movies.loc[movie, "title"]
        assert entry["display"]["genres"] == movies.loc[movie, "genres"]
    assert run(["recommend", model, "--user", "no-such-user", "--json"]) == 0
    fallback = json.loads(capsys.readouterr().out)
    assert fallback["fallback"] and "popularity" in fallback["merged"][0]


@pytest.mark.parametrize("architecture", ["mmoe", "esmm"])
def test_idless_impressions_with_given_files_learn_click_and_the_funnel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], architecture: str
) -> None:
    ex = write_example("impressions", tmp_path)
    test = pd.read_csv(ex.files["test"])
    oracle_click = auc(test["click"].to_numpy(), ex.truth["p_click"])
    oracle_joint = auc(test["conversion"].to_numpy(), ex.truth["p_click_conversion"])
    got = _train("impressions", tmp_path, capsys, "--architecture", architecture, "--epochs", "4")
    tasks = got["tasks"]
    # The given test file is the test split: metrics come from its 1,800 rows.
    assert oracle_click - 0.03 < tasks["click"]["auc"] <= oracle_click + 0.01
    assert oracle_joint - 0.06 < tasks["click_conversion"]["auc"] <= oracle_joint + 0.01
    assert "gauc" not in tasks["click"]  # no user ids, no per-user metric
    # Nothing to rank without user or item ids: one clear line, exit 2.
    model = str(tmp_path / "model-4")
    assert run(["recommend", model, "--user", "1"]) == 2
    assert "trained without user ids (data.user_col is empty)" in capsys.readouterr().err
    # Given rows are scored instead: predicting test.csv reproduces the test metric.
    preds = tmp_path / "preds.csv"
    assert run(["predict", model, str(ex.files["test"]), "--out", str(preds), "--keep", "c1"]) == 0
    scored = pd.read_csv(preds)
    assert list(scored.columns) == ["c1", "click", "conversion", "click_conversion"]
    assert scored["c1"].tolist() == test["c1"].tolist()
    assert auc(test["click"].to_numpy(), scored["click"].to_numpy()) == pytest.approx(
        tasks["click"]["auc"], abs=1e-6
    )
    capsys.readouterr()
    assert run(["predict", model, str(ex.files["test"]), "--out", str(ex.files["test"])]) == 2
    assert "is the input file" in capsys.readouterr().err
    assert len(pd.read_csv(ex.files["test"])) == len(test)  # the input is untouched


def test_numeric_two_task_regression_nears_the_noise_floor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ex = write_example("numeric", tmp_path)
    table = pd.read_csv(ex.files["interactions"])
    got = _train("numeric", tmp_path, capsys, "--epochs", "15")["tasks"]
    # Noise σ = 1 on both targets; predicting the mean would give their standard deviations.
    assert table["y_price"].std() > 3.5 and table["y_demand"].std() > 2.5
    assert 0.95 < got["price"]["rmse"] < 1.3
    assert 0.95 < got["demand"]["rmse"] < 1.5
    assert np.isfinite(got["demand"]["mae"])
