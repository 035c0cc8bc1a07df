"""ONNX export of a model directory, and an onnxruntime backend for the recommender.

``mtrs export MODEL_DIR --format onnx --out DIR`` (:func:`export_onnx`) writes

* ``model.onnx``: the event tasks and relations, what ranking needs (the model run with
  ``user_tasks=False``);
* ``profile.onnx``: the user-scoped (profiling) tasks, only when the model has any;
* ``onnx.json``: the sidecar: each graph's inputs (name, dtype, shape with the dynamic
  ``"batch"`` axis, which :class:`~mtrs.data.batch.Batch` tensor it is) and outputs, the
  opset, the sha256 of the source model's ``manifest.json`` and the exporter versions.

The graphs compute :meth:`mtrs.tasks.taskset.TaskSet.predict` of the model's logits, so
each output is named after its task or relation: a binary task's probability ``[batch]``, a
multiclass task's class probabilities ``[batch, C]`` (classes in the sidecar), a
regression task's *standardised* value ``[batch]`` (the label is ``value · std + mean``,
then ``expm1`` when ``log1p``; the sidecar has the scaler) and a relation's joint
probability ``[batch]`` (ESMM's ``click_purchase``). These are exactly the values PyTorch
gives for the same rows, to within 1e-5.

Serving: :class:`OnnxModel` scores a :class:`~mtrs.data.batch.Batch` with onnxruntime and
returns the same predictions as the torch model; :func:`recommender_from_onnx` gives a
:class:`~mtrs.recommend.recommender.Recommender` over a model directory's catalog that
scores with it (the entry point of ``mtrs serve --backend onnx``).

The export runs the model's own modules inside :func:`~mtrs.layers.plain.plain_ops`:
plain forward ops instead of the custom autograd Functions, and a lookup + masked mean
instead of ``nn.EmbeddingBag`` (exported, that is an ONNX ``Loop``).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import logging
import os
import platform
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from mtrs.data.batch import Batch
from mtrs.errors import MtrsUserError
from mtrs.jsonio import write_json
from mtrs.layers.plain import plain_ops
from mtrs.tasks.taskset import TaskSet
from mtrs.version import __version__

if TYPE_CHECKING:
    from mtrs.artifact import LoadedModel
    from mtrs.data.processor import FittedProcessor
    from mtrs.recommend.recommender import Recommender

ONNX_FORMAT = "mtrs.onnx/1"
SIDECAR = "onnx.json"
OPSET = 18
BATCH_AXIS = "batch"
# Output ``pred.<task>``: dotted names never clash with the graph's own value names
# (``sigmoid``, ``cat``, …), which a task could otherwise be called.
OUTPUT_PREFIX = "pred."
INSTALL_HINT = "pip install 'mtrs[onnx]'"
# Batch sizes the export checks onnxruntime against PyTorch on (random rows).
CHECK_BATCHES = (1, 7)
CHECK_TOLERANCE = 1e-5


def require_onnx(modules: tuple[str, ...] = ("onnx", "onnxruntime", "onnxscript")) -> None:
    """Fail with one line naming the install command when an ONNX package is missing.

    Raises:
        MtrsUserError: ``onnx``, ``onnxruntime`` or ``onnxscript`` is not installed.
    """
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MtrsUserError(
            f"ONNX needs {', '.join(missing)}, which is not installed: {INSTALL_HINT}"
        )


@dataclass(frozen=True)
class InputSpec:
    """One graph input: a tensor of :class:`Batch`.

    Attributes:
        name: The ONNX input name (``batch.cat``, ``batch.num``, ``multi.<f>``,
            ``hist.<f>``, ``hist_value.<f>``, ``hist_gap.<f>``; always dotted, so never the
            name of a value inside the graph).
        field: The :class:`Batch` attribute it comes from.
        feature: The key in that attribute's dict (None for ``cat`` and ``num``).
        dtype: ``int64`` or ``float32``.
        width: Size of the second axis (the first is the dynamic batch).
    """

    name: str
    field: str
    feature: str | None
    dtype: str
    width: int

    def of(self, batch: Batch) -> Tensor:
        """This input's tensor of ``batch``.

        Raises:
            MtrsUserError: The batch lacks the tensor (e.g. time gaps the model reads).
        """
        value = getattr(batch, self.field)
        if self.feature is None:
            return value
        if self.feature not in value:
            raise MtrsUserError(f"batch: no '{self.name}' tensor, which the exported model reads")
        return value[self.feature]

    def to_json(self) -> dict[str, Any]:
        """The sidecar entry: name, dtype, shape (``"batch"`` first), batch field, feature."""
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": [BATCH_AXIS, self.width],
            "batch_field": self.field,
            "feature": self.feature,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> InputSpec:
        """Inverse of :meth:`to_json`."""
        return cls(doc["name"], doc["batch_field"], doc["feature"], doc["dtype"], doc["shape"][1])


def input_specs(proc: FittedProcessor) -> list[InputSpec]:
    """The :class:`Batch` tensors the model reads, in graph-input order."""
    specs = []
    if proc.categorical:
        specs.append(InputSpec("batch.cat", "cat", None, "int64", len(proc.categorical)))
    if proc.numeric:
        specs.append(InputSpec("batch.num", "num", None, "float32", len(proc.numeric)))
    for f in proc.multi_hot:
        specs.append(InputSpec(f"multi.{f.name}", "multi", f.name, "int64", f.max_length))
    time_gaps = proc.cfg.model.sequence.time_gaps
    for f in proc.histories:
        n = f.max_length
        specs.append(InputSpec(f"hist.{f.name}", "hist", f.name, "int64", n))
        if f.history_value:
            specs.append(InputSpec(f"hist_value.{f.name}", "hist_value", f.name, "float32", n))
        if f.pooling == "transformer" and time_gaps:
            specs.append(InputSpec(f"hist_gap.{f.name}", "hist_gap", f.name, "float32", n))
    return specs


def output_names(tasks: TaskSet, user_tasks: bool) -> list[str]:
    """Outputs of one graph: event tasks then relations, or (``user_tasks``) profiling tasks."""
    if user_tasks:
        return [t.name for t in tasks.user_tasks]
    event = [t.name for t in tasks.event_tasks]
    return event + [
        r.name for r in tasks.relations if r.parent.name in event and r.child.name in event
    ]


def output_doc(tasks: TaskSet, name: str) -> dict[str, Any]:
    """The sidecar entry of an output: its shape, what the value is and how to read it."""
    if name not in tasks.names:
        return {
            "name": OUTPUT_PREFIX + name,
            "task": name,
            "dtype": "float32",
            "shape": [BATCH_AXIS],
            "type": "relation",
            "value": "joint probability p(parent) * p(child | parent)",
        }
    task = tasks[name]
    doc: dict[str, Any] = {
        "name": OUTPUT_PREFIX + name,
        "task": name,
        "dtype": "float32",
        "shape": [BATCH_AXIS],
    }
    doc["type"] = task.type
    if task.type == "binary":
        doc["value"] = "probability"
    elif task.type == "multiclass":
        doc["shape"] = [BATCH_AXIS, task.output_dim]
        doc["value"] = "class probabilities"
        doc["classes"] = task.encoding.classes
    else:
        scaler = task.encoding.scaler
        doc["value"] = "standardised value: label = value * std + mean, then expm1 if log1p"
        doc["scaler"] = scaler.to_json() if scaler is not None else None
    return doc


class ExportGraph(nn.Module):
    """The model as a function of named tensors: what is traced into the ONNX graph.

    It rebuilds a :class:`Batch` from its inputs, runs the model (the same modules and
    weights) and returns :meth:`TaskSet.predict` of the logits, one tensor per output
    name. Call it inside :func:`~mtrs.layers.plain.plain_ops` to get the exported ops.

    Args:
        model: The trained model (``MultiTaskModel`` or ``HardParallelModel``).
        tasks: The model's tasks.
        inputs: The graph inputs, in order.
        user_tasks: False: event tasks and relations; True: the profiling tasks.
    """

    def __init__(
        self, model: nn.Module, tasks: TaskSet, inputs: list[InputSpec], user_tasks: bool
    ) -> None:
        super().__init__()
        self.model = model
        self.tasks = tasks
        self.inputs = inputs
        self.user_tasks = user_tasks
        self.outputs = output_names(tasks, user_tasks)

    def batch(self, tensors: tuple[Tensor, ...]) -> Batch:
        """The :class:`Batch` of the graph inputs (empty labels; ``cat``/``num`` may be empty)."""
        first = tensors[0]
        rows = first.shape[0]
        out: dict[str, Any] = {
            "cat": first.new_zeros((rows, 0), dtype=torch.long),
            "num": first.new_zeros((rows, 0), dtype=torch.float32),
            "labels": first.new_zeros((rows, 0), dtype=torch.float32),
            "mask": first.new_zeros((rows, 0), dtype=torch.bool),
            "user": first.new_zeros((rows,), dtype=torch.long),
            "multi": {},
            "hist": {},
            "hist_value": {},
            "hist_gap": {},
        }
        for spec, t in zip(self.inputs, tensors, strict=True):
            if spec.feature is None:
                out[spec.field] = t
            else:
                out[spec.field][spec.feature] = t
        return Batch(**out)

    def forward(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        logits = self.model(self.batch(tensors), user_tasks=self.user_tasks).logits
        preds = self.tasks.predict(logits)
        return tuple(preds[name] for name in self.outputs)


def example_inputs(
    inputs: list[InputSpec], proc: FittedProcessor, rows: int, seed: int = 0
) -> tuple[Tensor, ...]:
    """Random valid inputs: codes within each vocabulary (some padding), values N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    cats = proc.categorical
    out = []
    for spec in inputs:
        if spec.dtype == "float32":
            out.append(torch.randn(rows, spec.width, generator=g))
            continue
        if spec.field == "cat":
            highs = torch.tensor([proc.vocab_size(f.name) for f in cats])
        elif spec.field == "multi":
            highs = torch.full((spec.width,), proc.vocab_size(str(spec.feature)))
        else:
            hist = next(f for f in proc.histories if f.name == spec.feature)
            highs = torch.full((spec.width,), proc.vocab_size(str(hist.item_feature)))
        codes = (torch.rand(rows, spec.width, generator=g) * highs).long()
        out.append(codes)
    return tuple(out)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import onnxscript

    return {
        "mtrs": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxscript": onnxscript.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
    }


