"""Property-based fuzz of the service: no request, however wrong, gets a 5xx.

Bodies are generated from the request models' shapes (good values, neighbours of good
values, wrong types, extra keys, huge and non-finite numbers, unicode and lone surrogates,
nested junk), then sometimes broken as text (cut short, bytes flipped). Every endpoint is hit
through ``TestClient`` (in process); every answer must be below 500, and every error a JSON
body whose ``error`` names what is wrong (and, for a request body, the ``field``). The seeds
are fixed (``derandomize``); the example counts keep it to about half a minute
(``MTRS_FUZZ_SCALE`` multiplies them).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtrs.serve.app import create_app

from .conftest import Models

SCALE = int(os.environ.get("MTRS_FUZZ_SCALE", "1"))
TOKEN = "fuzz-token"
FUZZ = settings(
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CASES: Counter[str] = Counter()
STATUSES: Counter[int] = Counter()
FIELDS: Counter[str] = Counter()

# ----- values --------------------------------------------------------------------------------
NUMBERS = st.one_of(
    st.integers(-5, 1200),
    st.sampled_from([0, -1, 10**12, -(10**12), 10**30, 2**63, 10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-320, 1e308, -1e308, 0.5]),
)
TEXT = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", " ", "\x00", "\ud800", "a\udfffb", "名前ü∂", "null", "1e999", "x" * 300]),
)
LEAF = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
JUNK = st.recursive(
    LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=10,
)
GOOD_K = st.one_of(st.integers(1, 20), NUMBERS)
WEIGHTS = st.one_of(st.floats(0.0, 5.0), st.floats(0.0, 5.0), NUMBERS)
USERS = st.one_of(
    *[st.sampled_from(["1", "2", "3", 4, 5, "nobody", "new-1"])] * 4, st.integers(), TEXT
)
ITEMS = st.one_of(
    *[st.sampled_from(["0", "1", "7", 39, 12, "40", "-1", "zz"])] * 4, st.integers(), TEXT
)
TASKS = st.sampled_from(["click", "purchase", "click_purchase", "gender", "clik", ""])


def _maybe(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a plausible value, sometimes junk of any type."""
    return st.one_of(*[good] * 8, JUNK)


def _body(
    fields: dict[str, st.SearchStrategy[Any]], required: tuple[str, ...] = ()
) -> st.SearchStrategy[Any]:
    """The request's shape (required fields, some optional ones, plausible values); or some
    of the fields, each plausible or junk, maybe with extra keys; or junk."""
    shaped = st.fixed_dictionaries(
        {k: fields[k] for k in required},
        optional={k: v for k, v in fields.items() if k not in required},
    )

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        out = {k: draw(_maybe(v)) for k, v in fields.items() if draw(st.integers(0, 9)) > 0}
        if draw(st.integers(0, 7)) == 0:
            out.update(draw(st.dictionaries(TEXT, JUNK, min_size=1, max_size=2)))
        return out

    return st.one_of(shaped, shaped, shaped, shaped, build(), build(), st.just({}), JUNK)


MERGE = st.fixed_dictionaries(
    {},
    optional={
        "strategy": st.sampled_from(["weighted_sum", "weighted_product", "rrf", "max", ""]),
        "weights": st.dictionaries(TASKS, WEIGHTS, max_size=3),
    },
)
CONTEXT = st.dictionaries(
    st.sampled_from(["hour", "device", "weather", ""]),
    st.one_of(st.integers(-3, 30), st.sampled_from(["ios", "android", "web", "?"]), JUNK),
    max_size=3,
)
LABELS = st.dictionaries(
    st.sampled_from(["click", "click", "purchase", "gender", "rating", "\ud800"]),
    st.one_of(st.sampled_from([0, 1, 1.0]), NUMBERS),
    max_size=2,
)
BODIES = {
    "/v1/recommend": _body(
        {
            "user_id": USERS,
            "k": GOOD_K,
            "merge": MERGE,
            "candidates": st.lists(ITEMS, max_size=6),
            "exclude_seen": st.booleans(),
            "context": CONTEXT,
        },
        ("user_id",),
    ),
    "/v1/score": _body(
        {"user_id": USERS, "items": st.lists(ITEMS, max_size=6), "context": CONTEXT},
        ("user_id", "items"),
    ),
    "/v1/events": _body(
        {
            "user_id": USERS,
            "item_id": ITEMS,
            "timestamp": st.one_of(st.integers(0, 2 * 10**9), NUMBERS),
            "labels": LABELS,
        },
        ("user_id", "item_id"),
    ),
    "/v1/admin/reload": _body(
        {"model_dir": st.sampled_from(["/nonexistent", ".", "", "/", "\ud800", "x" * 5000])},
        ("model_dir",),
    ),
}


