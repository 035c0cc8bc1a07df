"""Tests for streaming a Parquet log: pass-1 fit, histories across chunks, training, saving."""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mtrs.artifact import load_model, save_job
from mtrs.cli.main import run
from mtrs.config.load import config_from_dict
from mtrs.config.models import JobConfig
from mtrs.data.batch import Batch
from mtrs.data.log import FrameLog, ParquetLog, use_streaming
from mtrs.data.processor import FittedProcessor
from mtrs.data.split import TRAIN
from mtrs.data.stream import EncodedStream, TrainStream
from mtrs.datasets.synth import SynthSpec, generate
from mtrs.errors import MtrsUserError
from mtrs.job import Job, run_job
from mtrs.model import build_model
from mtrs.prepare import fit_processor, prepare, read_test_rows
from mtrs.tasks.taskset import TaskSet
from mtrs.train.trainer import Trainer


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stream")
    data = generate(SynthSpec(num_users=80, num_items=40, num_events=3_000, seed=3))
    inter = data.interactions
    # Hour-resolution times give many ties, some of them across chunk boundaries.
    inter["timestamp"] = inter["timestamp"] // 3600 * 3600
    inter = inter.sort_values("timestamp", kind="stable").reset_index(drop=True)
    inter.to_parquet(out / "interactions.parquet", index=False, row_group_size=1000)
    data.users.to_csv(out / "users.csv", index=False)
    data.items.to_csv(out / "items.csv", index=False)
    return out


def _config(data_dir: Path, streaming: str = "always", **data: object) -> JobConfig:
    raw = tomllib.loads(resources.files("mtrs").joinpath("configs/quickstart.toml").read_text())
    raw["data"].update(
        {
            "interactions": str(data_dir / "interactions.parquet"),
            "users": str(data_dir / "users.csv"),
            "items": str(data_dir / "items.csv"),
            "streaming": streaming,
            "chunk_rows": 700,
            **data,
        }
    )
    raw["features"][2]["max_length"] = 5
    raw["model"].update({"shared": {"type": "mlp", "hidden": [32]}, "tower": {"hidden": [16]}})
    raw["model"]["sequence"] = {"time_gaps": True}
    # A numeric context feature, for the catalog's default context row (the mean).
    raw["features"].append(
        {"name": "ctx_price", "kind": "numeric", "group": "context", "column": "price"}
    )
    raw["train"].update(
        {"epochs": 2, "progress": False, "device": "cpu", "seed": 7, "batch_size": 256}
    )
    return config_from_dict(raw)


def _streamed(cfg: JobConfig) -> tuple[FittedProcessor, Batch, np.ndarray]:
    users = pd.read_csv(cfg.data.users) if cfg.data.users else None
    items = pd.read_csv(cfg.data.items) if cfg.data.items else None
    log = ParquetLog(cfg, users, items)
    proc, _ = fit_processor(log)
    parts = list(EncodedStream(log, proc).encoded())
    split = np.concatenate([ch.split for ch, _ in parts])
    return proc, Batch.concat([b for _, b in parts]), split


@pytest.mark.parametrize(
    ("method", "unit"), [("temporal", None), ("random", None), ("random", "user_id")]
)
def test_split_counts_equal_the_merged_chunks_counts(
    data_dir: Path, method: str, unit: str | None
) -> None:
    cfg = _config(data_dir)
    cfg.split.method = method  # type: ignore[assignment]
    cfg.split.unit = unit
    users, items = pd.read_csv(cfg.data.users), pd.read_csv(cfg.data.items)
    log = ParquetLog(cfg, users, items)
    merged = sum(np.bincount(ch.split, minlength=3)[:3] for ch in log.chunks())
    counts = log.split_counts()
    np.testing.assert_array_equal(counts, merged)
    assert counts.sum() == log.num_rows and (counts > 0).all()


@pytest.mark.parametrize("method", ["temporal", "random"])
def test_pass1_fits_the_in_memory_processor(data_dir: Path, method: str) -> None:
    cfg = _config(data_dir)
    cfg.split.method = method  # type: ignore[assignment]
    proc, _, split = _streamed(cfg)
    mem = prepare(_config(data_dir, "never")).in_memory()
    if method == "temporal":
        np.testing.assert_array_equal(split, mem.split)
    # The same rows fitted in memory give the same vocabularies and (to rounding) scalers.
    ref = FittedProcessor.fit(mem.frame[split == TRAIN], cfg)
    assert proc.vocabs.keys() == ref.vocabs.keys()
    for name, vocab in ref.vocabs.items():
        assert proc.vocabs[name].values == vocab.values, name
    assert proc.scalers.keys() == ref.scalers.keys()
    for name, sc in ref.scalers.items():
        assert proc.scalers[name].mean == pytest.approx(sc.mean, rel=1e-12)
        assert proc.scalers[name].std == pytest.approx(sc.std, rel=1e-12)
        assert proc.scalers[name].log1p == sc.log1p
    assert [t.to_json() for t in proc.tasks] == [t.to_json() for t in ref.tasks]