def _check_target(out: Path) -> None:
    """Refuse a path that is a file, or a non-empty directory that is not an ONNX export."""
    if out.exists() and not out.is_dir():
        raise MtrsUserError(f"--out {out}: is a file, not a directory")
    if out.is_dir() and any(out.iterdir()) and not _is_export(out):
        raise MtrsUserError(
            f"--out {out}: directory is not empty and not a previous ONNX export "
            f"(no {SIDECAR}); choose an empty or new directory"
        )


def _is_export(directory: Path) -> bool:
    try:
        doc = json.loads((directory / SIDECAR).read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("format") == ONNX_FORMAT


def export_graph_file(
    graph: ExportGraph, example: tuple[Tensor, ...], path: Path, opset: int
) -> None:
    """Trace ``graph`` with the dynamo exporter into one ONNX file (weights inside).

    Eval mode, no autograd, :func:`~mtrs.layers.plain.plain_ops`; every input's first axis
    is the dynamic ``batch`` axis.

    Args:
        graph: The model as a function of named tensors.
        example: Inputs to trace with (any batch size above 1).
        path: The ``.onnx`` file to write.
        opset: The ONNX opset.
    """
    batch = torch.export.Dim(BATCH_AXIS, min=1)
    names = [s.name for s in graph.inputs]
    graph.eval()
    # The exporter reports its steps on stdout and logs notes (no torchvision, axis names)
    # and warnings: the command prints its own summary, and the check below is the verdict.
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)
    try:
        with (
            plain_ops(),
            torch.no_grad(),
            contextlib.redirect_stdout(io.StringIO()),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph,
                example,
                str(path),
                dynamo=True,
                input_names=names,
                output_names=[OUTPUT_PREFIX + n for n in graph.outputs],
                dynamic_shapes=(tuple({0: batch} for _ in names),),
                opset_version=opset,
                external_data=False,
                verbose=False,
            )
    finally:
        onnx_log.setLevel(level)


