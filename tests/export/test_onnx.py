"""ONNX export: onnxruntime equals PyTorch for every architecture and history pooling, the
plain (export) path equals the training path, the sidecar, the CLI and the ONNX-backed
Recommender."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import onnx
import onnxruntime as ort

from mtrs.arch import ARCHITECTURES
from mtrs.artifact import LoadedModel, load_model, save_job
from mtrs.cli.main import run
from mtrs.config.load import config_from_dict
from mtrs.data.batch import Batch
from mtrs.data.encoders import Scaler, Vocabulary
from mtrs.data.labels import TaskEncoding
from mtrs.data.processor import FittedProcessor
from mtrs.datasets.quickstart import write_synth
from mtrs.datasets.synth import SynthSpec
from mtrs.errors import MtrsUserError
from mtrs.export import onnx as mtrs_onnx
from mtrs.export.onnx import (
    OUTPUT_PREFIX,
    ExportGraph,
    OnnxModel,
    example_inputs,
    input_specs,
    recommender_from_onnx,
)
from mtrs.job import run_job
from mtrs.layers.embedding import FeatureEmbedding
from mtrs.layers.plain import plain_ops
from mtrs.model import build_model
from mtrs.tasks.taskset import TaskSet

ARCHS = ("single", "shared_bottom", "omoe", "mmoe", "ple", "esmm")
POOLINGS = ("mean", "din", "transformer")
BATCH_SIZES = (1, 7, 64)
VOCABS = {
    "age": ["18-24", "25-34", "35+"],
    "item_id": [f"i{k}" for k in range(12)],
    "hour": ["0", "1", "2"],
    "genres": ["x", "y", "z", "w"],
    "interests": ["p", "q"],
}


def _features(poolings: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every input kind: categorical, numeric, multi-hot, and one history per pooling."""
    features: list[dict[str, Any]] = [
        {"name": "age", "kind": "categorical", "group": "user"},
        {"name": "visits", "kind": "numeric", "group": "user"},
        {"name": "item_id", "kind": "categorical", "group": "item"},
        {"name": "genres", "kind": "multi_hot", "group": "item", "max_length": 3},
        {"name": "interests", "kind": "multi_hot", "group": "user", "max_length": 2},
        {"name": "hour", "kind": "categorical", "group": "context", "embedding_dim": 3},
    ]
    for pooling in poolings:
        features.append(
            {
                "name": f"seen_{pooling}",
                "kind": "history",
                "group": "behaviour",
                "item_feature": "item_id",
                "max_length": 4,
                "pooling": pooling,
                "history_value": "rating",
            }
        )
    return features


def _parts(
    arch: str, poolings: tuple[str, ...] = ("mean",), all_kinds: bool = False
) -> tuple[nn.Module, FittedProcessor, TaskSet]:
    """An untrained model (fixed seed) of ``arch``: click, purchase and their ESMM funnel;
    ``all_kinds`` adds a regression and a multiclass task, dot interactions and time gaps.
    The models are small: export time grows with the graph."""
    tasks: list[dict[str, Any]] = [
        {"name": "click", "type": "binary", "label": "click"},
        {"name": "purchase", "type": "binary", "label": "purchase", "condition": "click"},
    ]
    if all_kinds:
        tasks += [
            {"name": "dwell", "type": "regression", "label": "dwell"},
            {"name": "reaction", "type": "multiclass", "label": "reaction"},
        ]
    cfg = config_from_dict(
        {
            "data": {"interactions": "/unused.csv"},
            "features": _features(poolings),
            "tasks": tasks,
            "relations": [
                {"type": "esmm", "parent": "click", "child": "purchase", "name": "click_purchase"}
            ],
            "model": {
                "architecture": arch,
                "embedding_dim": 4,
                "interactions": "dot" if all_kinds else "none",
                "shared": {"hidden": [8, 8]},
                "tower": {"hidden": [4]},
                "experts": {"num_experts": 2, "task_experts": 1, "levels": 2},
                "sequence": {"time_gaps": all_kinds, "attention_hidden": [8]},
            },
        }
    )
    encodings = []
    for t in cfg.tasks:
        classes = ["a", "b", "c"] if t.type == "multiclass" else None
        scaler = Scaler(3.0, 2.0, False) if t.type == "regression" else None
        encodings.append(TaskEncoding(t, classes=classes, scaler=scaler))
    proc = FittedProcessor(cfg, {k: Vocabulary(v) for k, v in VOCABS.items()}, {}, encodings)
    taskset = TaskSet.for_job(cfg, proc.tasks)
    torch.manual_seed(0)
    model = build_model(proc, cfg, taskset).eval()
    with torch.no_grad():
        # Weights larger than the initialisation's: gates, attention and outputs then vary
        # from row to row, so a wrong op shows as a difference.
        for p in model.parameters():
            p.normal_(0.0, 0.4)
    return model, proc, taskset


