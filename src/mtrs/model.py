"""The multi-task model: feature embedding → architecture → one head per task."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from mtrs.arch import ArchContext, Architecture, get_architecture
from mtrs.config.models import JobConfig
from mtrs.data.batch import Batch
from mtrs.data.processor import FittedProcessor
from mtrs.errors import MtrsUserError
from mtrs.layers.embedding import FeatureEmbedding
from mtrs.layers.folded import Features
from mtrs.tasks.objectives import ObjectiveInput, build_objective
from mtrs.tasks.task import Task
from mtrs.tasks.taskset import TaskSet


@dataclass
class ModelOutput:
    """Logits per task, the auxiliary shared loss (if λ > 0) and gate weights (if any)."""

    logits: dict[str, Tensor]
    shared_loss: Tensor | None = None
    gates: dict[str, Tensor] = field(default_factory=dict)


class MultiTaskModel(nn.Module):
    """Embedding, one architecture and per-task linear heads that output logits.

    Event tasks read the full input; user-scoped tasks (profiling) read a second pass of the
    same network in which the item and context fields are masked, so their heads see only the
    user-side representation.

    Args:
        proc: The fitted processor (feature layout, vocabulary sizes).
        cfg: The job config.
        tasks: The tasks this model predicts (one head each).
        arch_name: Overrides ``cfg.model.architecture`` (the hard-parallel builder uses it).
    """

    def __init__(
        self,
        proc: FittedProcessor,
        cfg: JobConfig,
        tasks: list[Task],
        arch_name: str | None = None,
    ) -> None:
        super().__init__()
        self.embedding = FeatureEmbedding(proc, cfg.model)
        arch_cls = get_architecture(arch_name or cfg.model.architecture)
        names = tuple(t.name for t in tasks)
        ctx = ArchContext(self.embedding.layout, names, cfg.model)
        self.arch: Architecture = arch_cls(ctx)
        self.heads = nn.ModuleDict(
            {t.name: nn.Linear(self.arch.out_dims[t.name], t.output_dim) for t in tasks}
        )
        self.event_tasks = [t.name for t in tasks if not t.user_scoped]
        self.user_tasks = [t.name for t in tasks if t.user_scoped]
        self.lambda_shared = cfg.model.lambda_shared
        self.objective = (
            build_objective(
                cfg.model.shared_objective,
                self.embedding.layout,
                self.arch.shared_dim,
                tasks,
            )
            if self.lambda_shared > 0
            else None
        )

    def forward(
        self, batch: Batch, user_tasks: bool = True, event_tasks: bool = True
    ) -> ModelOutput:
        """Logits of every task; ``user_tasks=False`` skips the user-side pass (serving lists),
        ``event_tasks=False`` the full-row pass (serving profiles; not while training)."""
        logits: dict[str, Tensor] = {}
        gates: dict[str, Tensor] = {}
        shared_loss = None
        objective = self.objective if self.training else None
        # Each pass runs only its own tasks' layers: the full rows feed the event tasks, the
        # user side the user-scoped ones (a model of user tasks only skips the first pass
        # unless its shared objective needs it).
        if (event_tasks and self.event_tasks) or objective is not None:
            x = self.embedding(batch)
            out = self.arch(x, tasks=self.event_tasks)
            logits = {t: self.heads[t](out.tasks[t]) for t in self.event_tasks}
            gates = dict(out.gates)
            if objective is not None:
                shared_loss = objective(ObjectiveInput(x, out, self.arch, batch))
        if self.user_tasks and user_tasks:
            xu = self.embedding(batch, user_only=True)
            ou = self.arch(xu, user_only=True, tasks=self.user_tasks)
            for t in self.user_tasks:
                logits[t] = self.heads[t](ou.tasks[t])
                if t in ou.gates:
                    gates[t] = ou.gates[t]
        return ModelOutput(logits, shared_loss, gates)

    def event_logits(self, x: Features) -> dict[str, Tensor]:
        """The event tasks' logits of an embedded input (what :meth:`forward` gives them),
        or of its :class:`~mtrs.layers.folded.FoldedInput` (split scoring)."""
        if not self.event_tasks:
            return {}
        out = self.arch(x, tasks=self.event_tasks)
        return {t: self.heads[t](out.tasks[t]) for t in self.event_tasks}

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters that more than one task's loss reaches (embeddings and shared layers)."""
        return list(self.embedding.parameters()) + self.arch.shared_parameters()