def _max_difference(graph: ExportGraph, session: Any, proc: FittedProcessor, rows: int) -> float:
    """Largest |onnxruntime − torch| over the graph's outputs on ``rows`` random rows."""
    example = example_inputs(graph.inputs, proc, rows, seed=rows)
    with torch.no_grad():
        want = graph(*example)
    names = [OUTPUT_PREFIX + n for n in graph.outputs]
    feeds = {s.name: t.numpy() for s, t in zip(graph.inputs, example, strict=True)}
    got = session.run(names, feeds)
    return max(
        (float(np.abs(g - w.numpy()).max(initial=0.0)) for g, w in zip(got, want, strict=True)),
        default=0.0,
    )


def export_graphs(loaded: LoadedModel) -> dict[str, ExportGraph]:
    """The graphs of a model: ``model`` (ranking), and ``profile`` when it has user tasks."""
    model = loaded.model.eval()
    inputs = input_specs(loaded.processor)
    graphs = {"model": ExportGraph(model, loaded.tasks, inputs, user_tasks=False)}
    if loaded.tasks.user_tasks:
        graphs["profile"] = ExportGraph(model, loaded.tasks, inputs, user_tasks=True)
    return graphs


def export_onnx(model_dir: str | Path, out_dir: str | Path, opset: int = OPSET) -> dict[str, Any]:
    """Export a model directory to ONNX graphs and the ``onnx.json`` sidecar, atomically.

    The graphs are written to a temporary directory beside ``out_dir``, checked against
    PyTorch with onnxruntime at batch sizes 1 and 7 (max |difference| ≤ 1e-5), and only
    then moved into place (replacing a previous export).

    Args:
        model_dir: The trained model directory.
        out_dir: Where to write; must be new, empty or a previous ONNX export.
        opset: The ONNX opset.

    Returns:
        The sidecar document.

    Raises:
        MtrsUserError: ONNX packages missing, an unusable ``out_dir``, a bad model
            directory, or onnxruntime disagreeing with PyTorch.
    """
    require_onnx()
    import onnxruntime as ort

    from mtrs.artifact import load_model

    out = Path(out_dir)
    _check_target(out)
    loaded = load_model(model_dir)
    graphs = export_graphs(loaded)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        docs: dict[str, Any] = {}
        for key, graph in graphs.items():
            file = f"{key}.onnx"
            example = example_inputs(graph.inputs, loaded.processor, rows=3)
            export_graph_file(graph, example, tmp / file, opset)
            session = ort.InferenceSession(str(tmp / file), providers=["CPUExecutionProvider"])
            diff = max(_max_difference(graph, session, loaded.processor, n) for n in CHECK_BATCHES)
            if not diff <= CHECK_TOLERANCE:
                raise MtrsUserError(
                    f"{model_dir}: the exported {file} differs from PyTorch by {diff:.3g} "
                    f"(more than {CHECK_TOLERANCE}); not written"
                )
            docs[key] = {
                "file": file,
                "user_tasks": graph.user_tasks,
                "inputs": [s.to_json() for s in graph.inputs],
                "outputs": [output_doc(loaded.tasks, n) for n in graph.outputs],
                "check": {"batch_sizes": list(CHECK_BATCHES), "max_abs_diff": diff},
            }
        doc = {
            "format": ONNX_FORMAT,
            "opset": opset,
            "model_manifest_sha256": _sha256(loaded.directory / "manifest.json"),
            "architecture": loaded.cfg.model.architecture,
            "versions": _versions(),
            "graphs": docs,
        }
        write_json(tmp / SIDECAR, doc)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return doc


