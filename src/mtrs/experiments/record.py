"""One trained run of an experiment: its settings, metrics, size, time and diagnostics."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RunRecord:
    """One trained model's numbers.

    Attributes:
        metrics: Task (or ranked list) → metric → value on the test split.
        seconds: Wall time of the whole run (training, test scoring, ranking).
        train_seconds: Wall time of training alone (with validation).
        cpu_seconds: Process CPU time of the run (all threads), which other jobs on the
            machine do not inflate the way they inflate wall time.
        weights, grad_cosine, gates: Diagnostics (task weights and gradient cosines per
            epoch, mean gate weight per task and expert on validation), when recorded.
        notes: What the experiment's scorer recorded besides metrics (e.g. a fitted merge).
    """

    architecture: str
    lambda_shared: float
    seed: int
    metrics: dict[str, dict[str, float]]
    num_parameters: int
    seconds: float
    train_seconds: float
    cpu_seconds: float
    best_epoch: int
    weights: list[dict[str, float]] = field(default_factory=list)
    grad_cosine: list[dict[str, float]] = field(default_factory=list)
    gates: dict[str, list[float]] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    def label(self, multiple_lambdas: bool) -> str:
        """Row label: the architecture, with λ when several λ values were run."""
        if multiple_lambdas:
            return f"{self.architecture} λ={self.lambda_shared:g}"
        return self.architecture

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)
