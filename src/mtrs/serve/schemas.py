"""Request and response bodies of the service; every model rejects unknown fields."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, StrictStr

MAX_K = 1000
MAX_ITEMS = 10_000
MAX_ID_LENGTH = 256
MAX_KEYS = 100


def _id(value: Any) -> str:
    """An id: a string (1 to 256 characters) or an integer, as text."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("an id is a string or an integer")
    text = str(value)
    if not 1 <= len(text) <= MAX_ID_LENGTH:
        raise ValueError(f"an id has 1 to {MAX_ID_LENGTH} characters")
    _check_unicode(text)
    return text


def _check_unicode(text: str) -> None:
    """JSON allows lone surrogates (``"\\ud800"``); text the service keeps or echoes must not."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from None


def _context_value(value: Any) -> Any:
    """A context value: text, a finite number, or a list of texts (a multi-hot feature)."""
    if isinstance(value, str) and len(value) <= MAX_ID_LENGTH:
        _check_unicode(value)
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            if math.isfinite(float(value)):
                return value
        except OverflowError:
            pass
        raise ValueError("a number must be finite")
    if (
        isinstance(value, list)
        and len(value) <= MAX_KEYS
        and all(isinstance(v, str) and len(v) <= MAX_ID_LENGTH for v in value)
    ):
        for v in value:
            _check_unicode(v)
        return value
    raise ValueError(
        f"a context value is text (at most {MAX_ID_LENGTH} characters), a finite number "
        "or a list of texts"
    )


Id = Annotated[str, BeforeValidator(_id), Field(description="A string or an integer.")]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Weight = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
ContextValue = Annotated[Any, BeforeValidator(_context_value)]
Context = Annotated[dict[str, ContextValue], Field(max_length=MAX_KEYS)]
ItemIds = Annotated[list[Id], Field(min_length=1, max_length=MAX_ITEMS)]


class Strict(BaseModel):
    """Base: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid")


class MergeIn(Strict):
    """How the task lists are merged (defaults: the model's ``[recommend]``)."""

    strategy: Literal["weighted_sum", "weighted_product", "rrf"] | None = None
    weights: Annotated[dict[str, Weight], Field(max_length=MAX_KEYS)] | None = Field(
        default=None, description="Task → weight (finite, >= 0, not all 0)."
    )


class RecommendIn(Strict):
    """``POST /v1/recommend``."""

    user_id: Id
    k: Annotated[StrictInt, Field(ge=1, le=MAX_K)] | None = None
    merge: MergeIn | None = None
    candidates: ItemIds | None = Field(
        default=None, description="Item ids to rank (default: every item, less seen ones)."
    )
    exclude_seen: StrictBool = True
    context: Context | None = Field(
        default=None, description="Context feature → value, over the default context."
    )


class ScoreIn(Strict):
    """``POST /v1/score``."""

    user_id: Id
    items: ItemIds
    context: Context | None = None


class EventIn(Strict):
    """``POST /v1/events``."""

    user_id: Id
    item_id: Id
    timestamp: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] | None = None
    labels: Annotated[dict[str, FiniteFloat], Field(max_length=MAX_KEYS)] | None = Field(
        default=None, description="Data columns of the event, e.g. {click: 1}."
    )


class ReloadIn(Strict):
    """``POST /v1/admin/reload``."""

    model_dir: Annotated[StrictStr, Field(min_length=1, max_length=4096)]


class ItemOut(Strict):
    """One list entry: ``score`` from the model, or ``popularity`` in the fallback."""

    item: str
    score: float | None = None
    popularity: float | None = None
    title: str | None = None
    display: dict[str, Any] = Field(default_factory=dict)


class MergeOut(Strict):
    """The merge that made the merged list (``popularity`` in the fallback)."""

    strategy: str
    weights: dict[str, float]


class RecommendOut(Strict):
    """Lists per task, the merged list and the predicted profile."""

    user_id: str
    model_id: str
    fallback: bool = Field(description="True: an unknown user, popularity lists.")
    known_user: bool = Field(description="Whether the model's catalog has the user.")
    served_events: int = Field(description="Events posted for the user and folded in.")
    lists: dict[str, list[ItemOut]]
    merged: list[ItemOut]
    merge: MergeOut
    profile: dict[str, float | dict[str, float]]
    server_ms: float


class ScoreOut(Strict):
    """Per-task predictions of the requested items, in request order."""

    user_id: str
    model_id: str
    items: list[str]
    scores: dict[str, list[float] | list[dict[str, float]]] = Field(
        description="Task → one value per item (multiclass: class → probability)."
    )
    profile: dict[str, float | dict[str, float]]
    server_ms: float


class EventOut(Strict):
    """What an event changed."""

    user_id: str
    item_id: str
    known_item: bool = Field(description="Whether the current model knows the item.")
    entered_history: dict[str, bool] = Field(description="History feature → the event counts.")
    served_events: int


class TaskOut(Strict):
    """A task (or a funnel's joint task)."""

    name: str
    type: str
    scope: str
    has_list: bool
    joint_of: list[str] | None = None


class ModelOut(Strict):
    """``GET /v1/model``."""

    model_id: str
    directory: str
    backend: str
    architecture: str
    loaded_at: str
    tasks: list[TaskOut]
    context_features: list[str]
    history_features: list[str]
    num_items: int
    num_users: int
    metrics: dict[str, Any]


class ReloadOut(Strict):
    """``POST /v1/admin/reload``."""

    model_id: str
    previous_model_id: str | None
    directory: str
    loaded_at: str


class UsersOut(Strict):
    """``GET /v1/users``: some users of the model's catalog (for pickers such as the page)."""

    user_ids: list[str]
    total: int = Field(description="Users in the catalog.")


class StatusOut(Strict):
    """``/healthz`` and ``/readyz``."""

    status: str
    model_id: str | None = None


class ErrorOut(Strict):
    """Every error: a message, and the request field at fault where there is one."""

    error: str
    field: str | None = None
