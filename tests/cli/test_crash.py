"""``kill -9`` at named points of train, save and evaluate: ``DIR`` always holds a whole model.

The child process runs the real CLI; ``MTRS_TEST_PAUSE_AT=point=FLAG`` makes it create FLAG
and sleep at ``point`` (:func:`mtrs.outdir.pause_point`), so the kill lands there every time.
After each kill the directory loads with checksum verification, and the next
``train --overwrite`` to it removes what the killed run left.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtrs.artifact import load_model
from mtrs.cli.main import run
from mtrs.datasets.quickstart import write_synth
from mtrs.datasets.synth import SynthSpec
from mtrs.outdir import MARKER, _exchange, leftovers

TIMEOUT = 60.0


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("crash")
    return write_synth(root / "data", SynthSpec(num_users=60, num_items=20, num_events=1500))


@pytest.fixture(scope="module")
def first(config: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained with seed 1 (the "old" model every crash test replaces)."""
    out = tmp_path_factory.mktemp("first") / "model"
    assert run(["train", str(config), "--out", str(out), "--epochs", "1", "--seed", "1"]) == 0
    return out


def manifest(d: Path) -> dict[str, str]:
    return dict(json.loads((d / "manifest.json").read_text())["sha256"])


def hidden_siblings(d: Path) -> list[str]:
    return sorted(p.name for p in d.parent.iterdir() if p.name.startswith(f".{d.name}."))


def kill_at(point: str, argv: list[str], tmp_path: Path, **env: str) -> None:
    """Run ``mtrs ARGV`` in a child, wait until it reaches ``point``, ``kill -9`` it."""
    flag = tmp_path / f"reached-{point.replace(':', '-')}"
    child_env = {**os.environ, "MTRS_TEST_PAUSE_AT": f"{point}={flag}", **env}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mtrs.cli.main", *argv],
        env=child_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while not flag.exists():
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"child exited {proc.returncode} before {point}: {err}")
            if time.monotonic() > deadline:
                pytest.fail(f"child did not reach {point} within {TIMEOUT:.0f} s")
            time.sleep(0.05)
    finally:
        proc.kill()  # SIGKILL
        proc.wait(timeout=TIMEOUT)
    assert proc.returncode == -9


