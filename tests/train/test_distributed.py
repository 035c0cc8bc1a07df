"""Data-parallel training under torchrun: 2 gloo processes on loopback against one process.

* the shares of rows (in memory) and of chunks (streamed) cover every row exactly once;
* one step on 2 ranks with half a mini-batch each equals one process's step on the whole
  mini-batch, for every weighting method (PCGrad and GradNorm average their per-task
  gradients across the ranks);
* ``torchrun -m mtrs train`` trains, evaluates and saves a model close to one process's,
  with only rank 0 writing;
* a rank killed mid-epoch is brought back by ``torchrun --max-restarts`` and the job, resumed
  from its checkpoint, ends exactly as the uninterrupted 2-process run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mtrs.arch import ARCHITECTURES
from mtrs.artifact import load_model
from mtrs.cli.main import run
from mtrs.config.load import load_config
from mtrs.datasets.quickstart import write_synth
from mtrs.datasets.synth import SynthSpec
from mtrs.job import build
from mtrs.prepare import prepare
from mtrs.train.distributed import Distributed
from mtrs.train.trainer import Trainer

WORKER = Path(__file__).with_name("dist_step_worker.py")
_spec = importlib.util.spec_from_file_location("dist_step_worker", WORKER)
assert _spec is not None and _spec.loader is not None
_worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_worker)
combinations = _worker.combinations
TIMEOUT = 180.0
# 2 processes with global batch B against one process with batch B, same data and seed:
# the gradient is the same up to float summation order, so the metrics agree closely.
METRIC_TOLERANCE = 0.01


def torchrun(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    child_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    # A session of its own: a timeout kills torchrun and its workers together.
    return subprocess.Popen(
        [*cmd, *args],
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen[bytes]) -> str:
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"torchrun did not finish in {TIMEOUT:.0f} s:\n{out.decode()[-3000:]}")
    text = out.decode()
    assert proc.returncode == 0, text[-3000:]
    return text


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dist")
    path = write_synth(root / "data", SynthSpec(num_users=80, num_items=30, num_events=2400))
    text = path.read_text().replace("batch_size = 512", "batch_size = 128\ncheckpoint_every = 4")
    text = text.replace("epochs = 4", "epochs = 2")
    assert "checkpoint_every = 4" in text and "epochs = 2" in text
    path.write_text(text + "\n")
    return path


def test_row_shares_cover_every_row_exactly_once() -> None:
    for n in (0, 1, 7, 64, 1001):
        for world in (1, 2, 3, 8):
            parts = [Distributed(r, world, torch.device("cpu")).shard(n) for r in range(world)]
            rows = [i for p in parts for i in range(n)[p]]
            assert rows == list(range(n))
            sizes = [len(range(n)[p]) for p in parts]
            assert max(sizes) - min(sizes) <= 1


def test_streamed_chunks_are_shared_out_exactly_once(tmp_path: Path) -> None:
    path = write_synth(tmp_path, SynthSpec(num_users=50, num_items=20, num_events=1500), "parquet")
    cfg = load_config(path)
    cfg.data.streaming, cfg.data.chunk_rows = "always", 200
    cfg.split.method = "random"
    cfg.train.progress = False
    train = prepare(cfg).train
    assert not isinstance(train, type(None)) and hasattr(train, "shard")

    def rows(shard: tuple[int, int]) -> list[tuple[int, ...]]:
        train.shard = shard  # type: ignore[union-attr]
        got = []
        for b in train.batches(1):  # type: ignore[union-attr]
            got += [tuple(r) for r in torch.cat([b.cat, b.user[:, None]], 1).tolist()]
        return got

    whole = rows((0, 1))
    first, second = rows((0, 2)), rows((1, 2))
    assert len(first) > 0 and len(second) > 0
    assert sorted(first + second) == sorted(whole)
    assert len(first) + len(second) == len(whole)


def test_two_ranks_take_the_step_one_process_takes_on_the_whole_batch(
    config: Path, tmp_path: Path
) -> None:
    """Every architecture × every weighting: 3 steps on 2 ranks = 3 steps of one process."""
    finish(torchrun([str(WORKER), str(config), str(tmp_path)]))
    cfg = load_config(config)
    cfg.train.progress = False
    prepared = prepare(cfg)
    combos = combinations(cfg)
    assert len({a for a, _ in combos}) == len(ARCHITECTURES)  # ESMM included
    for arch, weighting in combos:
        cfg.model.architecture, cfg.train.weighting = arch, weighting
        model, tasks = build(cfg, prepared)
        start = {k: v.clone() for k, v in model.state_dict().items()}
        trainer = Trainer(model, tasks, cfg)
        sums: dict[str, float] = {}
        for step in range(3):
            trainer.train_step(prepared.train.take(slice(step * 64, (step + 1) * 64)), sums)
        ranks = load_file(str(tmp_path / f"{arch}-{weighting}.safetensors"))
        one = dict(model.state_dict())
        one |= {f"weighting.{k}": v for k, v in trainer.weighting.state_dict().items()
                if isinstance(v, torch.Tensor)}  # fmt: skip
        assert ranks.keys() == one.keys()
        for k, v in ranks.items():
            # Float summation order differs (two halves vs one batch); Adam divides each
            # update by the gradient's running scale, so a coordinate with a near-zero gradient
            # can move by a few 1e-6 more or less. A wrong average moves weights by ~lr = 2e-3.
            assert torch.allclose(v, one[k], atol=1e-5, rtol=1e-5), (arch, weighting, k)
        # The steps did move the weights (by far more than the tolerance).
        assert max(float((one[k] - v).abs().max()) for k, v in start.items() if v.numel()) > 1e-3
    # Metrics of the gathered predictions are one process's metrics of the same model.
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert doc["gathered"].keys() == doc["alone"].keys()
    for task, metrics in doc["alone"].items():
        for name, value in metrics.items():
            assert doc["gathered"][task][name] == pytest.approx(value, abs=1e-6), (task, name)


@pytest.fixture(scope="module")
def two_process_model(config: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "model"
    finish(torchrun(["-m", "mtrs", "train", str(config), "--out", str(out), "--json"]))
    return out


def test_torchrun_trains_a_model_like_one_process_and_only_rank_0_writes(
    config: Path, two_process_model: Path, tmp_path: Path
) -> None:
    one = tmp_path / "one"
    assert run(["train", str(config), "--out", str(one), "--json"]) == 0
    assert sorted(p.name for p in two_process_model.iterdir()) == sorted(
        p.name for p in one.iterdir()
    )
    assert [p.name for p in two_process_model.parent.iterdir()] == ["model"]
    a = json.loads((one / "metrics.json").read_text())
    b = json.loads((two_process_model / "metrics.json").read_text())
    for task, metrics in a["tasks"].items():
        for name, value in metrics.items():
            if isinstance(value, float) and name in ("auc", "logloss", "rmse", "accuracy"):
                assert abs(b["tasks"][task][name] - value) <= METRIC_TOLERANCE, (task, name)
    got = load_model(two_process_model).recommender().recommend("0", k=5)
    assert got.known_user and len(got.merged) == 5
    # `mtrs evaluate` (one process, on a copy: it rewrites metrics.json) reads the model too.
    copy = shutil.copytree(two_process_model, tmp_path / "copy")
    assert run(["evaluate", str(copy), "--json"]) == 0


def test_a_killed_rank_is_restarted_and_the_job_resumes_exactly(
    config: Path, two_process_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    flag = tmp_path / "paused"
    proc = torchrun(
        ["--max-restarts=1", "-m", "mtrs", "train", str(config), "--out", str(out),
         "--resume", "--json"],
        env={"MTRS_TEST_PAUSE_AT": f"step:6={flag}", "MTRS_TEST_PAUSE_RANK": "1"},
    )  # fmt: skip
    deadline = time.monotonic() + TIMEOUT
    while not flag.exists() or not flag.read_text():
        if proc.poll() is not None:
            pytest.fail(f"torchrun ended before step 6: {proc.stdout.read().decode()[-3000:]}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("rank 1 did not reach step 6")
        time.sleep(0.05)
    assert (out / "checkpoints" / "step-000000004").is_dir()
    os.kill(int(flag.read_text()), signal.SIGKILL)  # rank 1 dies mid-epoch
    text = finish(proc)
    assert "restart" in text.lower() or "failed" in text.lower()
    a = json.loads((two_process_model / "metrics.json").read_text())
    b = json.loads((out / "metrics.json").read_text())
    assert a["tasks"] == b["tasks"] and a["valid"] == b["valid"]
    assert a["best_epoch"] == b["best_epoch"]
    assert not (out / "checkpoints").exists()
    shutil.rmtree(out)
