"""Split scoring: item side once per catalog, user side once per request, the rest per item.

:class:`SplitScorer` gives the event tasks' predictions of one user (and context) against N
candidate items with the model's own modules and weights — the values of
``tasks.predict(model(batch, user_tasks=False).logits)`` on the assembled rows — but each
item's embedding work is done once per catalog (:meth:`SplitScorer.item_side`, cached by the
:class:`~mtrs.recommend.recommender.Recommender`), the user's once per request
(:meth:`SplitScorer.user_side`: user and context fields, pooled or encoded histories, the
attention folded into one matrix), and per candidate only target attention, the dot
interactions and the architecture (:meth:`SplitScorer.forward`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor, nn

from mtrs.data.batch import Batch
from mtrs.layers.split_embedding import SplitEmbedding
from mtrs.model import HardParallelModel, MultiTaskModel
from mtrs.tasks.taskset import TaskSet

# Hard-parallel models have one embedding per task: their sides' keys carry the part's index.
PART_SEPARATOR = ":"


@runtime_checkable
class SplitPredictor(Protocol):
    """A scoring backend that computes the item side, the user side and the candidates apart.

    :class:`SplitScorer` (torch) and :class:`mtrs.export.onnx.OnnxModel` (onnxruntime) are
    two; a :class:`~mtrs.recommend.recommender.Recommender` uses one when it has it.
    """

    def item_side(self, items: Batch) -> dict[str, Tensor]:
        """Item rows → their named tensors (first axis: the rows)."""
        ...

    def user_side(self, user: Batch) -> dict[str, Tensor]:
        """One assembled row (user, context) → its named tensors."""
        ...

    def candidates(self, items: dict[str, Tensor], user: dict[str, Tensor]) -> dict[str, Tensor]:
        """Rows of the item side and one user side → event-task and relation predictions."""
        ...


@runtime_checkable
class BatchedSplitPredictor(SplitPredictor, Protocol):
    """A split backend that also scores several users' candidates in one pass."""

    def candidates_many(
        self, items: dict[str, Tensor], users: list[dict[str, Tensor]], spans: list[int]
    ) -> dict[str, Tensor]:
        """Rows of the item side (``spans[i]`` rows per user, in order) → predictions."""
        ...


def _parts(model: nn.Module) -> list[MultiTaskModel]:
    if isinstance(model, HardParallelModel):
        return [p for p in model.parts.values() if isinstance(p, MultiTaskModel)]
    if isinstance(model, MultiTaskModel):
        return [model]
    raise TypeError(f"split scoring needs a MultiTaskModel, not {type(model).__name__}")


def supports_split(model: nn.Module) -> bool:
    """Whether :class:`SplitScorer` can score this model."""
    return isinstance(model, HardParallelModel | MultiTaskModel)


class SplitScorer(nn.Module):
    """The torch model's predictions, computed side by side (see the module docstring).

    Args:
        model: A ``MultiTaskModel`` or ``HardParallelModel`` (in eval mode).
        tasks: The model's tasks (predictions from logits, relations).

    Raises:
        TypeError: Another kind of model.
    """

    def __init__(self, model: nn.Module, tasks: TaskSet) -> None:
        super().__init__()
        self.models = nn.ModuleList(p for p in _parts(model) if p.event_tasks)
        self.splits = nn.ModuleList(SplitEmbedding(m.embedding) for m in self.models)  # type: ignore[arg-type]
        self.tasks = tasks
        self.prefixed = len(self.models) > 1 or isinstance(model, HardParallelModel)

    def _key(self, part: int, name: str) -> str:
        return f"{part}{PART_SEPARATOR}{name}" if self.prefixed else name

    def _of(self, part: int, side: dict[str, Tensor]) -> dict[str, Tensor]:
        if not self.prefixed:
            return side
        head = f"{part}{PART_SEPARATOR}"
        return {k[len(head) :]: v for k, v in side.items() if k.startswith(head)}

    def item_side(self, items: Batch) -> dict[str, Tensor]:
        """Every part's item side of these item rows."""
        out: dict[str, Tensor] = {}
        for i, split in enumerate(self.splits):
            assert isinstance(split, SplitEmbedding)
            out.update({self._key(i, k): v for k, v in split.item_side(items).items()})
        return out

    def user_side(self, user: Batch) -> dict[str, Tensor]:
        """Every part's user side of one assembled row."""
        out: dict[str, Tensor] = {}
        for i, split in enumerate(self.splits):
            assert isinstance(split, SplitEmbedding)
            out.update({self._key(i, k): v for k, v in split.user_side(user).items()})
        return out

    def forward(self, items: dict[str, Tensor], user: dict[str, Tensor]) -> dict[str, Tensor]:
        logits: dict[str, Tensor] = {}
        for i, (model, split) in enumerate(zip(self.models, self.splits, strict=True)):
            assert isinstance(model, MultiTaskModel)
            x = split(self._of(i, items), self._of(i, user))
            logits.update(model.event_logits(x))
        return self.tasks.predict(logits)

    def candidates(self, items: dict[str, Tensor], user: dict[str, Tensor]) -> dict[str, Tensor]:
        """Event-task and relation predictions of the candidates (rows of the item side)."""
        out: dict[str, Tensor] = self(items, user)
        return out

    def candidates_many(
        self, items: dict[str, Tensor], users: list[dict[str, Tensor]], spans: list[int]
    ) -> dict[str, Tensor]:
        """:meth:`candidates` of several users in one pass through the layers.

        Args:
            items: The item side of every row: ``spans[0]`` rows of the first user's
                candidates, then ``spans[1]`` of the second's, and so on.
            users: One user side per user (:meth:`user_side`).
            spans: Each user's number of rows.

        Returns:
            Predictions of every row, in row order (each user's values are those of
            :meth:`candidates` on its own rows).
        """
        logits: dict[str, Tensor] = {}
        for i, (model, split) in enumerate(zip(self.models, self.splits, strict=True)):
            assert isinstance(model, MultiTaskModel) and isinstance(split, SplitEmbedding)
            x = split.forward_many(self._of(i, items), [self._of(i, u) for u in users], spans)
            logits.update(model.event_logits(x))
        return self.tasks.predict(logits)
