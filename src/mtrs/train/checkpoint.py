"""Training checkpoints: everything an interrupted run needs to continue exactly where it was.

A checkpoint is one directory ``DIR/checkpoints/step-NNNNNNNNN/`` (``NNNNNNNNN``: optimizer
steps taken) holding

* ``state.safetensors`` — the model's weights, the best state kept so far (early stopping),
  the weighting's state and every optimizer state tensor;
* ``state.json`` — the optimizer's parameter groups, the loop's position (epoch, step within
  it, running loss sums, epoch history, early-stopping counters) and the config's digest;
* ``rng-rank<R>.safetensors`` / ``rng-rank<R>.json`` — the random-number states of each
  process (torch CPU and CUDA; NumPy and Python's ``random``) and its share of the epoch's
  running loss sums, one pair per rank.

Tensors go to safetensors and everything else to JSON, never pickle, like a model directory.
A checkpoint is written into a hidden ``.tmp-*`` sibling, flushed to disk, and renamed into
place, so a run killed while writing leaves no directory that :meth:`Checkpoints.latest`
would return; the next save removes such leftovers and all but the newest ``keep``
checkpoints. The directory carries a marker file (:data:`MARKER`) so that ``--out`` checks
recognise it as mtrs's own (:func:`mtrs.outdir.check_out`).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from mtrs.errors import MtrsUserError
from mtrs.outdir import CHECKPOINT_MARKER as MARKER
from mtrs.outdir import fsync, fsync_tree

FORMAT = "mtrs.checkpoint/1"
# Settings that change neither the training nor its result: a resume may differ in them.
RESUMABLE_CHANGES = ("progress", "checkpoint_every", "keep_checkpoints", "threads")
_PREFIX = "step-"
_TEMP = ".tmp-"


@dataclass
class LoopState:
    """Where the training loop stands: what :meth:`Trainer.fit` needs to continue.

    Attributes:
        epoch: The epoch in progress (1-based).
        step: Optimizer steps already taken within that epoch.
        steps_done: Optimizer steps taken in the whole run.
        sums: Running per-task loss sums of the epoch in progress.
        epoch_seconds: Wall time already spent on the epoch in progress.
        history: The finished epochs' records (as dictionaries).
        best_value: The monitor's best value so far (higher is better), ``-inf`` before any.
        best_epoch: The epoch of that value (0 before any).
        best_valid: That epoch's validation metrics.
        bad_epochs: Epochs since the last improvement.
        done: Training has ended (the last epoch ran, or early stopping fired).
    """

    epoch: int = 1
    step: int = 0
    steps_done: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    epoch_seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_value: float = -float("inf")
    best_epoch: int = 0
    best_valid: dict[str, dict[str, float]] = field(default_factory=dict)
    bad_epochs: int = 0
    done: bool = False


@dataclass
class Snapshot:
    """A checkpoint's contents, as written or as read back."""

    loop: LoopState
    model: dict[str, Tensor]
    best: dict[str, Tensor] | None
    weighting: dict[str, Tensor]
    optimizer: dict[str, Any]


