"""Checkpoints and exact resume: an interrupted run continued from its latest checkpoint ends
bit for bit where the uninterrupted run ends (in memory and streamed, every weighting)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from mtrs.config.load import config_to_dict, load_config
from mtrs.config.models import JobConfig
from mtrs.data.batch import Batch
from mtrs.datasets.synth import SynthSpec
from mtrs.errors import MtrsUserError
from mtrs.job import build
from mtrs.prepare import Prepared, prepare
from mtrs.train.checkpoint import Checkpoints, LoopState, Snapshot
from mtrs.train.trainer import Trainer, TrainResult


@pytest.fixture(scope="module")
def job_dir(synth_job: Callable[[SynthSpec], Path]) -> Path:
    return synth_job(SynthSpec(num_users=60, num_items=20, num_events=1500))


def _config(job_dir: Path, weighting: str = "fixed", every: int | None = 2) -> JobConfig:
    cfg = load_config(job_dir / "job.toml")
    cfg.train.epochs = 3
    cfg.train.patience = 5
    cfg.train.progress = False
    cfg.train.batch_size = 256
    cfg.train.lr_schedule = "cosine"
    cfg.train.weighting = weighting
    cfg.train.checkpoint_every = every
    return cfg


@pytest.fixture(scope="module")
def prepared(job_dir: Path) -> Prepared:
    return prepare(_config(job_dir))


class Interrupted(Exception):
    """Raised by a step callback to stop a run the way a kill would."""


class Chunks:
    """The training rows as a stream of fixed-size chunks (what a Parquet reader yields)."""

    def __init__(self, batch: Batch, chunk: int, buffer_rows: int) -> None:
        self.batch, self.chunk, self.buffer_rows = batch, chunk, buffer_rows

    def batches(self, epoch: int) -> Iterator[Batch]:
        for start in range(0, len(self.batch), self.chunk):
            yield self.batch.take(slice(start, start + self.chunk))


def _train(
    cfg: JobConfig,
    prepared: Prepared,
    store: Checkpoints | None,
    stop_at: int | None = None,
    stream: bool = False,
) -> tuple[Trainer, TrainResult]:
    model, tasks = build(cfg, prepared)
    trainer = Trainer(model, tasks, cfg)
    if stop_at is not None:

        def stop(t: Trainer, _: object) -> None:
            if t.steps_done == stop_at:
                raise Interrupted

        trainer.step_callbacks.append(stop)
    data = Chunks(prepared.train, 100, 300) if stream else prepared.train
    return trainer, trainer.fit(data, prepared.valid, store)


def _same_run(a: tuple[Trainer, TrainResult], b: tuple[Trainer, TrainResult]) -> None:
    (ta, ra), (tb, rb) = a, b
    sa, sb = ta.model.state_dict(), tb.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert ra.best_epoch == rb.best_epoch
    assert [e.train_loss for e in ra.history] == [e.train_loss for e in rb.history]
    assert [e.valid for e in ra.history] == [e.valid for e in rb.history]
    assert [e.weights for e in ra.history] == [e.weights for e in rb.history]
    assert ta.steps_done == tb.steps_done


@pytest.mark.parametrize("weighting", ["fixed", "uncertainty", "dwa", "gradnorm", "pcgrad"])
def test_a_run_interrupted_mid_epoch_resumes_to_the_same_weights_and_metrics(
    job_dir: Path, prepared: Prepared, tmp_path: Path, weighting: str
) -> None:
    cfg = _config(job_dir, weighting)
    whole = _train(cfg, prepared, None)
    steps_per_epoch = math.ceil(len(prepared.train) / cfg.train.batch_size)
    # Killed one step after a mid-epoch checkpoint of epoch 2: that step is redone.
    stop = steps_per_epoch + (3 if steps_per_epoch % 2 == 0 else 2)
    assert stop % 2 == 1 and stop < 2 * steps_per_epoch
    store = Checkpoints(tmp_path / "checkpoints", config_to_dict(cfg), keep=2)
    with pytest.raises(Interrupted):
        _train(cfg, prepared, store, stop_at=stop)
    latest = store.latest()
    assert latest is not None and latest.name == f"step-{stop - 1:09d}"
    assert len(store.complete()) == 2  # older ones pruned
    resumed = _train(cfg, prepared, store)
    _same_run(whole, resumed)


def test_a_streamed_run_resumes_mid_epoch_exactly(
    job_dir: Path, prepared: Prepared, tmp_path: Path
) -> None:
    cfg = _config(job_dir, "dwa", every=3)
    whole = _train(cfg, prepared, None, stream=True)
    store = Checkpoints(tmp_path / "checkpoints", config_to_dict(cfg))
    steps = whole[0].steps_done
    stop = steps // 2 + 1  # in the second epoch, past a checkpoint at a multiple of 3
    with pytest.raises(Interrupted):
        _train(cfg, prepared, store, stop_at=stop, stream=True)
    loop = json.loads((store.latest() / "state.json").read_text())["loop"]  # type: ignore[operator]
    assert loop["steps_done"] == stop - stop % 3 and loop["step"] > 0
    _same_run(whole, _train(cfg, prepared, store, stream=True))


def test_early_stopping_state_survives_a_resume_at_an_epoch_end(
    job_dir: Path, prepared: Prepared, tmp_path: Path
) -> None:
    cfg = _config(job_dir, every=None)
    cfg.train.epochs, cfg.train.patience = 4, 0
    whole = _train(cfg, prepared, None)
    store = Checkpoints(tmp_path / "checkpoints", config_to_dict(cfg))
    steps_per_epoch = math.ceil(len(prepared.train) / cfg.train.batch_size)
    with pytest.raises(Interrupted):
        _train(cfg, prepared, store, stop_at=steps_per_epoch + 1)  # epoch-end checkpoints only
    assert store.latest() is not None and store.latest().name == f"step-{steps_per_epoch:09d}"  # type: ignore[union-attr]
    resumed = _train(cfg, prepared, store)
    _same_run(whole, resumed)
    assert len(resumed[1].history) == len(whole[1].history)


def test_a_finished_run_resumed_trains_no_more(
    job_dir: Path, prepared: Prepared, tmp_path: Path
) -> None:
    cfg = _config(job_dir, every=None)
    store = Checkpoints(tmp_path / "checkpoints", config_to_dict(cfg))
    first = _train(cfg, prepared, store)
    again = _train(cfg, prepared, store)
    _same_run(first, again)


def test_torn_checkpoints_are_never_loaded_and_are_cleaned_by_the_next_save(
    job_dir: Path, prepared: Prepared, tmp_path: Path
) -> None:
    cfg = _config(job_dir)
    store = Checkpoints(tmp_path / "checkpoints", config_to_dict(cfg))
    model, _ = build(cfg, prepared)
    opt = torch.optim.AdamW(model.parameters())
    store.save(Snapshot(LoopState(steps_done=4), model.state_dict(), None, {}, opt.state_dict()))
    # What a kill during a save leaves: a temporary, and a directory without its state.json.
    (tmp_path / "checkpoints" / ".tmp-step-000000006").mkdir()
    (tmp_path / "checkpoints" / "step-000000008").mkdir()
    assert store.latest() == tmp_path / "checkpoints" / "step-000000004"
    store.save(Snapshot(LoopState(steps_done=6), model.state_dict(), None, {}, opt.state_dict()))
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert ".tmp-step-000000006" not in names
    assert [n for n in names if n.startswith("step-") and n != "step-000000008"] == [
        "step-000000004",
        "step-000000006",
    ]


def test_a_checkpoint_of_another_config_is_refused_naming_the_field(
    job_dir: Path, prepared: Prepared, tmp_path: Path
) -> None:
    cfg = _config(job_dir, every=None)
    cfg.train.epochs = 1
    _train(cfg, prepared, Checkpoints(tmp_path / "c", config_to_dict(cfg)))
    other = _config(job_dir, every=None)
    other.train.epochs, other.train.lr = 1, 0.5
    store = Checkpoints(tmp_path / "c", config_to_dict(other))
    with pytest.raises(MtrsUserError, match=r"different config \(field train\.lr differs\)"):
        _train(other, prepared, store)
    # Settings that do not change the training may differ.
    same = _config(job_dir, every=7)
    same.train.epochs, same.train.progress, same.train.threads = 1, True, 1
    _train(same, prepared, Checkpoints(tmp_path / "c", config_to_dict(same)))
