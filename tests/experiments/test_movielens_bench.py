"""MovieLens-100K benchmark: ranking metrics, the as-of-test catalog, an end-to-end run."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtrs.artifact import load_model, save_job
from mtrs.cli.main import run
from mtrs.data.encoders import as_keys
from mtrs.data.log import FrameLog
from mtrs.data.split import TEST
from mtrs.datasets import load_movielens_100k
from mtrs.datasets.movielens_job import movielens_config, movielens_tables
from mtrs.experiments.grid import default_jobs
from mtrs.experiments.ranking import (
    catalog_as_of_test,
    rank_evaluate,
    rank_metrics,
    ranking_setup,
)
from mtrs.job import run_job
from mtrs.prepare import Prepared, prepare

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ml_dir() -> Path:
    """The shared MovieLens files (never in the repository): ``$MTRS_ML100K_DIR`` or
    ``<repo>/../shared/datasets/ml-100k``; a missing copy is a failure, not a skip."""
    env = os.environ.get("MTRS_ML100K_DIR")
    path = Path(env) if env else REPO.parent / "shared" / "datasets" / "ml-100k"
    if not (path / "u.data").is_file():
        pytest.fail(f"MovieLens 100K not found in {path}: set MTRS_ML100K_DIR")
    return path


# ------------------------------------------------------------------------ ranking metrics


def test_rank_metrics_hand_computed() -> None:
    scores = np.array(
        [
            [0.9, 0.8, 0.7, 0.6, 0.5],  # item 0 is excluded: ranking 1, 2, 3, 4
            [0.1, 0.2, 0.3, 0.4, 0.5],  # ranking 4, 3, 2, 1, 0: the relevant item 0 is last
            [0.5, 0.5, 0.5, 0.5, 0.5],  # nothing relevant: left out of every mean
        ]
    )
    exclude = np.zeros_like(scores, dtype=bool)
    exclude[0, 0] = True
    relevant = [np.array([2, 4]), np.array([0]), np.array([], dtype=np.int64)]
    got = rank_metrics(scores, exclude, relevant, ks=(2, 3))
    # User 0: top 2 = [1, 2] → one hit at rank 2; ideal DCG@2 with 2 relevant = 1 + 1/log2(3).
    d2 = 1 / math.log2(3)
    ndcg_user0 = d2 / (1 + d2)
    assert got["hit_rate@2"] == pytest.approx(0.5)
    assert got["ndcg@2"] == pytest.approx(ndcg_user0 / 2)
    assert got["recall@2"] == pytest.approx(0.25)
    # Top 3 = [1, 2, 3]: still the one hit; user 1's top 3 = [4, 3, 2] has none.
    assert got["hit_rate@3"] == pytest.approx(0.5)
    assert got["ndcg@3"] == pytest.approx(ndcg_user0 / 2)
    assert got["recall@3"] == pytest.approx(0.25)


def test_rank_metrics_excluded_item_never_counts_and_ties_take_lower_index() -> None:
    scores = np.array([[1.0, 1.0, 1.0, 0.0]])
    exclude = np.array([[True, False, False, False]])
    # The excluded item 0 would be first; of the tied items 1 and 2, item 1 comes first.
    got = rank_metrics(scores, exclude, [np.array([0, 2])], ks=(1, 2))
    assert got["hit_rate@1"] == 0.0
    assert got["hit_rate@2"] == 1.0
    assert got["ndcg@2"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))


def test_rank_metrics_short_candidate_lists_are_padded() -> None:
    scores = np.array([[0.3, 0.2, 0.1]])
    exclude = np.array([[True, True, False]])
    got = rank_metrics(scores, exclude, [np.array([2])], ks=(10,))
    assert got["hit_rate@10"] == 1.0
    assert got["ndcg@10"] == 1.0


# ------------------------------------------------------------------ test-period catalog


@pytest.fixture(scope="module")
def prepared(ml_dir: Path) -> Prepared:
    ml = load_movielens_100k(ml_dir)
    return prepare(movielens_config(epochs=1), movielens_tables(ml, max_users=40))


def test_history_values_are_past_ratings_never_the_events_own(prepared: Prepared) -> None:
    cfg = prepared.cfg
    (hist,) = [f for f in cfg.features if f.kind == "history"]
    assert hist.history_value == "rating" and "rating" in {t.label for t in cfg.tasks}
    batch = prepared.all_rows()
    frame = prepared.in_memory().frame
    scaler = prepared.processor.scalers[hist.name]
    # The newest history entry of a rated row is a rating strictly before the row's time.
    valid = batch.hist[hist.name].numpy()[:, -1] > 0
    newest = scaler.inverse(batch.hist_value[hist.name].numpy()[:, -1].astype(np.float64))
    assert valid.sum() > 100
    assert set(np.round(newest[valid] * 2) / 2) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    first = frame.groupby("user_id")["timestamp"].transform("min").to_numpy()
    # A user's first instant has no history: nothing earlier exists.
    assert not valid[frame["timestamp"].to_numpy() == first].any()


def test_catalog_as_of_test_holds_nothing_from_the_test_period(prepared: Prepared) -> None:
    frame, split = prepared.in_memory().frame, prepared.in_memory().split
    catalog = catalog_as_of_test(prepared)
    rated = frame["interact"].to_numpy() == 1
    before, after = rated & (split != TEST), rated & (split == TEST)
    vocab = prepared.processor.vocabs["item_id"]
    hist = catalog.users.hist["history"].numpy()
    checked = 0
    for row, uid in enumerate(catalog.user_ids):
        mine = as_keys(frame["user_id"]).astype(str).to_numpy() == uid
        earlier = frame.loc[mine & before, "item_id"]
        later = set(as_keys(frame.loc[mine & after, "item_id"]).astype(str))
        seen = {catalog.item_ids[i] for i in catalog.seen(row)}
        assert seen == set(as_keys(earlier).astype(str))
        assert not seen & later
        # The history is the last 20 movies rated before the test period, oldest first.
        expected = vocab.encode(as_keys(earlier.iloc[-20:]))
        np.testing.assert_array_equal(hist[row][hist[row] > 0], expected)
        assert not set(hist[row]) & set(vocab.encode(as_keys(frame.loc[mine & after, "item_id"])))
        checked += bool(later)
    assert checked > 0
    # The serving catalog of the whole log does see the test period: the check above bites.
    full = prepared.catalog
    assert sum(len(full.seen(r)) for r in range(len(full.user_ids))) > sum(
        len(catalog.seen(r)) for r in range(len(catalog.user_ids))
    )


def test_relevant_items_are_the_test_movies_rated_4_or_more(prepared: Prepared) -> None:
    setup = ranking_setup(prepared)
    frame, split = prepared.in_memory().frame, prepared.in_memory().split
    liked = frame[(split == TEST) & (frame["rating"].to_numpy() >= 4)]
    expected = {str(u): set(as_keys(g["item_id"]).astype(str)) for u, g in liked.groupby("user_id")}
    got = {
        setup.catalog.user_ids[r]: {setup.catalog.item_ids[i] for i in rel}
        for r, rel in zip(setup.rows, setup.relevant, strict=True)
    }
    assert got == expected


def test_rank_evaluate_gives_the_same_numbers_for_a_saved_and_loaded_model(
    ml_dir: Path, tmp_path: Path
) -> None:
    ml = load_movielens_100k(ml_dir)
    tables = movielens_tables(ml, max_users=30)
    job = run_job(movielens_config("shared_bottom", seed=0, epochs=1), tables=tables)
    direct = rank_evaluate(job, ks=(5, 10))
    assert set(direct) == {"interact", "like", "rating", "merged"}
    loaded = load_model(save_job(job, tmp_path / "model"))
    assert rank_evaluate(loaded, ks=(5, 10), tables=tables) == direct


# ------------------------------------------------------------------------- end to end


def test_benchmark_end_to_end(
    ml_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench"
    argv = [
        "benchmark", "movielens-100k", "--data-dir", str(ml_dir), "--out", str(out),
        "--seeds", "1", "--architectures", "single,shared_bottom", "--epochs", "2",
        "--max-users", "120", "--json",
    ]  # fmt: skip
    assert run(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    results = json.loads((out / "results.json").read_text())
    assert printed == results
    baselines = ["popularity", "item_knn", "ease", "als"]
    assert list(results) == ["single", "shared_bottom", *baselines]
    for arch in ("single", "shared_bottom"):
        r = results[arch]
        assert set(r) >= {"interact", "like", "rating", "gender", "age_group", "merged"}
        assert set(r["interact"]["auc"]) == {"mean", "std"}
        assert r["interact"]["auc"]["std"] == 0.0  # one seed
        assert r["interact"]["auc"]["mean"] > 0.7
        assert 0.5 < r["rating"]["rmse"]["mean"] < 1.6
        assert r["merged"]["hit_rate@10"]["mean"] > 0
        assert 0 <= r["merged"]["ndcg@10"]["mean"] <= r["merged"]["hit_rate@10"]["mean"]
    for name in baselines:
        ranked = results[name]["merged"]
        assert set(results[name]) == {"merged"}
        assert 0 < ranked["hit_rate@10"]["mean"] <= 1
        assert 0 < ranked["ndcg@10"]["mean"] <= ranked["hit_rate@10"]["mean"]
    table = (out / "results.md").read_text()
    assert "| popularity (baseline) |" in table and "| EASE (baseline) |" in table
    assert "| single (hard parallel) |" in table
    assert {p.name for p in out.glob("*.png")} == {
        "task_metrics.png",
        "rating_rmse.png",
        "ranking.png",
    }
    runs = json.loads((out / "runs.json").read_text())
    assert runs["settings"]["max_users"] == 120
    assert runs["settings"]["jobs"] == default_jobs()  # one run per thread by default
    # Each baseline's setting was chosen on the validation period (its metrics are recorded).
    for name in ("item_knn", "ease", "als"):
        (chosen,) = runs["settings"]["baselines"][name]
        assert chosen["params"] and 0 <= chosen["valid"]["ndcg@10"] <= 1
    assert len(runs["runs"]) == 2


def test_benchmark_rejects_unknown_architecture(tmp_path: Path) -> None:
    out = tmp_path / "never"
    argv = ["benchmark", "movielens-100k", "--out", str(out), "--architectures", "single,nope"]
    assert run(argv) == 2
    assert not out.exists()


def test_export_writes_the_benchmark_job_as_files(ml_dir: Path, tmp_path: Path) -> None:
    from mtrs.config.load import load_config

    out = tmp_path / "job"
    assert run(["datasets", "export", "movielens-100k", "--data-dir", str(ml_dir),
                "--out", str(out)]) == 0  # fmt: skip
    cfg = load_config(out / "mtrs.toml")
    ref = movielens_config("shared_bottom", 0)
    assert cfg.features == ref.features and cfg.tasks == ref.tasks and cfg.split == ref.split
    assert cfg.model == ref.model and cfg.tune.metric == "merged/ndcg@10"
    assert cfg.tune.relevant == "like"
    # The file holds the ratings; the config's [data.negatives] adds 4 per rating when read.
    assert cfg.data.negatives == ref.data.negatives
    assert cfg.data.negatives is not None and cfg.data.negatives.per_positive == 4
    inter = pd.read_parquet(cfg.data.interactions)
    ratings = len(load_movielens_100k(ml_dir).ratings)
    assert len(inter) == ratings and "interact" not in inter.columns
    frame = FrameLog(cfg).frame
    assert len(frame) == 5 * ratings and frame["interact"].sum() == ratings


def test_parallel_runs_give_the_records_of_sequential_runs_in_grid_order(
    ml_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from mtrs.experiments.grid import Grid, run_grid
    from mtrs.experiments.movielens import BenchmarkRuns

    # One thread here and in each worker: the same arithmetic, so the same numbers.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        got = {}
        for jobs in (1, 2):
            spec = BenchmarkRuns(ml_dir, epochs=1, negatives=2, max_users=40)
            started: list[tuple[str, int]] = []
            records, skipped = run_grid(
                Grid(("shared_bottom", "esmm"), seeds=2),
                spec.config_for,
                spec.data,
                score=spec.score,
                on_start=lambda a, s, started=started: started.append((a, s)),
                jobs=jobs,
            )
            assert skipped == {}
            assert sorted(started) == sorted(
                (a, s) for s in (0, 1) for a in ("shared_bottom", "esmm")
            )
            got[jobs] = records
    finally:
        torch.set_num_threads(threads)
    order = [(r.seed, r.architecture) for r in got[2]]
    assert order == [(0, "shared_bottom"), (0, "esmm"), (1, "shared_bottom"), (1, "esmm")]
    for one, two in zip(got[1], got[2], strict=True):
        assert two.metrics == one.metrics
        assert two.notes["merge"]["strategy"] == one.notes["merge"]["strategy"]
        assert two.notes["merge"]["architecture"] == one.architecture
    # Seeds draw different negatives and initialisations: the check above is not vacuous.
    assert got[1][0].metrics["interact"]["auc"] != got[1][2].metrics["interact"]["auc"]