class OnnxModel:
    """An exported model scored with onnxruntime: a :class:`Batch` in, predictions out.

    ``model(batch, user_tasks=False)`` returns what ``tasks.predict(torch_model(batch,
    user_tasks=False).logits)`` returns (event tasks and relations, as float32 tensors);
    with ``user_tasks=True`` the profiling tasks are added (from ``profile.onnx``). It is a
    :data:`~mtrs.recommend.recommender.Predictor`, the scoring backend of a Recommender.

    Args:
        directory: An ONNX export (``mtrs export --format onnx``).
        threads: onnxruntime intra-op threads (default: onnxruntime's, every core).

    Raises:
        MtrsUserError: onnxruntime missing, or not an ONNX export directory.
    """

    def __init__(self, directory: str | Path, threads: int | None = None) -> None:
        require_onnx(("onnxruntime",))
        import onnxruntime as ort

        self.directory = Path(directory)
        if not _is_export(self.directory):
            raise MtrsUserError(
                f"{self.directory}: not an ONNX export (no valid {SIDECAR}; "
                "write one with mtrs export MODEL_DIR --format onnx --out DIR)"
            )
        self.doc: dict[str, Any] = json.loads((self.directory / SIDECAR).read_text("utf-8"))
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        self.sessions: dict[str, tuple[Any, list[InputSpec], list[tuple[str, str]]]] = {}
        for key, g in self.doc["graphs"].items():
            path = self.directory / g["file"]
            if not path.is_file():
                raise MtrsUserError(f"{self.directory}: {g['file']} is missing")
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            inputs = [InputSpec.from_json(s) for s in g["inputs"]]
            outputs = [(o["name"], o["task"]) for o in g["outputs"]]
            self.sessions[key] = (session, inputs, outputs)

    @property
    def manifest_sha256(self) -> str:
        """The sha256 of the source model directory's ``manifest.json``."""
        return str(self.doc["model_manifest_sha256"])

    def eval(self) -> OnnxModel:
        """No-op (an exported graph is always in eval mode); for torch-like callers."""
        return self

    def __call__(self, batch: Batch, user_tasks: bool = True) -> dict[str, Tensor]:
        """Predictions per task and relation for every row of ``batch``."""
        keys = ["model", "profile"] if user_tasks else ["model"]
        out: dict[str, Tensor] = {}
        for key in keys:
            if key not in self.sessions:
                continue
            session, inputs, outputs = self.sessions[key]
            feeds = {s.name: np.ascontiguousarray(s.of(batch).numpy()) for s in inputs}
            values = session.run([name for name, _ in outputs], feeds)
            for (_, task), value in zip(outputs, values, strict=True):
                out[task] = torch.from_numpy(value)
        return out