# case → (architecture, history poolings, all task kinds): every architecture with a mean-pooled
# history, then the attention poolings (DIN, Transformer with time gaps) with every output kind.
CASES: dict[str, tuple[str, tuple[str, ...], bool]] = {
    **{a: (a, ("mean",), False) for a in ARCHS},
    "din+transformer": ("shared_bottom", ("din", "transformer"), True),
}


def _torch_predict(
    model: nn.Module, tasks: TaskSet, graph: ExportGraph, example: tuple[torch.Tensor, ...]
) -> dict[str, np.ndarray]:
    """The model's own forward (training code path, not plain ops) on the graph's inputs."""
    with torch.no_grad():
        preds = tasks.predict(model(graph.batch(example), user_tasks=False).logits)
    return {name: preds[name].numpy() for name in graph.outputs}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Each architecture exported once (lazily, on first use)."""
    return {"dir": tmp_path_factory.mktemp("onnx")}


def _exported(cache: dict[str, Any], case: str) -> tuple[Any, ...]:
    if case not in cache:
        arch, poolings, all_kinds = CASES[case]
        model, proc, tasks = _parts(arch, poolings, all_kinds)
        graph = ExportGraph(model, tasks, input_specs(proc), user_tasks=False)
        path = cache["dir"] / f"{case}.onnx"
        mtrs_onnx.export_graph_file(graph, example_inputs(graph.inputs, proc, 3), path, 18)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        cache[case] = (model, proc, tasks, graph, session, path)
    return tuple(cache[case])


def test_every_architecture_and_pooling_is_covered() -> None:
    assert set(ARCHS) == set(ARCHITECTURES)
    assert {p for _, poolings, _ in CASES.values() for p in poolings} == set(POOLINGS)


@pytest.mark.parametrize("case", CASES)
def test_onnxruntime_matches_torch_at_every_batch_size(exported: dict[str, Any], case: str) -> None:
    model, proc, tasks, graph, session, path = _exported(exported, case)
    all_kinds = CASES[case][2]
    kinds = ["dwell", "reaction"] if all_kinds else []
    assert graph.outputs == ["click", "purchase", *kinds, "click_purchase"]
    names = [OUTPUT_PREFIX + n for n in graph.outputs]
    for rows in BATCH_SIZES:
        example = example_inputs(graph.inputs, proc, rows, seed=100 + rows)
        want = _torch_predict(model, tasks, graph, example)
        feeds = {s.name: t.numpy() for s, t in zip(graph.inputs, example, strict=True)}
        got = dict(zip(graph.outputs, session.run(names, feeds), strict=True))
        for name in graph.outputs:
            assert got[name].shape == want[name].shape, (name, rows)
            diff = float(np.abs(got[name] - want[name]).max())
            assert diff <= 1e-5, f"{case} {name} batch {rows}: max |diff| {diff}"
            print(f"max|diff| {case} batch {rows} {name}: {diff:.2e}")
        # Real, varied predictions (not constants that would match trivially).
        if rows > 1:
            assert np.ptp(want["click"]) > 1e-2
        if all_kinds:
            assert got["reaction"].shape == (rows, 3)
            assert np.allclose(got["reaction"].sum(1), 1.0, atol=1e-5)
        joint = got["click"] * got["purchase"]
        assert np.allclose(got["click_purchase"], joint, atol=1e-6)
    graph_proto = onnx.load(str(path)).graph
    ops = {n.op_type for n in graph_proto.node}
    assert "Loop" not in ops  # no EmbeddingBag loop
    for i in graph_proto.input:
        assert i.type.tensor_type.shape.dim[0].dim_param == "batch", i.name


@pytest.mark.parametrize("case", CASES)
def test_plain_ops_forward_equals_the_training_path(case: str) -> None:
    """The export path (plain ops) against the training path's custom Functions and
    EmbeddingBag (grad enabled, eval mode: fused experts, index_add_ lookup, feature-major
    mix)."""
    model, proc, tasks = _parts(*CASES[case])
    graph = ExportGraph(model, tasks, input_specs(proc), user_tasks=False)
    example = example_inputs(graph.inputs, proc, 33, seed=5)
    want = graph(*example)
    assert want[0].requires_grad  # the training path ran with autograd
    with plain_ops():
        got = graph(*example)
    for name, g, w in zip(graph.outputs, got, want, strict=True):
        torch.testing.assert_close(g, w.detach(), atol=1e-6, rtol=1e-5, msg=name)


def test_plain_bag_mean_equals_embedding_bag() -> None:
    model, _, _ = _parts("shared_bottom")
    emb = model.embedding
    assert isinstance(emb, FeatureEmbedding)
    codes = torch.tensor([[2, 3, 0], [4, 0, 0], [0, 0, 0], [5, 5, 2], [0, 3, 0]])
    want = emb.bags["genres"](codes)
    with plain_ops():
        got = emb.bag_mean("genres", codes)
    torch.testing.assert_close(got, want, atol=1e-7, rtol=1e-6)
    assert torch.equal(got[2], torch.zeros(4))  # no tokens: zeros, as EmbeddingBag
    w = emb.bags["genres"].weight
    torch.testing.assert_close(got[0], (w[2] + w[3]) / 2)


# ----- a trained model: the CLI, the sidecar, the ONNX-backed recommender -----------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[LoadedModel, Path]:
    """The quickstart job (DIN history, gender profiling task) on a tiny log, exported."""
    root = tmp_path_factory.mktemp("trained")
    config = write_synth(root / "data", SynthSpec(num_users=80, num_items=60, num_events=3000))
    from mtrs.config.load import load_config

    cfg = load_config(config)
    cfg.train.epochs = 1
    cfg.train.progress = False
    cfg.train.device = "cpu"
    model_dir = save_job(run_job(cfg), root / "model")
    out = root / "onnx"
    assert run(["export", str(model_dir), "--format", "onnx", "--out", str(out)]) == 0
    return load_model(model_dir), out


def test_sidecar_lists_inputs_outputs_opset_digest_and_versions(
    trained: tuple[LoadedModel, Path],
) -> None:
    loaded, out = trained
    doc = json.loads((out / "onnx.json").read_text("utf-8"))
    assert doc["format"] == "mtrs.onnx/1"
    assert doc["opset"] == 18
    manifest = (loaded.directory / "manifest.json").read_bytes()
    assert doc["model_manifest_sha256"] == hashlib.sha256(manifest).hexdigest()
    assert {"torch", "onnx", "onnxscript", "onnxruntime", "mtrs"} <= set(doc["versions"])
    assert set(doc["graphs"]) == {"model", "profile"}
    model = doc["graphs"]["model"]
    inputs = {i["name"]: i for i in model["inputs"]}
    assert set(inputs) == {"batch.cat", "batch.num", "hist.clicked_items"}
    assert inputs["batch.cat"] == {
        "name": "batch.cat",
        "dtype": "int64",
        "shape": ["batch", len(loaded.processor.categorical)],
        "batch_field": "cat",
        "feature": None,
    }
    assert inputs["hist.clicked_items"]["shape"] == ["batch", 20]
    outputs = [o["name"] for o in model["outputs"]]
    assert outputs == ["pred.click", "pred.purchase", "pred.click_purchase"]
    assert model["outputs"][0]["value"] == "probability"
    assert [o["name"] for o in doc["graphs"]["profile"]["outputs"]] == ["pred.gender"]
    assert model["check"]["max_abs_diff"] <= 1e-5
    # The ONNX files agree with what the sidecar says.
    proto = onnx.load(str(out / "model.onnx"))
    assert [i.name for i in proto.graph.input] == [i["name"] for i in model["inputs"]]
    assert [o.name for o in proto.graph.output] == outputs
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "onnx.json", "profile.onnx"]


def test_onnx_recommender_lists_equal_the_torch_recommender(
    trained: tuple[LoadedModel, Path],
) -> None:
    loaded, out = trained
    torch_rec = loaded.recommender()
    onnx_rec = recommender_from_onnx(loaded.directory, out, threads=1)
    assert isinstance(onnx_rec.predictor, OnnxModel)
    for user in loaded.catalog.user_ids[:4]:
        a = torch_rec.recommend(user, k=10)
        b = onnx_rec.recommend(user, k=10)
        assert a.known_user and b.known_user
        assert set(a.lists) == set(b.lists) == {"click", "purchase", "click_purchase"}
        for name in a.lists:
            assert [i.item for i in a.lists[name]] == [i.item for i in b.lists[name]], name
            sa = np.array([i.score for i in a.lists[name]], dtype=float)
            sb = np.array([i.score for i in b.lists[name]], dtype=float)
            assert np.abs(sa - sb).max() <= 1e-5
        assert [i.item for i in a.merged] == [i.item for i in b.merged]
        assert b.profile["gender"] == pytest.approx(a.profile["gender"], abs=1e-5)


def test_onnx_model_scores_a_batch_like_the_torch_model(trained: tuple[LoadedModel, Path]) -> None:
    loaded, out = trained
    rec = loaded.recommender()
    user = rec.user_input(loaded.catalog.user_ids[0])
    assert user is not None
    cand = torch.arange(len(loaded.catalog.item_ids))
    batch: Batch = rec._assemble(user.features, loaded.catalog.context, cand)
    with torch.no_grad():
        want = loaded.tasks.predict(loaded.model(batch).logits)
    got = OnnxModel(out)(batch, user_tasks=True)
    assert set(got) == set(want)
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-5, rtol=0)
    assert set(OnnxModel(out)(batch, user_tasks=False)) == {"click", "purchase", "click_purchase"}


def test_an_export_of_another_model_is_refused(
    trained: tuple[LoadedModel, Path], tmp_path: Path
) -> None:
    loaded, out = trained
    other = tmp_path / "other"
    shutil.copytree(loaded.directory, other)
    manifest = json.loads((other / "manifest.json").read_text("utf-8"))
    manifest["versions"]["mtrs"] = "0.0.0-other"
    (other / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(MtrsUserError, match="exported from another model"):
        recommender_from_onnx(other, out)


# ----- command-line mistakes: one line, exit 2 (nothing exported) ------------------------------
def test_a_non_empty_directory_that_is_no_export_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    assert run(["export", str(tmp_path / "model"), "--format", "onnx", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "not empty and not a previous ONNX export" in err
    assert (out / "notes.txt").read_text("utf-8") == "mine"


def test_a_previous_export_may_be_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "onnx.json").write_text(json.dumps({"format": "mtrs.onnx/1"}), encoding="utf-8")
    # The target is accepted; the (missing) model directory is what fails.
    assert run(["export", str(tmp_path / "nope"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "model directory not found" in err
    assert (out / "onnx.json").is_file()


def test_unknown_format_and_missing_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["export", str(tmp_path), "--format", "tflite", "--out", str(tmp_path / "o")]) == 2
    assert "--format: unknown format 'tflite' (known: onnx)" in capsys.readouterr().err
    real = mtrs_onnx.importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "onnxscript" else real(name, *args)

    monkeypatch.setattr(mtrs_onnx.importlib.util, "find_spec", find_spec)
    assert run(["export", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "pip install 'mtrs[onnx]'" in err
    assert not (tmp_path / "o").exists()


def test_an_onnx_model_needs_an_export_directory(tmp_path: Path) -> None:
    with pytest.raises(MtrsUserError, match="not an ONNX export"):
        OnnxModel(tmp_path)