def copy_of(model: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(model, target)
    return target


def retrain_cleans(config: Path, target: Path) -> None:
    """A later ``train --overwrite`` succeeds and leaves no temporaries behind."""
    argv = ["train", str(config), "--out", str(target), "--epochs", "1", "--seed", "3"]
    assert run([*argv, "--overwrite", "--json"]) == 0
    assert hidden_siblings(target) == []
    assert not (target / MARKER).exists()
    assert load_model(target).cfg.train.seed == 3


def test_kill_during_training_keeps_the_old_model(
    config: Path, first: Path, tmp_path: Path
) -> None:
    target = copy_of(first, tmp_path)
    before = manifest(target)
    argv = ["train", str(config), "--out", str(target), "--epochs", "1", "--overwrite"]
    kill_at("train", argv, tmp_path)
    assert manifest(target) == before
    assert load_model(target).cfg.train.seed == 1
    assert hidden_siblings(target) == []  # nothing is staged before training ends
    retrain_cleans(config, target)


def test_kill_during_training_into_a_new_directory_leaves_nothing(
    config: Path, tmp_path: Path
) -> None:
    target = tmp_path / "fresh"
    kill_at("train", ["train", str(config), "--out", str(target), "--epochs", "1"], tmp_path)
    assert not target.exists()
    assert hidden_siblings(target) == []


def test_kill_after_writing_before_the_swap_keeps_the_old_model(
    config: Path, first: Path, tmp_path: Path
) -> None:
    target = copy_of(first, tmp_path)
    before = manifest(target)
    argv = ["train", str(config), "--out", str(target), "--epochs", "1", "--overwrite"]
    kill_at("save:written", argv, tmp_path)
    assert manifest(target) == before
    load_model(target)
    (left,) = leftovers(target)  # the complete new model, stranded and marked
    assert (left / MARKER).is_file() and (left / "manifest.json").is_file()
    retrain_cleans(config, target)


@pytest.mark.skipif(sys.platform != "linux", reason="renameat2(RENAME_EXCHANGE) is Linux only")
def test_kill_right_after_the_exchange_has_the_new_model(
    config: Path, first: Path, tmp_path: Path
) -> None:
    probe_a, probe_b = tmp_path / "pa", tmp_path / "pb"
    probe_a.mkdir()
    probe_b.mkdir()
    if not _exchange(probe_a, probe_b):
        pytest.skip("this file system has no renameat2(RENAME_EXCHANGE)")
    target = copy_of(first, tmp_path)
    before = manifest(target)
    argv = ["train", str(config), "--out", str(target), "--epochs", "1", "--overwrite"]
    argv += ["--seed", "2"]
    kill_at("swap:exchanged", argv, tmp_path)
    assert manifest(target) != before
    assert load_model(target).cfg.train.seed == 2
    (left,) = leftovers(target)  # the old model, moved out by the exchange
    assert manifest(left) == before
    retrain_cleans(config, target)


def test_kill_between_the_two_renames_restores_the_old_model(
    config: Path, first: Path, tmp_path: Path
) -> None:
    """Without the exchange, the one window (DIR missing) is repaired by the next load."""
    target = copy_of(first, tmp_path)
    before = manifest(target)
    argv = ["train", str(config), "--out", str(target), "--epochs", "1", "--overwrite"]
    kill_at("swap:aside", argv, tmp_path, MTRS_NO_RENAME_EXCHANGE="1")
    assert not target.exists()
    assert len(leftovers(target)) == 2  # the old model moved aside, the new one staged
    loaded = load_model(target)  # moves the old model back
    assert loaded.cfg.train.seed == 1 and manifest(target) == before
    assert not (target / MARKER).exists()
    retrain_cleans(config, target)


@pytest.mark.parametrize("point", ["save:written", "swap:before"])
def test_kill_during_evaluate_keeps_a_loadable_model(
    config: Path, first: Path, tmp_path: Path, point: str
) -> None:
    target = copy_of(first, tmp_path)
    before = manifest(target)
    kill_at(point, ["evaluate", str(target), "--json"], tmp_path)
    assert manifest(target) == before
    load_model(target)
    assert len(leftovers(target)) == 1
    # A later evaluate cleans up too, and rewrites metrics and manifest together.
    assert run(["evaluate", str(target), "--json"]) == 0
    assert hidden_siblings(target) == []
    load_model(target)
    retrain_cleans(config, target)


READER = """
import hashlib, json, os, sys, pathlib
d, stop = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
reads = bad = 0
while not stop.exists():
    before = os.stat(d).st_ino
    metrics = (d / "metrics.json").read_bytes()
    manifest = (d / "manifest.json").read_bytes()
    if os.stat(d).st_ino != before:
        continue  # swapped while reading: a loader reads again (mtrs.artifact.load_model)
    json.loads(metrics)  # never empty or half-written
    digest = json.loads(manifest)["sha256"]["metrics.json"]
    bad += hashlib.sha256(metrics).hexdigest() != digest
    reads += 1
print(json.dumps({"reads": reads, "bad": bad}))
"""


def test_concurrent_readers_never_see_a_partial_model(first: Path, tmp_path: Path) -> None:
    """While evaluate rewrites metrics and manifest, a reader in another process never sees
    an empty file, nor new metrics with an old manifest."""
    from mtrs.artifact import write_manifest
    from mtrs.jsonio import write_json
    from mtrs.outdir import rewrite
    from mtrs.rescore import rescore

    target = copy_of(first, tmp_path)
    # A big extra file makes hashing the manifest slow: the window an in-place rewrite had.
    (target / "attachment.bin").write_bytes(os.urandom(1 << 25))
    stop = tmp_path / "stop"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(target), str(stop)], stdout=subprocess.PIPE, text=True
    )
    try:
        time.sleep(0.5)
        for i in range(4):
            with rewrite(target) as tmp:  # a different metrics.json, so evaluate changes it
                doc = json.loads((tmp / "metrics.json").read_text())
                write_json(tmp / "metrics.json", {**doc, "tasks": {}, "run": i})
                write_manifest(tmp)
            assert rescore(target)["tasks"]
            load_model(target)
    finally:
        stop.touch()
        out, _ = reader.communicate(timeout=TIMEOUT)
    seen = json.loads(out)
    assert seen["reads"] > 100
    assert seen["bad"] == 0
    assert hidden_siblings(target) == []


