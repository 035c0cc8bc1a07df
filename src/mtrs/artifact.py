"""Model directories: safetensors weights + JSON/TOML state, written atomically, never pickled."""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import safetensors
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mtrs.config.load import config_from_dict, config_to_dict, dump_config
from mtrs.config.models import JobConfig
from mtrs.data.processor import FittedProcessor
from mtrs.errors import MtrsUserError
from mtrs.job import Job
from mtrs.jsonio import write_json
from mtrs.model import build_model, count_parameters
from mtrs.outdir import MODEL, MODEL_FORMAT, check_out, data_files, recover, staged
from mtrs.recommend.catalog import Catalog
from mtrs.recommend.recommender import Predictor, Recommender
from mtrs.tasks.taskset import TaskSet
from mtrs.version import __version__

T = TypeVar("T")

FILES = (
    "model.safetensors",
    "processor.json",
    "config.toml",
    "metrics.json",
    "catalog.safetensors",
    "catalog.json",
)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def metrics_document(job: Job) -> dict[str, Any]:
    """``metrics.json``: test metrics per task plus what produced them."""
    r = job.result
    return {
        "tasks": job.test_metrics,
        "valid": r.best_valid,
        "num_parameters": count_parameters(job.model),
        "architecture": job.cfg.model.architecture,
        "lambda_shared": job.cfg.model.lambda_shared,
        "weighting": job.cfg.train.weighting,
        "monitor": r.monitor,
        "best_epoch": r.best_epoch,
        "train_seconds": r.seconds,
        "warnings": job.warnings,
        "history": [
            {
                "epoch": e.epoch,
                "train_loss": e.train_loss,
                "valid": e.valid,
                "weights": e.weights,
                "seconds": e.seconds,
                **e.extra,
            }
            for e in r.history
        ],
    }