def test_encoded_chunks_equal_the_in_memory_batch(data_dir: Path) -> None:
    cfg = _config(data_dir)
    _, streamed, _ = _streamed(cfg)
    p = prepare(_config(data_dir, "never"))
    assert isinstance(p.log, FrameLog)
    # The log in memory is one chunk of the same path; the processor's own encoding of the
    # frame (histories built from its rows alone) agrees with it too.
    (_, mem), *more = list(EncodedStream(p.log, p.processor).encoded())
    assert not more
    alone = p.processor.encode(p.log.frame)
    assert len(streamed) == len(mem) == len(alone) == 3_000
    for k in mem.hist:
        torch.testing.assert_close(alone.hist[k], mem.hist[k], rtol=0, atol=0)
        torch.testing.assert_close(alone.hist_gap[k], mem.hist_gap[k], rtol=0, atol=0)
    # Histories cross 5 chunk boundaries (700 rows each) with ties at the boundaries.
    for kind in ("hist", "hist_gap"):
        a, b = getattr(streamed, kind), getattr(mem, kind)
        assert a.keys() == b.keys() and a
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert int((mem.hist["clicked_items"] > 0).sum()) > 1000
    for kind in ("cat", "num", "labels", "mask", "user"):
        torch.testing.assert_close(getattr(streamed, kind), getattr(mem, kind), rtol=0, atol=0)


@pytest.fixture(scope="module")
def streamed_job(data_dir: Path) -> Job:
    return run_job(_config(data_dir, shuffle_buffer_rows=10_000))


def test_streamed_training_equals_in_memory_training(data_dir: Path, streamed_job: Job) -> None:
    mem = run_job(_config(data_dir, "never"))
    assert len(streamed_job.catalog.item_ids) == len(mem.catalog.item_ids) > 0
    assert [e.train_loss for e in streamed_job.result.history] == [
        e.train_loss for e in mem.result.history
    ]
    assert streamed_job.result.best_valid == mem.result.best_valid
    assert streamed_job.test_metrics == mem.test_metrics
    assert 0.5 < streamed_job.test_metrics["click"]["auc"] < 1.0


def test_a_reader_thread_gives_the_same_training(data_dir: Path, streamed_job: Job) -> None:
    """Chunks read ahead on a background thread: the same steps, losses and metrics."""
    ahead = run_job(_config(data_dir, prefetch_chunks=2))
    assert [e.train_loss for e in ahead.result.history] == [
        e.train_loss for e in streamed_job.result.history
    ]
    assert ahead.test_metrics == streamed_job.test_metrics


def test_epochs_read_the_encoded_chunks_kept_by_the_preparation_pass(
    data_dir: Path, streamed_job: Job
) -> None:
    prepared = prepare(_config(data_dir))
    train = prepared.train
    assert isinstance(train, TrainStream) and train.cache is not None and train.cache.complete
    directory = train.cache.directory
    # 3,000 rows in chunks of 700; the last chunk's rows are all validation or test rows.
    assert len(list(directory.glob("chunk-*.safetensors"))) == 4
    assert train.cache.nbytes > 0

    def no_encoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached epoch re-encoded the log")

    uncached = TrainStream(train.stream, train.buffer_rows)
    expected = [b.to_tensors() for b in uncached.batches(0)]  # encodes, before the patch
    train.stream.encoded = no_encoding  # type: ignore[method-assign]
    got = [b.to_tensors() for b in train.batches(0)]
    assert len(got) == len(expected) == 4
    for g, e in zip(got, expected, strict=True):
        assert g.keys() == e.keys()
        for key in e:
            assert torch.equal(g[key], e[key]), key
    # One rank of two reads its own chunks (positions 1 and 3) from the cache too.
    train.shard = (1, 2)
    assert [len(b) for b in train.batches(0)] == [len(expected[i]["user"]) for i in (1, 3)]
    train.cache.close()
    assert not directory.exists()
    # Training without the cache (every epoch re-encodes the log) is the same training.
    plain = run_job(_config(data_dir, shuffle_buffer_rows=10_000, cache_chunks=False))
    assert plain.prepared.train.cache is None  # type: ignore[union-attr]
    assert [e.train_loss for e in plain.result.history] == [
        e.train_loss for e in streamed_job.result.history
    ]
    assert plain.test_metrics == streamed_job.test_metrics