# --------------------------------------------------------------------------- kill and resume


@pytest.fixture(scope="module")
def checkpointed(config: Path) -> Path:
    """The crash config with small batches and a checkpoint every 3 optimizer steps."""
    text = config.read_text().replace(
        "batch_size = 512", "batch_size = 128\ncheckpoint_every = 3\nthreads = 1"
    )
    assert "checkpoint_every = 3" in text
    out = config.with_name("checkpointed.toml")
    out.write_text(text)
    return out


def test_a_run_killed_mid_epoch_and_resumed_ends_as_the_uninterrupted_run(
    checkpointed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", str(checkpointed), "--epochs", "2"]
    whole = tmp_path / "whole"
    assert run([*argv, "--out", str(whole), "--json"]) == 0
    target = tmp_path / "killed"
    kill_at("step:7", [*argv, "--out", str(target)], tmp_path)
    # Only the checkpoints exist (the newest at step 6); no model directory was written.
    assert sorted(p.name for p in target.iterdir()) == ["checkpoints"]
    assert (
        sorted(p.name for p in (target / "checkpoints").iterdir() if not p.name.startswith("."))[-1]
        == "step-000000006"
    )
    # Without --resume the unfinished run is neither overwritten nor continued silently.
    capsys.readouterr()
    assert run([*argv, "--out", str(target)]) == 2
    assert "pass --resume to continue it" in capsys.readouterr().err
    assert run([*argv, "--out", str(target), "--resume", "--json"]) == 0
    a = json.loads((whole / "metrics.json").read_text())
    b = json.loads((target / "metrics.json").read_text())
    assert a["tasks"] == b["tasks"] and a["valid"] == b["valid"]
    assert a["best_epoch"] == b["best_epoch"]
    strip = [{k: v for k, v in e.items() if k != "seconds"} for e in a["history"]]
    assert strip == [{k: v for k, v in e.items() if k != "seconds"} for e in b["history"]]
    assert manifest(whole)["model.safetensors"] == manifest(target)["model.safetensors"]
    assert not (target / "checkpoints").exists()  # a finished run keeps only its model
    load_model(target)


def test_overwrite_discards_an_unfinished_run_and_starts_afresh(
    checkpointed: Path, tmp_path: Path
) -> None:
    target = tmp_path / "killed"
    argv = ["train", str(checkpointed), "--epochs", "1", "--out", str(target)]
    kill_at("step:4", argv, tmp_path)
    assert (target / "checkpoints" / "step-000000003").is_dir()
    assert run([*argv, "--overwrite", "--seed", "5", "--json"]) == 0
    assert load_model(target).cfg.train.seed == 5
    assert not (target / "checkpoints").exists()


def test_resume_without_a_checkpoint_trains_from_the_start(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What ``torchrun --max-restarts`` relies on: the same command line, first run or not."""
    target = tmp_path / "new"
    argv = ["train", str(config), "--epochs", "1", "--out", str(target), "--resume", "--json"]
    assert run(argv) == 0
    assert "no checkpoint yet; training from the start" in capsys.readouterr().err
    load_model(target)
    assert not (target / "checkpoints").exists()