def recommender_from_onnx(
    model_dir: str | Path, onnx_dir: str | Path, threads: int | None = None
) -> Recommender:
    """A Recommender over a model directory's catalog that scores with onnxruntime.

    This is the function ``mtrs serve --backend onnx`` calls: the lists, merge and profile
    logic are the torch Recommender's; only the scoring runs the exported graphs.

    Args:
        model_dir: The trained model directory (processor, tasks, catalog).
        onnx_dir: Its ONNX export.
        threads: onnxruntime intra-op threads (default: every core).

    Raises:
        MtrsUserError: A bad directory, or an export of another model (manifest digest).
    """
    from mtrs.artifact import load_model

    loaded = load_model(model_dir)
    onnx_model = OnnxModel(onnx_dir, threads)
    digest = _sha256(loaded.directory / "manifest.json")
    if onnx_model.manifest_sha256 != digest:
        raise MtrsUserError(
            f"{onnx_dir}: exported from another model than {model_dir} (manifest.json "
            "digest differs); export this model again"
        )
    return loaded.recommender(predictor=onnx_model)


def load_recommender(model_dir: str | Path, threads: int | None = None) -> Recommender:
    """The ONNX-scored Recommender of a model directory, exporting it once if needed.

    ``mtrs serve --backend onnx`` (and its reload) calls this. The export lives in a cache
    keyed by the model's manifest digest — ``$MTRS_CACHE/onnx/<digest>`` (default
    ``~/.cache/mtrs``) — so a restart or a reload of the same model reuses it, and a new
    model is exported (and its parity checked) before it serves.

    Raises:
        MtrsUserError: A bad model directory, or onnx / onnxruntime missing.
    """
    require_onnx()
    manifest = Path(model_dir) / "manifest.json"
    if not manifest.is_file():
        raise MtrsUserError(f"{model_dir}: not an mtrs model directory (missing manifest.json)")
    root = Path(os.environ.get("MTRS_CACHE") or Path.home() / ".cache" / "mtrs")
    target = root / "onnx" / _sha256(manifest)
    if not _is_export(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(model_dir, target)
    return recommender_from_onnx(model_dir, target, threads)


__all__ = [
    "ONNX_FORMAT",
    "ExportGraph",
    "InputSpec",
    "OnnxModel",
    "export_graph_file",
    "export_onnx",
    "input_specs",
    "load_recommender",
    "recommender_from_onnx",
    "require_onnx",
]
