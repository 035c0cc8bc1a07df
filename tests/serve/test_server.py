"""The real server (uvicorn on 127.0.0.1, a free port) and the ``mtrs serve`` command."""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from mtrs.cli.main import run
from mtrs.serve.app import create_app

from .conftest import Models


def test_uvicorn_serves_one_request_over_http(models: Models) -> None:
    app = create_app(models.a)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        r = httpx.post(
            f"http://127.0.0.1:{port}/v1/recommend", json={"user_id": "1", "k": 3}, timeout=10
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["merged"]) == 3 and body["user_id"] == "1"
        assert r.headers["content-type"] == "application/json"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_onnx_backend_serves_the_same_lists(
    models: Models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    monkeypatch.setenv("MTRS_CACHE", str(tmp_path / "cache"))
    body = {"user_id": "7", "k": 10}
    with TestClient(create_app(models.a)) as torch_client:
        want = torch_client.post("/v1/recommend", json=body).json()
    with TestClient(create_app(models.a, backend="onnx")) as onnx_client:
        assert onnx_client.get("/v1/model").json()["backend"] == "onnx"
        got = onnx_client.post("/v1/recommend", json=body).json()
    # The export is cached by the model's manifest digest (a reload of it reuses it).
    (export,) = (tmp_path / "cache" / "onnx").iterdir()
    assert (export / "onnx.json").is_file()
    assert [i["item"] for i in got["merged"]] == [i["item"] for i in want["merged"]]
    for task, items in want["lists"].items():
        assert [i["item"] for i in got["lists"][task]] == [i["item"] for i in items]
        for a, b in zip(got["lists"][task], items, strict=True):
            assert abs(a["score"] - b["score"]) < 1e-5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--backend", "tensorrt"], "--backend: unknown backend 'tensorrt' (torch, onnx)"),
        (["--threads", "0"], "--threads: must be at least 1"),
        (["--port", "70000"], "--port: 70000 is not a port"),
    ],
)
def test_serve_option_errors(
    models: Models, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["serve", str(models.a), *argv]) == 2
    assert message in capsys.readouterr().err


def test_serve_without_the_extra_names_the_install(
    models: Models, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a)
    )
    assert run(["serve", str(models.a)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: mtrs serve needs fastapi: pip install 'mtrs[serve]'"


def test_serve_a_missing_directory(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["serve", "/no/such/model"]) == 2
    assert "/no/such/model: model directory not found" in capsys.readouterr().err


def test_serve_sets_threads_and_hands_the_app_to_uvicorn(
    models: Models, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    seen: dict[str, object] = {}

    def fake_run(app: object, host: str, port: int, log_level: str, access_log: bool) -> None:
        seen.update(
            app=app, host=host, port=port, threads=torch.get_num_threads(), access=access_log
        )

    monkeypatch.setattr(uvicorn, "run", fake_run)
    before = torch.get_num_threads()
    try:
        assert run(["serve", str(models.a), "--port", "0", "--threads", "2"]) == 0
        assert seen["access"] is True  # uvicorn's access log by default
        assert run(["serve", str(models.a), "--port", "0", "--no-access-log"]) == 0
        assert seen["access"] is False
        # Without --threads: the CPUs this process may use, less one for the event loop.
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
        assert run(["serve", str(models.a), "--port", "0"]) == 0
        assert seen["threads"] == 3
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
        assert run(["serve", str(models.a), "--port", "0"]) == 0
        assert seen["threads"] == 1
        assert run(["serve", str(models.a), "--port", "0", "--threads", "2"]) == 0
    finally:
        torch.set_num_threads(before)
    assert (seen["host"], seen["port"], seen["threads"]) == ("127.0.0.1", 0, 2)
    from fastapi.testclient import TestClient

    with TestClient(seen["app"]) as c:  # type: ignore[arg-type]
        assert c.get("/v1/model").json()["directory"] == str(models.a)
