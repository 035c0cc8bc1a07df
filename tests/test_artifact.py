"""Tests for mtrs.artifact: the model directory, manifest, pickle-free loading, determinism."""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import shutil
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mtrs.artifact import LoadedModel, load_model, save_job, write_manifest
from mtrs.config.load import config_from_dict, load_config
from mtrs.config.models import JobConfig
from mtrs.data.profiles import hold_out_profiles
from mtrs.datasets.synth import SynthSpec, generate, write
from mtrs.errors import MtrsUserError
from mtrs.eval.evaluator import predict
from mtrs.job import Job, run_job

REQUIRED = {"model.safetensors", "processor.json", "config.toml", "metrics.json", "manifest.json"}


def _tiny_config(data_dir: Path, seed: int = 0) -> JobConfig:
    """The quickstart job on a 5k-event synthetic log: one epoch, CPU, no progress bar."""
    raw = tomllib.loads(resources.files("mtrs").joinpath("configs/quickstart.toml").read_text())
    for key in ("interactions", "users", "items"):
        raw["data"][key] = str(data_dir / raw["data"][key])
    raw["train"].update({"epochs": 1, "progress": False, "device": "cpu", "seed": seed})
    return config_from_dict(raw)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write(generate(SynthSpec(num_users=100, num_items=50, num_events=5_000, seed=1)), out)
    return out


@pytest.fixture(scope="module")
def job(data_dir: Path) -> Job:
    return run_job(_tiny_config(data_dir))