class HardParallelModel(nn.Module):
    """Hard parallel: one complete model per task, nothing shared; outputs gathered by name."""

    def __init__(self, proc: FittedProcessor, cfg: JobConfig, tasks: TaskSet) -> None:
        super().__init__()
        self.parts = nn.ModuleDict(
            {t.name: MultiTaskModel(proc, cfg, [t], cfg.model.architecture) for t in tasks}
        )

    def forward(
        self, batch: Batch, user_tasks: bool = True, event_tasks: bool = True
    ) -> ModelOutput:
        """Each task's own model; ``user_tasks=False`` skips profiling tasks (serving lists),
        ``event_tasks=False`` the event tasks (serving profiles)."""
        logits: dict[str, Tensor] = {}
        losses: list[Tensor] = []
        for part in self.parts.values():
            if (not user_tasks and not part.event_tasks) or (
                not event_tasks and not part.user_tasks
            ):
                continue
            o = part(batch, user_tasks, event_tasks)
            logits.update(o.logits)
            if o.shared_loss is not None:
                losses.append(o.shared_loss)
        return ModelOutput(logits, torch.stack(losses).sum() if losses else None)

    def shared_parameters(self) -> list[nn.Parameter]:
        return []


# fp32 weights, their gradients and Adam's two moments: 16 bytes per embedding parameter.
TRAIN_BYTES_PER_PARAMETER = 16


def available_memory_bytes() -> int | None:
    """Memory the system can still give (Linux ``MemAvailable``), None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_embeddings_fit(proc: FittedProcessor, cfg: JobConfig, copies: int = 1) -> None:
    """Estimate the embedding tables' training memory before allocating them.

    Args:
        proc: The fitted processor (vocabulary sizes, hash buckets).
        cfg: The job config (embedding widths).
        copies: How many full embedding sets the architecture holds (one per task when
            hard parallel).

    Raises:
        MtrsUserError: The tables would need more than the memory available, naming the
            largest feature and how to shrink it.
    """
    available = available_memory_bytes()
    if available is None:
        return
    sizes = {
        f.name: proc.vocab_size(f.name) * (f.embedding_dim or cfg.model.embedding_dim)
        for f in (*proc.categorical, *proc.multi_hot)
    }
    need = sum(sizes.values()) * TRAIN_BYTES_PER_PARAMETER * copies
    if sizes and need > available:
        big = max(sizes, key=sizes.__getitem__)
        raise MtrsUserError(
            f"features.{big}: the embedding tables need about {need / 2**30:,.1f} GiB to train "
            f"({proc.vocab_size(big):,} rows for '{big}'), more than the "
            f"{available / 2**30:,.1f} GiB available; lower its hash_buckets or embedding_dim, "
            "or raise min_count"
        )


def build_model(proc: FittedProcessor, cfg: JobConfig, tasks: TaskSet) -> nn.Module:
    """The model the config asks for (hard-parallel architectures get one model per task).

    Raises:
        MtrsUserError: The embedding tables would not fit in memory.
    """
    cls = get_architecture(cfg.model.architecture)
    check_embeddings_fit(proc, cfg, len(list(tasks)) if cls.hard_parallel else 1)
    if cls.hard_parallel:
        return HardParallelModel(proc, cfg, tasks)
    return MultiTaskModel(proc, cfg, list(tasks))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