@st.composite
def raw_body(draw: st.DrawFn, path: str) -> bytes:
    """The body as bytes: JSON of a generated value, sometimes cut short or with a flipped
    byte, sometimes arbitrary bytes."""
    kind = draw(st.integers(0, 24))
    if kind == 0:
        return draw(st.binary(max_size=64))
    text = json.dumps(draw(BODIES[path]), allow_nan=True).encode("utf-8")
    if kind == 1 and text:
        return text[: draw(st.integers(0, len(text) - 1))]
    if kind == 2 and text:
        i = draw(st.integers(0, len(text) - 1))
        return text[:i] + bytes([draw(st.integers(0, 255))]) + text[i + 1 :]
    return text


@pytest.fixture(scope="module")
def client(models: Models) -> Iterator[TestClient]:
    with TestClient(create_app(models.a, admin_token=TOKEN)) as c:
        yield c


def _check(response: Any, body_request: bool) -> None:
    STATUSES[response.status_code] += 1
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        doc = response.json()
        assert isinstance(doc, dict) and isinstance(doc.get("error"), str) and doc["error"], doc
        FIELDS[str(doc.get("field")).split(".")[0].split("[")[0][:20]] += 1
        if body_request and response.status_code in (400, 413, 422):
            assert doc.get("field"), doc


@pytest.mark.parametrize(
    ("path", "examples"),
    [("/v1/recommend", 800), ("/v1/score", 500), ("/v1/events", 500), ("/v1/admin/reload", 150)],
)
def test_fuzz_post_endpoints(client: TestClient, path: str, examples: int) -> None:
    @settings(FUZZ, max_examples=examples * SCALE)
    @given(
        body=raw_body(path),
        content_type=st.sampled_from([*["application/json"] * 18, "text/plain", ""]),
        auth=st.sampled_from([f"Bearer {TOKEN}", "Bearer nope", "", "Basic x", "Bearer \x7f"]),
    )
    def case(body: bytes, content_type: str, auth: str) -> None:
        CASES[path] += 1
        headers = {"Content-Type": content_type} if content_type else {}
        if auth:
            headers["Authorization"] = auth
        response = client.post(path, content=body, headers=headers)
        _check(response, body_request=response.status_code not in (401, 403))
        if response.status_code == 200 and path == "/v1/recommend":
            doc = response.json()
            assert all(len(v) <= 1000 for v in doc["lists"].values())

    case()


@settings(FUZZ, max_examples=250 * SCALE)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    path=st.one_of(
        st.sampled_from(
            ["/v1/model", "/healthz", "/readyz", "/metrics", "/", "/v1/recommend", "/v1/admin"]
        ),
        st.text(max_size=10).map(lambda s: "/" + s.replace("?", "").replace("#", "")),
    ),
)
def test_fuzz_every_path_and_method(client: TestClient, method: str, path: str) -> None:
    CASES["paths"] += 1
    try:
        response = client.request(method, path, follow_redirects=False)
    except (httpx.InvalidURL, ValueError, UnicodeError):
        return  # the client cannot even send such a URL
    _check(response, body_request=False)


def test_fuzz_report(client: TestClient, tmp_path: Path) -> None:
    """Runs last in the module: the counts, for the record (``pytest -s`` prints them)."""
    total = sum(CASES.values())
    print(f"\nfuzz cases: {total} {dict(CASES)}; statuses: {dict(sorted(STATUSES.items()))}")
    print(f"fields at fault: {dict(FIELDS.most_common(12))}")
    assert total >= 2000 * SCALE or not CASES
    assert not [s for s in STATUSES if s >= 500]
    # The service still answers normally after all that.
    assert client.post("/v1/recommend", json={"user_id": "1", "k": 2}).status_code == 200