@pytest.fixture(scope="module")
def model_dir(job: Job, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_job(job, tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="module")
def loaded(model_dir: Path) -> LoadedModel:
    return load_model(model_dir)


def _same(a: Any, b: Any) -> bool:
    """Deep equality where NaN equals NaN (and None, which is how JSON stores NaN)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    nan = lambda x: x is None or (isinstance(x, float) and math.isnan(x))  # noqa: E731
    if nan(a) or nan(b):
        return nan(a) and nan(b)
    return bool(a == b)


# ----- the directory --------------------------------------------------------------------------
def test_directory_holds_the_required_files_and_no_pickle(model_dir: Path) -> None:
    names = {p.name for p in model_dir.iterdir()}
    assert names >= REQUIRED
    assert not [n for n in names if n.endswith((".pt", ".pth", ".pkl", ".pickle", ".bin"))]
    # Every file is plain data: safetensors (8-byte header length, then a JSON header),
    # JSON or TOML — nothing that needs an unpickler.
    for p in model_dir.iterdir():
        raw = p.read_bytes()
        if p.suffix == ".safetensors":
            n = int.from_bytes(raw[:8], "little")
            header = json.loads(raw[8 : 8 + n])
            assert all("dtype" in v for k, v in header.items() if k != "__metadata__"), p.name
        elif p.suffix == ".json":
            json.loads(raw)
        else:
            assert p.suffix == ".toml", p.name
            tomllib.loads(raw.decode("utf-8"))
    # No temporary directory is left beside the model.
    assert [p.name for p in model_dir.parent.iterdir()] == [model_dir.name]


def test_metrics_json(model_dir: Path, job: Job) -> None:
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert {"tasks", "num_parameters", "architecture"} <= metrics.keys()
    assert metrics["architecture"] == "shared_bottom"
    assert metrics["num_parameters"] == sum(p.numel() for p in job.model.parameters())
    assert set(metrics["tasks"]) == {"click", "purchase", "gender", "click_purchase"}
    assert _same(metrics["tasks"], job.test_metrics)
    assert 0.0 <= metrics["tasks"]["click"]["auc"] <= 1.0


def test_manifest_hashes_every_file(model_dir: Path) -> None:
    manifest = json.loads((model_dir / "manifest.json").read_text())
    files = {p.name for p in model_dir.iterdir() if p.name != "manifest.json"}
    assert set(manifest["sha256"]) == files
    for name, digest in manifest["sha256"].items():
        assert hashlib.sha256((model_dir / name).read_bytes()).hexdigest() == digest
    assert {"mtrs", "torch", "numpy"} <= manifest["versions"].keys()
    assert manifest["versions"]["torch"] == torch.__version__


def test_config_toml_is_the_resolved_config(model_dir: Path, job: Job) -> None:
    assert load_config(model_dir / "config.toml") == job.cfg


# ----- loading --------------------------------------------------------------------------------
def test_loaded_model_predicts_like_the_trained_one(loaded: LoadedModel, job: Job) -> None:
    frame = job.prepared.in_memory().frame
    # The loaded processor encodes the log exactly as the trained one did.
    batch = loaded.processor.encode(frame)
    # The pipeline then holds out profiling labels of users outside each split's user fold.
    hold_out_profiles(
        batch, frame[loaded.cfg.data.user_col], job.prepared.in_memory().split, loaded.cfg
    )
    for name in ("cat", "num", "labels", "mask"):
        assert torch.equal(getattr(batch, name), getattr(job.prepared.all_rows(), name)), name
    assert torch.equal(batch.hist["clicked_items"], job.prepared.all_rows().hist["clicked_items"])
    test = job.prepared.test
    ours = predict(loaded.model, test, loaded.tasks)
    theirs = predict(job.model, test, job.tasks)
    assert ours.keys() == theirs.keys() == {"click", "purchase", "gender", "click_purchase"}
    for k in ours:
        np.testing.assert_array_equal(ours[k], theirs[k], err_msg=k)
    assert ours["click"].shape == (len(test),)


def test_loading_never_unpickles(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("load_model unpickled something")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    m = load_model(model_dir)
    assert [t.name for t in m.tasks] == ["click", "purchase", "gender"]


@pytest.mark.parametrize("name", ["processor.json", "model.safetensors", "config.toml"])
def test_tampered_file_is_rejected(model_dir: Path, tmp_path: Path, name: str) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    with (copy / name).open("ab") as f:
        f.write(b" ")
    with pytest.raises(MtrsUserError, match="checksum") as info:
        load_model(copy)
    assert name in str(info.value)


def test_manifest_entry_dropped_or_broken_is_rejected(model_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["sha256"]["model.safetensors"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(MtrsUserError, match=r"no checksum for model\.safetensors"):
        load_model(copy)
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(MtrsUserError, match="manifest"):
        load_model(copy)


@pytest.mark.parametrize(
    ("name", "edit", "fragment"),
    [
        (
            "processor.json",
            lambda d: d.pop("format"),
            "format is None, expected 'mtrs.processor/1'",
        ),
        ("processor.json", lambda d: d.pop("vocabs"), "KeyError"),
        ("catalog.json", lambda d: d.clear(), "not a valid mtrs file"),
        ("manifest.json", lambda d: d.pop("format"), "expected format 'mtrs.model/1'"),
    ],
)
def test_a_json_part_edited_with_its_checksum_updated_is_still_rejected(
    model_dir: Path, tmp_path: Path, name: str, edit: Any, fragment: str
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    doc = json.loads((copy / name).read_text())
    edit(doc)
    (copy / name).write_text(json.dumps(doc))
    if name != "manifest.json":
        write_manifest(copy)  # the tamperer also fixed the checksum
    with pytest.raises(MtrsUserError) as info:
        load_model(copy)
    assert name in str(info.value) and fragment in str(info.value)


def test_missing_file_and_directory(model_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    (copy / "metrics.json").unlink()
    with pytest.raises(MtrsUserError, match=r"metrics\.json"):
        load_model(copy)
    with pytest.raises(MtrsUserError, match="not found"):
        load_model(tmp_path / "nothing-here")


# ----- determinism ----------------------------------------------------------------------------
def test_same_seed_same_metrics_different_seed_different(data_dir: Path, job: Job) -> None:
    again = run_job(_tiny_config(data_dir, seed=0))
    assert _same(again.test_metrics, job.test_metrics)
    assert again.result.history[0].train_loss == job.result.history[0].train_loss
    other = run_job(_tiny_config(data_dir, seed=1))
    assert not _same(other.test_metrics, job.test_metrics)
    assert other.result.history[0].train_loss != job.result.history[0].train_loss