def test_small_buffer_shows_every_training_row_once_per_epoch(data_dir: Path) -> None:
    cfg = _config(data_dir, shuffle_buffer_rows=500)
    users = pd.read_csv(data_dir / "users.csv")
    items = pd.read_csv(data_dir / "items.csv")
    log = ParquetLog(cfg, users, items)
    proc, rows = fit_processor(log)
    stream = TrainStream(EncodedStream(log, proc), 500)
    seen: list[int] = []

    class Recorder(Trainer):
        def train_step(self, batch: Batch, sums: dict[str, float]) -> float:
            seen.append(len(batch))
            sums["total"] = sums.get("total", 0.0) + 1.0
            return 1.0

    tasks = TaskSet.for_job(cfg, proc.tasks)
    model = build_model(proc, cfg, tasks)
    losses = Recorder(model, tasks, cfg).train_stream_epoch(stream, 1)
    assert sum(seen) == rows[TRAIN]
    # Every mini-batch but the last is full, although buffers end mid-batch.
    assert all(s == 256 for s in seen[:-1]) and 0 < seen[-1] <= 256
    assert losses == {"total": 1.0}


def test_leave_last_is_refused_when_streaming(data_dir: Path) -> None:
    cfg = _config(data_dir)
    cfg.split.method = "leave_last"
    with pytest.raises(MtrsUserError, match=r"leave_last.*whole log in memory"):
        run_job(cfg)


def test_out_of_order_times_name_the_row(data_dir: Path, tmp_path: Path) -> None:
    df = pd.read_parquet(data_dir / "interactions.parquet")
    df.loc[1234, "timestamp"] = df["timestamp"].iloc[0] - 1
    df.to_parquet(tmp_path / "interactions.parquet", index=False)
    cfg = _config(data_dir, interactions=str(tmp_path / "interactions.parquet"))
    with pytest.raises(MtrsUserError, match="data row 1235 is earlier"):
        run_job(cfg)


def test_auto_streams_only_above_the_memory_budget(data_dir: Path, tmp_path: Path) -> None:
    assert not use_streaming(_config(data_dir, "auto"))
    # 8 columns read × 24,000 rows × 8 bytes ≈ 1.5 MiB, over a 1 MiB budget.
    df = pd.read_parquet(data_dir / "interactions.parquet")
    pd.concat([df] * 8).to_parquet(tmp_path / "big.parquet", index=False)
    big = str(tmp_path / "big.parquet")
    assert use_streaming(_config(data_dir, "auto", interactions=big, memory_budget_mb=1))
    assert not use_streaming(_config(data_dir, "auto", interactions=big, memory_budget_mb=2))
    assert not use_streaming(_config(data_dir, "never", interactions=big, memory_budget_mb=1))
    with pytest.raises(MtrsUserError, match="needs a Parquet"):
        use_streaming(_config(data_dir, interactions=str(data_dir / "users.csv")))


def test_streamed_job_saves_loads_and_recommends(streamed_job: Job, tmp_path: Path) -> None:
    out = save_job(streamed_job, tmp_path / "model")
    loaded = load_model(out)
    log_users = pd.read_parquet(streamed_job.cfg.data.interactions)["user_id"].nunique()
    assert len(loaded.catalog.item_ids) == 40 and len(loaded.catalog.user_ids) == log_users
    user = loaded.catalog.user_ids[0]
    rec = loaded.recommender().recommend(user, k=5)
    assert len(rec.merged) == 5
    seen = {loaded.catalog.item_ids[i] for i in loaded.catalog.seen(0)}
    assert seen and not seen & {i.item for i in rec.merged}