def resume_identity(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a resolved config (JSON-ready) that a resumed run must share."""
    train = {k: v for k, v in config.get("train", {}).items() if k not in RESUMABLE_CHANGES}
    return {**config, "train": train}


def config_digest(config: dict[str, Any]) -> str:
    """sha256 of a resolved config (as a JSON-ready dictionary), key order ignored."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _first_difference(a: Any, b: Any, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in a or key not in b:
                return where
            found = _first_difference(a[key], b[key], where)
            if found:
                return found
        return None
    return None if a == b else (path or "(the whole config)")


def rng_state() -> tuple[dict[str, Tensor], dict[str, Any]]:
    """This process's random-number states: tensors (torch) and JSON (NumPy, Python)."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda/{i}"] = s
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    doc = {
        "numpy": [kind, [int(k) for k in keys], int(pos), int(has_gauss), float(gauss)],
        "python": [py_version, list(py_state), py_gauss],
    }
    return tensors, doc


def set_rng_state(tensors: dict[str, Tensor], doc: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("cuda/")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    kind, keys, pos, has_gauss, gauss = doc["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, state, py_gauss = doc["python"]
    random.setstate((version, tuple(state), py_gauss))


def _optimizer_parts(state: dict[str, Any]) -> tuple[dict[str, Tensor], list[dict[str, Any]]]:
    tensors: dict[str, Tensor] = {}
    for pid, entries in state["state"].items():
        for name, value in entries.items():
            t = value if isinstance(value, Tensor) else torch.tensor(value)
            tensors[f"{pid}/{name}"] = t
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
              for g in state["param_groups"]]  # fmt: skip
    return tensors, groups


def _optimizer_state(tensors: dict[str, Tensor], groups: list[dict[str, Any]]) -> dict[str, Any]:
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        pid, name = key.split("/", 1)
        state.setdefault(int(pid), {})[name] = value
    fixed = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in groups]
    return {"state": state, "param_groups": fixed}


def _cpu(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {f"{prefix}{k}": v.detach().cpu().contiguous().clone() for k, v in state.items()}


def _take(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


class Checkpoints:
    """The checkpoints of one run, in ``DIR/checkpoints``.

    Args:
        directory: ``DIR/checkpoints``.
        config: The run's resolved config (JSON-ready); a checkpoint of another config is
            refused on resume.
        keep: How many complete checkpoints to keep (the newest).
        rank: This process's rank (each rank writes its own random-number states).
        world: Number of processes; rank 0 writes everything else.
        barrier: Synchronises the ranks (only called when ``world > 1``).
    """

    def __init__(
        self,
        directory: str | Path,
        config: dict[str, Any],
        keep: int = 2,
        rank: int = 0,
        world: int = 1,
        barrier: Callable[[], None] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.config = resume_identity(config)
        self.digest = config_digest(self.config)
        self.keep = keep
        self.rank, self.world = rank, world
        self._barrier = barrier

    # ------------------------------------------------------------------ reading

    def complete(self) -> list[Path]:
        """The complete checkpoints, oldest first (temporaries of killed writes excluded)."""
        if not self.directory.is_dir():
            return []
        found = [
            p
            for p in self.directory.iterdir()
            if p.is_dir() and p.name.startswith(_PREFIX) and (p / "state.json").is_file()
        ]
        return sorted(found, key=lambda p: p.name)

    def latest(self) -> Path | None:
        """The newest complete checkpoint, or None."""
        found = self.complete()
        return found[-1] if found else None

    def load(self, path: Path) -> Snapshot:
        """Read a checkpoint and restore this rank's random-number states.

        Raises:
            MtrsUserError: The checkpoint belongs to another config, another number of
                processes, or another format.
        """
        doc = json.loads((path / "state.json").read_text(encoding="utf-8"))
        if doc.get("format") != FORMAT:
            raise MtrsUserError(f"{path}: not an mtrs checkpoint of format {FORMAT}")
        if doc["config_sha256"] != self.digest:
            where = _first_difference(doc.get("config", {}), self.config)
            raise MtrsUserError(
                f"{path}: written by a different config (field {where} differs); "
                "resume with the config that started the run, or pass --overwrite to start afresh"
            )
        if doc["world"] != self.world:
            raise MtrsUserError(
                f"{path}: written by {doc['world']} process(es), resumed with {self.world}; "
                "resume with the same number of processes"
            )
        tensors = load_file(str(path / "state.safetensors"))
        rng_t = load_file(str(path / f"rng-rank{self.rank}.safetensors"))
        rng_doc = json.loads((path / f"rng-rank{self.rank}.json").read_text(encoding="utf-8"))
        set_rng_state(rng_t, rng_doc)
        best = _take(tensors, "best/") if doc["has_best"] else None
        loop = LoopState(**doc["loop"])
        loop.sums = dict(rng_doc["sums"])
        return Snapshot(
            loop,
            _take(tensors, "model/"),
            best,
            _take(tensors, "weighting/"),
            _optimizer_state(_take(tensors, "optim/"), doc["param_groups"]),
        )

    # ------------------------------------------------------------------ writing

    def _sync(self) -> None:
        if self.world > 1 and self._barrier is not None:
            self._barrier()

    def save(self, snap: Snapshot) -> Path:
        """Write a checkpoint atomically and drop the older ones beyond ``keep``.

        Every rank calls this; each writes its random-number states into the temporary
        directory, rank 0 the rest and then renames it into place.
        """
        name = f"{_PREFIX}{snap.loop.steps_done:09d}"
        final = self.directory / name
        tmp = self.directory / f"{_TEMP}{name}"
        if self.rank == 0:
            self.directory.mkdir(parents=True, exist_ok=True)
            marker = self.directory / MARKER
            if not marker.exists():
                marker.write_text(json.dumps({"format": FORMAT}), encoding="utf-8")
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
        self._sync()
        rng_t, rng_doc = rng_state()
        # Each rank's own share of the epoch's running loss sums (summed at the epoch's end).
        rng_doc["sums"] = snap.loop.sums
        save_file(rng_t, str(tmp / f"rng-rank{self.rank}.safetensors"))
        (tmp / f"rng-rank{self.rank}.json").write_text(json.dumps(rng_doc), encoding="utf-8")
        self._sync()
        if self.rank == 0:
            opt_t, groups = _optimizer_parts(snap.optimizer)
            tensors = {
                **_cpu(snap.model, "model/"),
                **_cpu(snap.best or {}, "best/"),
                **_cpu(snap.weighting, "weighting/"),
                **_cpu(opt_t, "optim/"),
            }
            save_file(tensors, str(tmp / "state.safetensors"))
            doc = {
                "format": FORMAT,
                "config_sha256": self.digest,
                "config": self.config,
                "world": self.world,
                "has_best": snap.best is not None,
                "param_groups": groups,
                "loop": snap.loop.__dict__,
            }
            # NaN metrics (undefined on a split) and -inf survive: Python's JSON reads them back.
            (tmp / "state.json").write_text(json.dumps(doc), encoding="utf-8")
            fsync_tree(tmp)
            if final.exists():
                shutil.rmtree(final)
            os.rename(tmp, final)
            fsync(self.directory)
            self._prune()
        self._sync()
        return final

    def _prune(self) -> None:
        for p in self.directory.iterdir():
            if p.is_dir() and p.name.startswith(_TEMP):
                shutil.rmtree(p, ignore_errors=True)
        for old in self.complete()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)

    def clear(self) -> None:
        """Remove every checkpoint of this directory (a run started afresh)."""
        if self.rank == 0 and self.directory.is_dir():
            shutil.rmtree(self.directory)
        self._sync()


def weighting_state(weighting: nn.Module) -> dict[str, Tensor]:
    """The weighting's tensors (parameters, buffers and extra state) for a checkpoint."""
    return {k: v for k, v in weighting.state_dict().items() if isinstance(v, Tensor)}
