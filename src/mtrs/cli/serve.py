"""``mtrs serve``: the HTTP recommendation service (FastAPI + uvicorn, the ``serve`` extra)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Annotated

import typer

from mtrs.errors import MtrsUserError

# fastapi, uvicorn and torch are imported inside the command: `mtrs --help` stays light.
SERVE_EXTRA = "pip install 'mtrs[serve]'"


def _require_serve_extra() -> None:
    """Every package of the ``serve`` extra, or one line naming the install command."""
    for module in ("fastapi", "uvicorn", "prometheus_client"):
        if importlib.util.find_spec(module) is None:
            raise MtrsUserError(f"mtrs serve needs {module}: {SERVE_EXTRA}")


def default_threads() -> int:
    """Scoring threads by default: the usable CPUs less one for the event loop, at least 1.

    The event loop (HTTP parsing, validation, JSON) and the scoring thread share one
    interpreter lock, so they overlap only while scoring is inside torch's kernels. With every
    CPU given to the kernels the event loop waits for one; measured on 2 cores with
    ``benchmarks/serve_load.py`` at 8 clients: 220 req/s at one thread against 190–214 at two,
    and 4.3 against 4.8–5.4 ms of server CPU per request.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus - 1)


def serve(
    model_dir: Annotated[Path, typer.Argument(help="A model directory from `mtrs train`.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8000,
    threads: Annotated[
        int | None,
        typer.Option(
            help="Scoring threads (torch intra-op, onnxruntime intra-op). Default: one fewer "
            "than the CPUs this process may use, at least 1 — the HTTP event loop gets a core."
        ),
    ] = None,
    backend: Annotated[str, typer.Option(help="Scoring backend: torch | onnx.")] = "torch",
    max_batch: Annotated[
        int,
        typer.Option(
            help="Most /v1/recommend requests scored in one pass (requests that wait while "
            "the model is busy are scored together; 1: one at a time)."
        ),
    ] = 32,
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log/--no-access-log",
            help="A log line per request on stdout (uvicorn's access log); /metrics counts "
            "requests either way.",
        ),
    ] = True,
) -> None:
    """Serve recommendations over HTTP: /v1/recommend, /v1/score, /v1/events, /docs."""
    from mtrs.serve.backend import BACKENDS

    if backend not in BACKENDS:
        raise MtrsUserError(f"--backend: unknown backend '{backend}' ({', '.join(BACKENDS)})")
    if threads is not None and threads < 1:
        raise MtrsUserError("--threads: must be at least 1")
    if max_batch < 1:
        raise MtrsUserError("--max-batch: must be at least 1")
    if not 0 <= port <= 65535:
        raise MtrsUserError(f"--port: {port} is not a port (0 to 65535)")
    _require_serve_extra()
    import torch
    import uvicorn

    from mtrs.serve.app import create_app

    torch.set_num_threads(threads if threads is not None else default_threads())
    app = create_app(model_dir, backend=backend, max_batch=max_batch)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=access_log)


def register(app: typer.Typer) -> None:
    """Add the command to the main app."""
    app.command()(serve)