def save_job(job: Job, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write a trained job as a model directory, crash-safely (the old model or the new one).

    The files are written into a marked hidden sibling ``.NAME.mtrs-*`` and swapped in
    (:func:`mtrs.outdir.swap_in`: on Linux one atomic exchange, so ``out_dir`` is at every
    instant either the previous model or the new one, whole). Leftovers of a killed save are
    cleaned up first.

    Args:
        job: The trained job.
        out_dir: Target directory: missing, empty, or (with ``overwrite``) an mtrs model
            directory holding nothing else. Anything else is refused (see
            :func:`mtrs.outdir.check_out`), as is the directory of the config's data.
        overwrite: Replace an existing mtrs model directory.

    Returns:
        The directory.

    Raises:
        MtrsUserError: ``out_dir`` may not be written; nothing was touched.
    """
    out = Path(out_dir)
    recover(out)  # a model a killed save moved aside is back before the rule is applied
    # The run's own checkpoints (DIR/checkpoints) are replaced with the rest of DIR.
    check_out(out, MODEL, overwrite, data_files(job.cfg), resume=True)
    with staged(out) as tmp:
        state = {k: v.detach().cpu().contiguous() for k, v in job.model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"))
        write_json(tmp / "processor.json", job.prepared.processor.to_json())
        dump_config(job.cfg, tmp / "config.toml")
        write_json(tmp / "metrics.json", metrics_document(job))
        save_file(job.catalog.tensors(), str(tmp / "catalog.safetensors"))
        write_json(tmp / "catalog.json", job.catalog.meta())
        write_manifest(tmp)
    return out


def write_manifest(directory: Path) -> None:
    """``manifest.json``: library versions and the sha256 of every file."""
    # Hidden names are temporaries of an interrupted write, never part of the model.
    files = {
        p.name: _sha256(p)
        for p in sorted(directory.iterdir())
        if p.name != "manifest.json" and not p.name.startswith(".")
    }
    write_json(
        directory / "manifest.json",
        {
            "format": MODEL_FORMAT,
            "versions": {
                "mtrs": __version__,
                "torch": torch.__version__,
                "numpy": np.__version__,
                "pandas": pd.__version__,
                "safetensors": safetensors.__version__,
                "python": platform.python_version(),
            },
            "sha256": files,
        },
    )


@dataclass
class LoadedModel:
    """A model directory in memory, ready to evaluate or recommend."""

    directory: Path
    cfg: JobConfig
    processor: FittedProcessor
    model: nn.Module
    tasks: TaskSet
    catalog: Catalog
    metrics: dict[str, Any]

    def recommender(
        self, catalog: Catalog | None = None, predictor: Predictor | None = None
    ) -> Recommender:
        """A recommender with the config's defaults, over the model's catalog (or ``catalog``).

        ``predictor`` scores instead of the torch model (the ONNX backend,
        :func:`mtrs.export.onnx.recommender_from_onnx`).

        Raises:
            MtrsUserError: The model was trained without user or item ids (nothing to rank).
        """
        d = self.cfg.data
        for field, what in (("user_col", "user"), ("item_col", "item")):
            if not getattr(d, field):
                raise MtrsUserError(
                    f"{self.directory}: this model was trained without {what} ids "
                    f"(data.{field} is empty), so it has no {what}s to recommend for; it "
                    "scores given rows (mtrs evaluate)"
                )
        return Recommender(
            self.model,
            self.processor,
            self.tasks,
            catalog or self.catalog,
            self.cfg.recommend,
            predictor,
        )


def _read_part(path: Path, build: Callable[[Any], T]) -> T:
    """Build one part of a model from its JSON file; a malformed file is a clear error."""
    try:
        return build(json.loads(path.read_text("utf-8")))
    except MtrsUserError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as err:
        raise MtrsUserError(
            f"{path}: not a valid mtrs file ({type(err).__name__}: {err})"
        ) from None


def _identity(d: Path) -> tuple[int, int] | None:
    try:
        st = d.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def load_model(directory: str | Path, verify: bool = True) -> LoadedModel:
    """Load a model directory from safetensors, JSON and TOML (never unpickles).

    Hidden ``.NAME.mtrs-*`` siblings (temporaries of a save) are never read; if the directory
    is missing because a save was killed mid-replace, the previous model is moved back first.
    A directory swapped while it is read (a concurrent ``train --overwrite`` or ``evaluate``)
    is read again, so the files all come from one model.

    Raises:
        MtrsUserError: Missing directory or file, or a checksum that does not match.
    """
    d = Path(directory)
    if not d.exists():
        recover(d)  # a save killed between its two renames (systems without an exchange)
    for attempt in range(3):
        before = _identity(d)
        try:
            loaded = _load(d, verify)
        except (MtrsUserError, OSError):
            if attempt < 2 and _identity(d) != before:
                continue
            raise
        if _identity(d) == before:
            return loaded
    return loaded


def _load(d: Path, verify: bool) -> LoadedModel:
    if not d.is_dir():
        raise MtrsUserError(f"{d}: model directory not found")
    for name in (*FILES, "manifest.json"):
        if not (d / name).is_file():
            raise MtrsUserError(f"{d}: not an mtrs model directory (missing {name})")
    try:
        manifest = json.loads((d / "manifest.json").read_text(encoding="utf-8"))
        digests = dict(manifest["sha256"])
        if manifest.get("format") != MODEL_FORMAT:
            raise ValueError(manifest.get("format"))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise MtrsUserError(
            f"{d / 'manifest.json'}: not a valid mtrs manifest (expected format '{MODEL_FORMAT}')"
        ) from None
    if verify:
        # Every file the loader reads must be covered, so dropping an entry hides nothing.
        unlisted = [name for name in FILES if name not in digests]
        if unlisted:
            raise MtrsUserError(f"{d / 'manifest.json'}: no checksum for {unlisted[0]}")
        for name, digest in digests.items():
            if Path(name).name != name or not (d / name).is_file():
                raise MtrsUserError(f"{d / 'manifest.json'}: lists an unknown file '{name}'")
            if _sha256(d / name) != digest:
                raise MtrsUserError(f"{d / name}: checksum does not match manifest.json")
    import tomllib

    cfg = config_from_dict(
        tomllib.loads((d / "config.toml").read_text("utf-8")), str(d / "config.toml")
    )
    proc = _read_part(d / "processor.json", lambda doc: FittedProcessor.from_json(doc, cfg))
    tasks = TaskSet.for_job(cfg, proc.tasks)
    model = build_model(proc, cfg, tasks)
    state = load_file(str(d / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise MtrsUserError(
            f"{d / 'model.safetensors'}: weights do not fit the config "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    model.eval()
    tensors = load_file(str(d / "catalog.safetensors"))
    catalog = _read_part(d / "catalog.json", lambda doc: Catalog.load(doc, tensors))
    metrics = json.loads((d / "metrics.json").read_text("utf-8"))
    return LoadedModel(d, cfg, proc, model, tasks, catalog, metrics)


__all__ = ["LoadedModel", "config_to_dict", "load_model", "save_job"]
