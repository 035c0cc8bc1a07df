"""The FastAPI application of ``mtrs serve``: recommend, score, events, model, reload, metrics.

Every request takes one reference to the served model at its start (:class:`ModelHolder`), so
a reload never changes the model under a request. A user's mistake answers 4xx with a JSON
body ``{"error": message, "field": the request field at fault}``; a 5xx is a bug.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from mtrs.errors import MtrsUserError

try:  # the serve extra
    from fastapi import Depends, FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ModuleNotFoundError as err:
    raise MtrsUserError(f"mtrs serve needs {err.name}: pip install 'mtrs[serve]'") from None
from mtrs.recommend.recommender import Recommender, RecommendRequest
from mtrs.serve.batcher import DEFAULT_MAX_BATCH, RecommendBatcher
from mtrs.serve.events import Event, EventStore, enters_history, serving_input
from mtrs.serve.metrics import CONTENT_TYPE_LATEST, ServiceMetrics
from mtrs.serve.schemas import (
    MAX_K,
    ErrorOut,
    EventIn,
    EventOut,
    MergeIn,
    ModelOut,
    RecommendIn,
    RecommendOut,
    ReloadIn,
    ReloadOut,
    ScoreIn,
    ScoreOut,
    StatusOut,
    TaskOut,
    UsersOut,
)
from mtrs.serve.state import ModelHolder, NotReady, Served, load_served
from mtrs.version import __version__

MAX_BODY_BYTES = 1 << 20
PAGE = Path(__file__).with_name("static") / "index.html"
ADMIN_TOKEN_ENV = "MTRS_ADMIN_TOKEN"
# FastAPI's answer to a body json.loads fails on other than by a syntax error.
UNPARSED = "There was an error parsing the body"
UNPARSED_MESSAGE = (
    "could not be parsed as JSON (nested too deeply, or a number with too many digits)"
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ApiError(Exception):
    """A request the service refuses: status, message and the field at fault.

    Args:
        status: The HTTP status (4xx).
        message: One sentence naming what is wrong.
        field: The request field at fault, if any.
        headers: Extra response headers (e.g. ``WWW-Authenticate``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers


def _text(value: str) -> str:
    """Text that encodes as UTF-8 (a lone surrogate from the request becomes ``?``)."""
    return value.encode("utf-8", "replace").decode("utf-8")


def _error(
    status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    # Messages and fields quote the request, which may hold text JSON allows but UTF-8 does not.
    out = ErrorOut(error=_text(message), field=None if field is None else _text(field))
    body = out.model_dump()
    return JSONResponse(body, status_code=status, headers=headers)


_FIELD = re.compile(r"^([A-Za-z_][\w.\[\] ]*?): ")


def _field_of(message: str) -> str | None:
    """The field a user-error message starts with: ``"merge weights: …"`` → ``merge.weights``."""
    m = _FIELD.match(message)
    return m.group(1).replace(" ", ".") if m else None


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def _validation_response(err: RequestValidationError) -> JSONResponse:
    errors = list(err.errors())
    if not errors:
        return _error(422, "body: invalid request", "body")
    first = errors[0]
    if first.get("type") == "json_invalid":
        pos = first.get("loc", ("body", "?"))[-1]
        reason = (first.get("ctx") or {}).get("error", "invalid JSON")
        return _error(400, f"body: malformed JSON ({reason} at position {pos})", "body")
    field = _loc(tuple(first.get("loc", ())))
    if field == "body" and first.get("type") in ("model_attributes_type", "dict_type"):
        return _error(422, "body: expected a JSON object (Content-Type: application/json)", field)
    message = f"{field}: {first.get('msg', 'invalid value')}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return _error(422, message, field)


class _Guard:
    """Outermost layer: refuses bodies over the limit (413) before any parsing, and counts
    every answered request by route template and status.

    Args:
        app: The application.
        limit: The largest body accepted, in bytes.
        metrics: Where requests are counted.
        paths: The app's route templates (a path that matches none is counted as
            ``unmatched``, so random URLs do not grow the metrics).
    """

    def __init__(self, app: ASGIApp, limit: int, metrics: ServiceMetrics, paths: set[str]) -> None:
        self.app = app
        self.limit = limit
        self.metrics = metrics
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            replay = await self._read_bounded(scope, receive)
            if replay is None:
                response = _error(
                    413, f"body: larger than the limit of {self.limit:,} bytes", "body"
                )
                await response(scope, receive, send_counted)
            else:
                await self.app(scope, replay, send_counted)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or scope.get("path", "")
            endpoint = path if path in self.paths else "unmatched"
            self.metrics.observe(
                endpoint, scope.get("method", ""), status, time.perf_counter() - start
            )

    async def _read_bounded(self, scope: Scope, receive: Receive) -> Receive | None:
        """The body read whole (at most ``limit`` bytes) and replayed; None when too large."""
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    if int(value) > self.limit:
                        return None
                except ValueError:
                    return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay


def _label_columns(scorer: Recommender) -> set[str]:
    """Columns an event's labels may give: the tasks' label and condition columns, and the
    histories' filter and value columns."""
    cols: set[str] = set()
    for t in scorer.proc.cfg.tasks:
        cols.update(t.source_columns)
        cols.add(t.label_column)
    for f in scorer.proc.histories:
        cols.update(c for c in (f.history_filter, f.history_value) if c)
    return cols


def _context(scorer: Recommender, values: dict[str, Any] | None) -> Any:
    return scorer.context_row(values) if values else None


def _positions(scorer: Recommender, ids: list[str], field: str) -> np.ndarray:
    pos = scorer.catalog.item_positions(ids)
    if (pos < 0).any():
        i = int(np.argmax(pos < 0))
        raise ApiError(422, f"{field}[{i}]: unknown item id '{ids[i]}'", f"{field}[{i}]")
    return pos


def _tasks(scorer: Recommender) -> list[TaskOut]:
    tasks = [
        TaskOut(
            name=t.name,
            type=t.type,
            scope="user" if t.user_scoped else "event",
            has_list=t.name in scorer.list_tasks,
        )
        for t in scorer.tasks
    ]
    tasks += [
        TaskOut(
            name=r.name,
            type="binary",
            scope="event",
            has_list=r.name in scorer.list_tasks,
            joint_of=[r.parent.name, r.child.name],
        )
        for r in scorer.tasks.relations
    ]
    return tasks


def create_app(
    model_dir: str | Path | None,
    backend: str = "torch",
    admin_token: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    events: EventStore | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> FastAPI:
    """The service of one model directory, loaded (and verified) here, once.

    Args:
        model_dir: The model directory to serve; None starts without a model (``/readyz``
            answers 503 until ``/v1/admin/reload`` loads one).
        backend: ``torch`` or ``onnx`` (see :func:`mtrs.serve.backend.load_backend`).
        admin_token: The bearer token of the admin endpoints (default: the environment
            variable ``MTRS_ADMIN_TOKEN``); unset or empty disables them.
        max_body_bytes: Larger request bodies are refused with 413 before parsing.
        events: Where served events are kept (default: a new bounded store).
        max_batch: The most ``/v1/recommend`` requests scored in one pass (requests that
            arrive while the model is busy wait and are scored together; 1 disables it).

    Raises:
        MtrsUserError: The model directory is missing or broken, or the backend unavailable.
    """
    holder = ModelHolder(load_served(model_dir, backend) if model_dir is not None else None)
    store = events if events is not None else EventStore()
    metrics = ServiceMetrics()
    token = admin_token if admin_token is not None else os.environ.get(ADMIN_TOKEN_ENV, "")
    batcher = RecommendBatcher(max_batch)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        batcher.close()

    app = FastAPI(
        lifespan=lifespan,
        title="mtrs recommendation service",
        version=__version__,
        description=(
            "Multi-task recommendations: one list per task, merged; scores; events; reload. "
            "Errors are JSON: {error, field}."
        ),
    )
    app.state.holder = holder
    app.state.events = store
    app.state.metrics = metrics
    app.state.batcher = batcher
    errors: dict[int | str, dict[str, Any]] = {
        s: {"model": ErrorOut} for s in (400, 404, 409, 413, 422)
    }

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError) -> JSONResponse:
        return _error(err.status, err.message, err.field, err.headers)

    @app.exception_handler(MtrsUserError)
    async def _user_error(request: Request, err: MtrsUserError) -> JSONResponse:
        return _error(422, str(err), _field_of(str(err)))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        return _validation_response(err)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        if err.status_code == 400 and err.detail == UNPARSED:
            return _error(400, f"body: {UNPARSED_MESSAGE}", "body")
        return _error(err.status_code, str(err.detail), None, dict(err.headers or {}) or None)

    @app.exception_handler(NotReady)
    async def _not_ready(request: Request, err: NotReady) -> JSONResponse:
        return _error(503, "no model is loaded (POST /v1/admin/reload loads one)")

    @app.exception_handler(Exception)
    async def _bug(request: Request, err: Exception) -> JSONResponse:
        return _error(500, f"internal error ({type(err).__name__}); this is a bug in mtrs")

    def admin(request: Request) -> None:
        if not token:
            raise ApiError(
                403, f"admin endpoints are disabled: set {ADMIN_TOKEN_ENV} to enable them"
            )
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode("utf-8"), token.encode("utf-8")
        )
        if not ok:
            raise ApiError(
                401,
                "admin: missing or wrong token (Authorization: Bearer <MTRS_ADMIN_TOKEN>)",
                "Authorization",
                {"WWW-Authenticate": "Bearer"},
            )

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        """The service's web page (one static file; it calls only the JSON API)."""
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.get("/v1/users", response_model=UsersOut)
    def users(limit: Annotated[int, Query(ge=1, le=MAX_K)] = 50) -> UsersOut:
        """Some users the model knows (the first ``limit`` of its catalog), for pickers."""
        sc = holder.current().scorer
        ids = sc.catalog.user_ids
        return UsersOut(user_ids=[str(u) for u in ids[:limit]], total=len(ids))

    @app.get("/healthz", response_model=StatusOut)
    def healthz() -> StatusOut:
        """The process is alive."""
        return StatusOut(status="ok")

    @app.get("/readyz", response_model=StatusOut, responses={503: {"model": StatusOut}})
    def readyz() -> Any:
        """A model is loaded (503 otherwise)."""
        try:
            return StatusOut(status="ready", model_id=holder.current().model_id)
        except NotReady:
            return JSONResponse(StatusOut(status="not ready").model_dump(), status_code=503)

    @app.get("/metrics", response_class=Response)
    def prometheus() -> Response:
        """Prometheus text format: requests by endpoint and status, latency, reloads."""
        metrics.event_users.set(len(store))
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/model", response_model=ModelOut)
    def model() -> ModelOut:
        """The served model: architecture, tasks, metrics, id (sha256 of manifest.json)."""
        served = holder.current()
        sc = served.scorer
        return ModelOut(
            model_id=served.model_id,
            directory=str(served.directory),
            backend=served.backend,
            architecture=sc.proc.cfg.model.architecture,
            loaded_at=served.loaded_at.isoformat(),
            tasks=_tasks(sc),
            context_features=list(sc.context_features()),
            history_features=[f.name for f in sc.proc.histories],
            num_items=len(sc.catalog.item_ids),
            num_users=len(sc.catalog.user_ids),
            metrics=served.metrics,
        )

    @app.post("/v1/recommend", response_model=RecommendOut, responses=errors)
    async def recommend(body: RecommendIn) -> Response:
        """Top-K lists per task, the merged list and the predicted profile of one user."""
        start = time.perf_counter()
        served = holder.current()
        sc = served.scorer
        user_id = body.user_id
        events = store.events(user_id)
        merge = body.merge or MergeIn()
        request = RecommendRequest(
            user_id,
            body.k,
            merge.strategy,
            merge.weights,
            [str(c) for c in body.candidates] if body.candidates is not None else None,
            exclude_seen=body.exclude_seen,
            user=serving_input(sc, user_id, events),
            context=_context(sc, body.context),
        )
        # Scored on the batcher's thread, with the requests that wait alongside this one.
        rec = await asyncio.wrap_future(batcher.submit(served, request))
        doc = rec.to_json()
        # Validated once, in one call, and sent as it is: FastAPI would validate the
        # response model again before serialising it (the hot path of the service).
        out = RecommendOut.model_validate(
            {
                "user_id": user_id,
                "model_id": served.model_id,
                "fallback": rec.fallback,
                "known_user": sc.catalog.user_row(user_id) is not None,
                "served_events": len(events),
                "lists": doc["lists"],
                "merged": doc["merged"],
                "merge": doc["merge"],
                "profile": doc["profile"],
                "server_ms": (time.perf_counter() - start) * 1000,
            }
        )
        return Response(out.model_dump_json(), media_type="application/json")

    @app.post("/v1/score", response_model=ScoreOut, responses=errors)
    def score(body: ScoreIn) -> ScoreOut:
        """Every event task's prediction (and the funnels' joint ones) for the given items."""
        start = time.perf_counter()
        served = holder.current()
        sc = served.scorer
        user = serving_input(sc, body.user_id, store.events(body.user_id))
        if user is None:
            raise ApiError(
                404,
                f"user_id: unknown user '{body.user_id}' (not in the model's catalog and no "
                "events posted); /v1/recommend answers such users with popularity lists",
                "user_id",
            )
        ids = [str(i) for i in body.items]
        pos = _positions(sc, ids, "items")
        ctx = _context(sc, body.context)
        names = [t.name for t in sc.tasks.event_tasks] + [r.name for r in sc.tasks.relations]
        preds = sc.predict(user, pos, ctx, names)
        scores: dict[str, list[float] | list[dict[str, float]]] = {}
        for name, values in preds.items():
            classes = sc.tasks[name].encoding.classes if name in sc.tasks.names else None
            if values.ndim == 2 and classes is not None:
                scores[name] = [dict(zip(classes, map(float, row), strict=True)) for row in values]
            else:
                scores[name] = [float(v) for v in values]
        return ScoreOut(
            user_id=body.user_id,
            model_id=served.model_id,
            items=ids,
            scores=scores,
            profile=sc.profile(user, ctx),
            server_ms=(time.perf_counter() - start) * 1000,
        )

    @app.post("/v1/events", response_model=EventOut, responses=errors)
    def post_event(body: EventIn) -> EventOut:
        """Append an interaction to the user's serving history and seen items."""
        sc = holder.current().scorer
        labels = dict(body.labels or {})
        allowed = _label_columns(sc)
        for name in labels:
            if name not in allowed:
                raise ApiError(
                    422,
                    f"labels.{name}: not a label or history column of this model "
                    f"(columns: {', '.join(sorted(allowed)) or 'none'})",
                    f"labels.{name}",
                )
        item = str(body.item_id)
        if sc.catalog.item_positions([item])[0] < 0:
            raise ApiError(422, f"item_id: unknown item id '{item}'", "item_id")
        event = Event(item, body.timestamp, labels)
        count = store.append(body.user_id, event)
        metrics.events.inc()
        return EventOut(
            user_id=body.user_id,
            item_id=item,
            known_item=True,
            entered_history={f.name: enters_history(f, event) for f in sc.proc.histories},
            served_events=count,
        )

    @app.post(
        "/v1/admin/reload",
        response_model=ReloadOut,
        responses={**errors, 401: {"model": ErrorOut}, 403: {"model": ErrorOut}},
        dependencies=[Depends(admin)],
    )
    def reload(body: ReloadIn) -> ReloadOut:
        """Load a model directory (manifest verified) and swap it in; in-flight requests
        finish on the old model; a broken directory is refused (409), the old one serves on."""
        with holder.reload_lock:
            try:
                new = load_served(body.model_dir, backend)
            except Exception as err:  # a broken directory is the caller's, never a 5xx
                metrics.reloads.labels("refused").inc()
                reason = str(err) if isinstance(err, MtrsUserError) else repr(err)
                raise ApiError(
                    409,
                    f"model_dir: not loaded, the current model keeps serving ({reason})",
                    "model_dir",
                ) from None
            old = holder.swap(new)
        metrics.reloads.labels("ok").inc()
        return ReloadOut(
            model_id=new.model_id,
            previous_model_id=old.model_id if old is not None else None,
            directory=str(new.directory),
            loaded_at=new.loaded_at.isoformat(),
        )

    paths = {getattr(r, "path", "") for r in app.routes}
    app.add_middleware(_Guard, limit=max_body_bytes, metrics=metrics, paths=paths)
    return app


def current(app: FastAPI) -> Served:
    """The model an app serves now (for tests and tools)."""
    served: Served = app.state.holder.current()
    return served


__all__ = ["ApiError", "create_app", "current"]
