"""Load benchmark of ``mtrs serve``: throughput and latency percentiles over loopback HTTP.

It starts the service (a child process, 127.0.0.1, a free port) on a MovieLens-100K model —
every one of the 1,682 movies scored per request, less the user's seen ones — and sends
``POST /v1/recommend`` for random known users from 1, 8 and 32 concurrent clients, for each
backend. Bounded: ``--requests`` per level and ``--timeout`` per request. The client is aiohttp
(``--client httpx`` for the heavier httpx). Prints one row per
backend and level (requests/s, p50/p95/p99 ms, errors) and writes them as JSON. The server
runs with ``--no-access-log`` unless ``--access-log`` is given.

    python benchmarks/serve_load.py --data-dir ../shared/datasets/ml-100k \
        --json runs/serve_load.json

Without ``--model`` it first trains the MovieLens-100K shared-bottom job for 2 epochs into
``runs/serve_load/model`` (reused when present). The ONNX backend exports the model once
into its cache (``$MTRS_CACHE/onnx/<manifest digest>``) before it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare_model(args: argparse.Namespace) -> Path:
    """The model directory to serve: ``--model``, or a MovieLens-100K job trained once."""
    if args.model:
        return Path(args.model)
    root = Path("runs/serve_load")
    model = root / "model"
    if (model / "manifest.json").is_file():
        return model
    job = root / "job"
    mtrs = [sys.executable, "-m", "mtrs.cli.main"]
    export = [*mtrs, "datasets", "export", "movielens-100k", "--out", str(job), "--overwrite"]
    if args.data_dir:
        export += ["--data-dir", args.data_dir]
    subprocess.run(export, check=True)
    train = [*mtrs, "train", str(job / "mtrs.toml"), "--out", str(model), "--epochs", "2"]
    subprocess.run([*train, "--overwrite"], check=True)
    return model


def start_server(
    model: Path, backend: str, threads: int | None, access_log: bool = False
) -> tuple[subprocess.Popen[bytes], str]:
    """``mtrs serve`` in a child process; returns it and its base URL once it is ready."""
    port = free_port()
    cmd = [sys.executable, "-m", "mtrs.cli.main", "serve", str(model), "--host", "127.0.0.1",
           "--port", str(port), "--backend", backend,
           "--access-log" if access_log else "--no-access-log"]  # fmt: skip
    if threads is not None:
        cmd += ["--threads", str(threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise SystemExit(f"mtrs serve exited: {err.strip()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("mtrs serve did not become ready in 120 s")


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux ``/proc``; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


Send = Callable[[dict[str, Any]], Awaitable[bool]]
CLIENTS = ("aiohttp", "httpx")


@asynccontextmanager
async def http_client(kind: str, url: str, clients: int, timeout: float) -> AsyncIterator[Send]:
    """A pooled HTTP client of ``clients`` keep-alive connections; yields ``send(body) → ok``.

    ``aiohttp`` (C-accelerated parser) is the default: the load generator runs on the same
    cores as the server, and in one event loop its per-response work queues up behind other
    responses and counts in their latency. ``httpx`` is the pure-Python client the tests use.
    """
    endpoint = f"{url}/v1/recommend"
    if kind == "aiohttp":
        import aiohttp

        connector = aiohttp.TCPConnector(limit=clients)
        session_timeout = aiohttp.ClientTimeout(total=timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=session_timeout) as http:

            async def send_aiohttp(body: dict[str, Any]) -> bool:
                try:
                    async with http.post(endpoint, json=body) as r:
                        await r.read()
                        return r.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    return False

            yield send_aiohttp
        return
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:

        async def send_httpx(body: dict[str, Any]) -> bool:
            try:
                return (await client.post(endpoint, json=body)).status_code == 200
            except httpx.HTTPError:
                return False

        yield send_httpx


async def run_level(
    url: str,
    users: list[str],
    clients: int,
    requests: int,
    timeout: float,
    k: int,
    kind: str = "aiohttp",
) -> dict[str, Any]:
    """``requests`` recommendations spread over ``clients`` concurrent connections."""
    latencies: list[float] = []
    errors = 0
    queue = list(range(requests))
    rng = random.Random(clients)

    async def client(send: Send) -> None:
        nonlocal errors
        while queue:
            queue.pop()
            body = {"user_id": rng.choice(users), "k": k}
            t0 = time.perf_counter()
            ok = await send(body)
            latencies.append((time.perf_counter() - t0) * 1000.0)
            errors += not ok

    async with http_client(kind, url, clients, timeout) as send:
        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(client(send) for _ in range(clients)))
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
    lat = np.array(latencies)
    return {
        "clients": clients,
        "client": kind,
        "requests": len(lat),
        "errors": errors,
        "requests_per_s": len(lat) / seconds,
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
        "p99_ms": float(np.percentile(lat, 99)),
        # The load generator shares the machine's cores with the server: its own CPU time
        # per request says how much of the machine the measurement itself takes.
        "client_cpu_ms": cpu * 1000.0 / max(len(lat), 1),
    }


def main() -> None:
    """Parse options, serve, load, report."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", help="Model directory (default: train the MovieLens-100K job).")
    p.add_argument("--data-dir", help="MovieLens-100K directory (u.data, u.item, u.user).")
    p.add_argument("--backends", default="torch,onnx", help="Comma-separated: torch, onnx.")
    p.add_argument("--clients", default="1,8,32", help="Concurrency levels.")
    p.add_argument("--requests", type=int, default=2000, help="Requests per level.")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="Scoring threads of the server (default: mtrs serve's, the CPUs less one).",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="Seconds per request.")
    p.add_argument("--k", type=int, default=10, help="List length.")
    p.add_argument(
        "--access-log",
        action="store_true",
        help="Run the server with its per-request access log (off by default here: the "
        "benchmark measures the service, not its logging).",
    )
    p.add_argument(
        "--client",
        default="aiohttp",
        choices=CLIENTS,
        help="Load client (aiohttp: the bench extra's; httpx: the serve extra's, heavier).",
    )
    p.add_argument("--json", help="Write the rows as JSON here.")
    args = p.parse_args()
    if args.client == "aiohttp" and importlib.util.find_spec("aiohttp") is None:
        raise SystemExit("--client aiohttp needs the bench extra: pip install 'mtrs[bench]'")
    model = prepare_model(args)
    rows = []
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        proc, url = start_server(model, backend, args.threads, args.access_log)
        try:
            info = httpx.get(f"{url}/v1/model", timeout=10).json()
            users = httpx.get(f"{url}/v1/users?limit=500", timeout=10).json()["user_ids"]
            print(f"{backend}: {info['architecture']}, {info['num_items']} items, "
                  f"{len(users)} users sampled")  # fmt: skip
            warm = run_level(url, users, 1, 20, args.timeout, args.k, args.client)
            asyncio.run(warm)
            for clients in [int(c) for c in args.clients.split(",")]:
                server_cpu = process_cpu_seconds(proc.pid)
                row = asyncio.run(
                    run_level(url, users, clients, args.requests, args.timeout, args.k, args.client)
                )
                row["backend"] = backend
                after = process_cpu_seconds(proc.pid)
                row["server_cpu_ms"] = (
                    None
                    if server_cpu is None or after is None
                    else (after - server_cpu) * 1000.0 / max(row["requests"], 1)
                )
                rows.append(row)
                print(
                    f"  {clients:>3} clients: {row['requests_per_s']:7.1f} req/s  "
                    f"p50 {row['p50_ms']:6.1f} ms  p95 {row['p95_ms']:6.1f} ms  "
                    f"p99 {row['p99_ms']:6.1f} ms  errors {row['errors']}  "
                    f"CPU ms/req: client {row['client_cpu_ms']:.2f}, "
                    f"server {row['server_cpu_ms'] or float('nan'):.2f}"
                )
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
