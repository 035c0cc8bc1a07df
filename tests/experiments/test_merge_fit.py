"""Fitting the merge on validation: never worse than the best single list, finds a blend."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mtrs.artifact import load_model
from mtrs.cli.main import run
from mtrs.datasets.quickstart import write_synth
from mtrs.datasets.synth import SynthSpec
from mtrs.eval.ranking import rank_metrics
from mtrs.experiments.merge_fit import fit_merge


def _case() -> tuple[dict[str, np.ndarray], np.ndarray, list[np.ndarray]]:
    # 3 users × 4 items; item 3 is relevant for everyone. "a" ranks it first for users 0 and 1
    # (hit rate 2/3), "b" for user 2 only (1/3).
    a = np.array([[0.9, 0.1, 0.2, 1.0], [0.2, 0.1, 0.3, 0.9], [0.9, 0.1, 0.0, 0.5]])
    b = np.array([[0.95, 0.2, 0.1, 0.2], [0.1, 0.9, 0.1, 0.2], [0.1, 0.1, 0.4, 0.9]])
    exclude = np.zeros((3, 4), dtype=bool)
    return {"a": a, "b": b}, exclude, [np.array([3])] * 3


def test_single_lists_are_candidates_and_the_fit_is_never_worse() -> None:
    scores, exclude, relevant = _case()
    fit = fit_merge(scores, exclude, relevant, ["a", "b"], ks=(1,), metric="hit_rate@1")
    best_single = max(
        rank_metrics(s, exclude, relevant, (1,))["hit_rate@1"] for s in scores.values()
    )
    assert best_single == pytest.approx(2 / 3)
    # Whatever the search picks is at least the best single list, and is what it reports.
    assert fit.value >= best_single
    merged_hits = fit.metrics["hit_rate@1"]
    assert merged_hits == fit.value
    assert fit.tried and all(v <= fit.value for _, _, v in fit.tried)


def test_a_blend_beats_both_lists_when_it_exists() -> None:
    # Relevant item 2. List "x" alone hits for user 0, list "y" alone for user 1; the sum
    # x + y ranks item 2 first for both (1.0 + 1.0 against at most 1.2 + 0.3).
    x = np.array([[0.3, 0.2, 1.0], [1.2, 0.1, 1.0]])
    y = np.array([[1.2, 0.1, 1.0], [0.3, 0.2, 1.0]])
    exclude = np.zeros((2, 3), dtype=bool)
    relevant = [np.array([2]), np.array([2])]
    fit = fit_merge({"x": x, "y": y}, exclude, relevant, ["x", "y"], ks=(1,), metric="hit_rate@1")
    assert fit.value == 1.0
    assert set(fit.weights) == {"x", "y"}
    assert fit.strategy == "weighted_sum"  # the first strategy that reaches 1.0 is kept


def test_weighted_product_only_combines_probabilities() -> None:
    scores, exclude, relevant = _case()
    fit = fit_merge(scores, exclude, relevant, ["a"], ks=(1,), metric="hit_rate@1")
    assert all(set(w) <= {"a"} for s, w, _ in fit.tried if s == "weighted_product")


def test_an_unknown_metric_is_refused() -> None:
    scores, exclude, relevant = _case()
    with pytest.raises(ValueError, match="ndcg@10"):
        fit_merge(scores, exclude, relevant, ["a", "b"], ks=(1,), metric="ndcg@10")


def test_fit_merge_saves_the_fit_into_the_model_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_synth(tmp_path / "data", SynthSpec(num_users=100, num_items=30, num_events=3000))
    config.write_text(config.read_text().replace("epochs = 4", "epochs = 1"))
    model = tmp_path / "model"
    assert run(["train", str(config), "--out", str(model), "--json"]) == 0
    before = load_model(model).cfg.recommend
    assert (before.merge, before.weights) == ("weighted_product", {"click": 1.0, "purchase": 2.0})
    capsys.readouterr()
    assert run(["fit-merge", str(model), "--relevant", "click", "--json"]) == 0
    fit = json.loads(capsys.readouterr().out)
    after = load_model(model)  # the manifest was rewritten: the checksums still verify
    assert after.cfg.recommend.merge == fit["strategy"]
    assert after.cfg.recommend.weights == fit["weights"]
    assert 0 <= fit["value"] <= 1
    user = after.catalog.user_ids[0]
    rec = after.recommender().recommend(user, k=3)
    assert rec.strategy == fit["strategy"] and rec.weights == fit["weights"]
    assert run(["fit-merge", str(model), "--relevant", "nope"]) == 2