def test_streamed_catalog_matches_the_in_memory_catalog(data_dir: Path, streamed_job: Job) -> None:
    ref = prepare(_config(data_dir, "never")).catalog
    got = streamed_job.catalog
    # Both list items and users in the order of their last event.
    assert got.item_ids == ref.item_ids and got.user_ids == ref.user_ids
    assert sorted(got.user_ids) == sorted(ref.user_ids)
    assert sorted(got.item_ids) == sorted(ref.item_ids)
    u_ref = pd.Index(ref.user_ids).get_indexer(got.user_ids)
    i_ref = pd.Index(ref.item_ids).get_indexer(got.item_ids)
    for kind in ("cat", "num"):
        torch.testing.assert_close(getattr(got.users, kind), getattr(ref.users, kind)[u_ref])
        torch.testing.assert_close(getattr(got.items, kind), getattr(ref.items, kind)[i_ref])
    for k in ref.users.hist:
        torch.testing.assert_close(got.users.hist[k], ref.users.hist[k][u_ref])
        torch.testing.assert_close(got.users.hist_gap[k], ref.users.hist_gap[k][u_ref])
    for row, ref_row in enumerate(u_ref):
        mine = {got.item_ids[i] for i in got.seen(row)}
        assert mine == {ref.item_ids[i] for i in ref.seen(int(ref_row))}
    # The default context row: the most frequent hour and device, the mean of ctx_price.
    for kind in ("cat", "num"):
        torch.testing.assert_close(getattr(got.context, kind), getattr(ref.context, kind))
    price = pd.read_csv(data_dir / "items.csv").set_index("item_id")["price"]
    log = pd.read_parquet(data_dir / "interactions.parquet")
    scaler = prepare(_config(data_dir, "never")).processor.scalers["ctx_price"]
    mean = float(price.loc[log["item_id"]].mean())
    assert ref.context.num[0, -1].item() == pytest.approx(float(scaler.transform([mean])[0]))
    assert got.popularity.keys() == ref.popularity.keys()
    for k in ref.popularity:
        np.testing.assert_allclose(got.popularity[k], ref.popularity[k][i_ref])


def test_pass1_fits_multi_hot_hashing_regression_and_multiclass(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 2_000
    df = pd.DataFrame(
        {
            "user_id": rng.integers(0, 50, n),
            "item_id": rng.integers(0, 30, n),
            "timestamp": np.arange(n),
            "tags": ["|".join(rng.choice(list("abcdefg"), rng.integers(0, 4))) for _ in range(n)],
            "shop": rng.integers(0, 500, n),
            "price": np.where(rng.random(n) < 0.1, np.nan, rng.exponential(10.0, n)),
            "rating": rng.integers(1, 6, n).astype(float),
            "segment": rng.choice(["x", "y", "z"], n),
        }
    )
    df.to_parquet(tmp_path / "log.parquet", index=False, row_group_size=300)
    cfg = config_from_dict(
        {
            "data": {
                "interactions": str(tmp_path / "log.parquet"),
                "streaming": "always",
                "chunk_rows": 333,
            },
            "features": [
                {"name": "item_id", "kind": "categorical", "group": "item", "min_count": 60},
                {"name": "shop", "kind": "categorical", "group": "item", "hash_buckets": 64},
                {"name": "tags", "kind": "multi_hot", "group": "item", "min_count": 2},
                {"name": "price", "kind": "numeric", "group": "item", "log1p": True},
            ],
            "tasks": [
                {"name": "rating", "type": "regression", "label": "rating"},
                {"name": "segment", "type": "multiclass", "label": "segment"},
            ],
            "split": {"method": "random", "valid_fraction": 0.0, "test_fraction": 0.0},
        }
    )
    proc, rows = fit_processor(ParquetLog(cfg, None, None))
    ref = FittedProcessor.fit(df, cfg)
    assert rows.tolist() == [n, 0, 0]
    assert {k: v.to_json() for k, v in proc.vocabs.items()} == {
        k: v.to_json() for k, v in ref.vocabs.items()
    }
    assert proc.vocabs["shop"].hash_buckets == 64
    for name, sc in ref.scalers.items():
        assert proc.scalers[name].mean == pytest.approx(sc.mean, rel=1e-12)
        assert proc.scalers[name].std == pytest.approx(sc.std, rel=1e-12)
    assert proc.tasks[1].classes == ["x", "y", "z"]
    got, want = proc.tasks[0].scaler, ref.tasks[0].scaler
    assert got is not None and want is not None
    assert (got.mean, got.std) == pytest.approx((want.mean, want.std), rel=1e-12)


def test_evaluate_of_a_streamed_model_rereads_the_same_test_rows_in_chunks(
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = _config(data_dir, eval_rows=120)
    out = save_job(run_job(cfg), tmp_path / "model")
    before = json.loads((out / "metrics.json").read_text())["tasks"]
    rows = read_test_rows(cfg, load_model(out).processor)
    assert rows is not None and 0 < len(rows) <= 120  # a sample, not the whole test split

    def in_memory(*args: object, **kwargs: object) -> None:
        raise AssertionError("mtrs evaluate loaded the whole log")

    monkeypatch.setattr("mtrs.data.log.FrameLog", in_memory)
    capsys.readouterr()
    assert run(["evaluate", str(out), "--json"]) == 0
    after = json.loads(capsys.readouterr().out)["tasks"]
    assert set(after) == set(before) and before["click"]["auc"] > 0.5
    for task, ms in before.items():
        for m, v in ms.items():
            assert after[task][m] == pytest.approx(v, abs=1e-6), f"{task}/{m}"
