"""Split scoring: item side once per catalog, user side once per request, the rest per item.

:class:`SplitScorer` gives the event tasks' predictions of one user (and context) against N
candidate items with the model's own modules and weights — the values of
``tasks.predict(model(batch, user_tasks=False).logits)`` on the assembled rows — but each
item's embedding work is done once per catalog (:meth:`SplitScorer.item_side`, cached by the
:class:`~mtrs.recommend.recommender.Recommender`), the user's once per request
(:meth:`SplitScorer.user_sides`: user and context fields, pooled or encoded histories, the
attention folded into one matrix), and per candidate only target attention, the dot
interactions and the architecture (:meth:`SplitScorer.forward`).

Where the architecture's layers that read the input are affine maps of it (an MLP bottom,
experts and gates; not a Transformer bottom), those maps are folded into the sides
(:mod:`mtrs.layers.folded`): the item side caches each item's first-layer pre-activations
instead of its input row, the user side adds its own, and per candidate only the columns
that mix the two sides go through the first layers' weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from mtrs.data.batch import Batch
from mtrs.layers.folded import FoldedInput, InputMaps
from mtrs.layers.split_embedding import SplitEmbedding
from mtrs.model import HardParallelModel, MultiTaskModel
from mtrs.tasks.taskset import TaskSet

# Hard-parallel models have one embedding per task: their sides' keys carry the part's index.
PART_SEPARATOR = ":"
# The folded item side may take this much memory where it is wider than the input rows.
FOLD_BUDGET_BYTES = 512 * 2**20


@runtime_checkable
class SplitPredictor(Protocol):
    """A scoring backend that computes the item side, the user side and the candidates apart.

    :class:`SplitScorer` (torch) and :class:`mtrs.export.onnx.OnnxModel` (onnxruntime) are
    two; a :class:`~mtrs.recommend.recommender.Recommender` uses one when it has it.
    """

    def item_side(self, items: Batch, catalog_rows: int | None = None) -> dict[str, Tensor]:
        """Item rows (a chunk of ``catalog_rows`` rows in all) → their named tensors
        (first axis: the rows)."""
        ...

    def user_sides(self, users: Batch) -> list[dict[str, Tensor]]:
        """Assembled rows (user, context), one per user → each row's named tensors."""
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


@dataclass
class _PartMaps:
    """A part's first layers, their parameters, and the maps built at ``versions``."""

    layers: list[nn.Module]
    params: list[nn.Parameter]
    versions: tuple[int, ...] = ()
    maps: InputMaps | None = None


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
        self.fold_budget_bytes = FOLD_BUDGET_BYTES
        # Per part: its first layers and their parameters, listed once (the layers never
        # change; only their weights may, which the parameters' version counters show), and
        # the maps built at those versions.
        self._maps: dict[int, _PartMaps] = {}

    def _key(self, part: int, name: str) -> str:
        return f"{part}{PART_SEPARATOR}{name}" if self.prefixed else name

    def _of(self, part: int, side: dict[str, Tensor]) -> dict[str, Tensor]:
        if not self.prefixed:
            return side
        head = f"{part}{PART_SEPARATOR}"
        return {k[len(head) :]: v for k, v in side.items() if k.startswith(head)}

    def input_maps(self, part: int) -> InputMaps | None:
        """The part's first layers on the input as one map (None: it cannot be folded).

        Built once and rebuilt only when one of those layers' weights changed in place
        (their version counters), not on every chunk and request.
        """
        entry = self._maps.get(part)
        if entry is None:
            model = self.models[part]
            assert isinstance(model, MultiTaskModel)
            layers = model.arch.input_layers(model.event_tasks) or []
            params = [p for layer in layers for p in layer.parameters()]
            entry = self._maps[part] = _PartMaps(layers, params)
        if not entry.layers:
            return None
        versions = tuple(p._version for p in entry.params)
        if entry.maps is None or entry.versions != versions:
            entry.versions, entry.maps = versions, InputMaps.of(entry.layers)
        return entry.maps

    def folds(self, maps: InputMaps, rows: int) -> bool:
        """Whether an item side of ``rows`` rows caches pre-activations (P values per row)
        rather than input rows (d values): when that is no wider, or fits the budget."""
        width, size = maps.width, maps.weight.element_size()
        return width <= maps.weight.shape[0] or rows * width * size <= self.fold_budget_bytes

    def item_side(self, items: Batch, catalog_rows: int | None = None) -> dict[str, Tensor]:
        """Every part's item side of these item rows (``catalog_rows`` in the whole
        catalogue, default these: what decides whether the side is folded)."""
        rows = len(items) if catalog_rows is None else catalog_rows
        out: dict[str, Tensor] = {}
        for i, split in enumerate(self.splits):
            assert isinstance(split, SplitEmbedding)
            side = split.item_side(items)
            maps = self.input_maps(i)
            if maps is not None and self.folds(maps, rows):
                side["pre"] = torch.addmm(maps.bias, side.pop("x"), maps.weight)
            out.update({self._key(i, k): v for k, v in side.items()})
        return out

    def user_sides(self, users: Batch) -> list[dict[str, Tensor]]:
        """Every part's user side of each assembled row of ``users``, in one pass."""
        out: list[dict[str, Tensor]] = [{} for _ in range(len(users))]
        for i, split in enumerate(self.splits):
            assert isinstance(split, SplitEmbedding)
            sides = split.user_sides(users)
            maps = self.input_maps(i)
            if maps is not None:
                pre = torch.cat([s["x"] for s in sides]) @ maps.weight
                for b, side in enumerate(sides):
                    side["pre"] = pre[b : b + 1]
            for whole, side in zip(out, sides, strict=True):
                whole.update({self._key(i, k): v for k, v in side.items()})
        return out

    def forward(self, items: dict[str, Tensor], user: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.candidates_many(items, [user], [self._rows(items)])

    def _rows(self, items: dict[str, Tensor]) -> int:
        return int(next(iter(items.values())).shape[0]) if items else 0

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
            users: One user side per user (:meth:`user_sides`).
            spans: Each user's number of rows.

        Returns:
            Predictions of every row, in row order (each user's values are those of
            :meth:`candidates` on its own rows).
        """
        logits: dict[str, Tensor] = {}
        for i, (model, split) in enumerate(zip(self.models, self.splits, strict=True)):
            assert isinstance(model, MultiTaskModel) and isinstance(split, SplitEmbedding)
            part, sides = self._of(i, items), [self._of(i, u) for u in users]
            maps = self.input_maps(i) if "pre" in part else None
            if maps is None:
                logits.update(model.event_logits(split.forward_many(part, sides, spans)))
                continue
            if len(split.candidate_cols):
                late = maps.weight.index_select(0, split.candidate_cols)  # [c, P]
                pre = torch.addmm(part["pre"], split.candidate_values(part, sides, spans), late)
                pre = split.plus_user(pre, sides, spans, "pre", inplace=True)
            else:  # the item side's rows may be views of the cache: a new tensor
                pre = split.plus_user(part["pre"], sides, spans, "pre", inplace=False)
            logits.update(model.event_logits(FoldedInput(pre, maps.slots)))
        return self.tasks.predict(logits)
