"""Tests for the MovieLens 100K loader, fetcher and multi-task formulation."""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtrs.data.negatives import add_negatives
from mtrs.data.tables import Tables
from mtrs.datasets import (
    AGE_GROUPS,
    MovieLens100K,
    age_group,
    build_multitask_tables,
    fetch_movielens_100k,
    load_movielens_100k,
    write_tables,
)
from mtrs.datasets.movielens_job import movielens_config
from mtrs.errors import MtrsUserError

FILES = ("u.data", "u.item", "u.user")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ml_dir() -> Path:
    """The shared MovieLens files: ``$MTRS_ML100K_DIR``, else ``<repo>/../shared/datasets/ml-100k``.

    The files may not live in the repository (GroupLens terms), so a missing copy is a failure,
    not a skip: a silently skipped suite would hide that the loader was never exercised.
    """
    env = os.environ.get("MTRS_ML100K_DIR")
    path = Path(env) if env else REPO.parent / "shared" / "datasets" / "ml-100k"
    if not all((path / name).is_file() for name in FILES):
        pytest.fail(
            f"MovieLens 100K not found in {path}: set MTRS_ML100K_DIR to a directory with u.data, "
            "u.item, u.user, or place them in ../shared/datasets/ml-100k (never in the repository)."
        )
    return path


@pytest.fixture(scope="module")
def ml(ml_dir: Path) -> MovieLens100K:
    return load_movielens_100k(ml_dir)


def test_loader_counts_and_types(ml: MovieLens100K) -> None:
    assert len(ml.ratings) == 100_000
    assert len(ml.items) == 1_682
    assert len(ml.users) == 943
    assert all(ml.ratings[c].dtype == np.int64 for c in ml.ratings.columns)
    assert set(ml.users["gender"]) == {"M", "F"}
    toy = ml.items.set_index("item_id").loc[1]
    assert toy["title"] == "Toy Story (1995)"
    assert toy["genres"] == "Animation|Children's|Comedy"
    assert toy["year"] == 1995.0
    unknown = ml.items.set_index("item_id").loc[267]  # the one movie with no release date
    assert unknown["release_date"] == ""
    assert np.isnan(unknown["year"])


def test_loader_reads_latin1_like_the_official_zip(ml_dir: Path, tmp_path: Path) -> None:
    # The shared UTF-8 copy carries U+FFFD where the 9 accented letters were, so it cannot be
    # re-encoded as Latin-1; an accent put back gives a faithful UTF-8 / Latin-1 pair instead.
    text = (ml_dir / "u.item").read_text(encoding="utf-8").replace("\ufffd", "é")
    dirs = {enc: tmp_path / enc for enc in ("utf-8", "latin-1")}
    for enc, folder in dirs.items():
        folder.mkdir()
        for name in ("u.data", "u.user"):
            shutil.copyfile(ml_dir / name, folder / name)
        (folder / "u.item").write_bytes(text.encode(enc))
    assert (dirs["utf-8"] / "u.item").read_bytes() != (dirs["latin-1"] / "u.item").read_bytes()

    utf8 = load_movielens_100k(dirs["utf-8"]).items
    latin1 = load_movielens_100k(dirs["latin-1"]).items
    assert latin1["title"].tolist() == utf8["title"].tolist()
    assert "Misérables, Les (1995)" in set(latin1["title"])
    shared = load_movielens_100k(ml_dir).items["title"]
    assert (latin1["title"] == shared.str.replace("\ufffd", "é")).all()


def test_loader_missing_file_names_path(ml_dir: Path, tmp_path: Path) -> None:
    for name in ("u.data", "u.user"):
        shutil.copyfile(ml_dir / name, tmp_path / name)
    with pytest.raises(MtrsUserError, match=r"u\.item.*--data-dir"):
        load_movielens_100k(tmp_path)


def test_loader_bad_value_names_line(ml_dir: Path, tmp_path: Path) -> None:
    for name in FILES:
        shutil.copyfile(ml_dir / name, tmp_path / name)
    lines = (tmp_path / "u.data").read_text().splitlines()
    lines[2] = "22\t377\tthree\t878887116"
    (tmp_path / "u.data").write_text("\n".join(lines) + "\n")
    with pytest.raises(MtrsUserError, match=r"u\.data line 3: column rating is 'three'"):
        load_movielens_100k(tmp_path)


def test_age_group_boundaries() -> None:
    ages = np.array([7, 17, 18, 24, 25, 34, 35, 44, 45, 49, 50, 55, 56, 73])
    expected = ["<18", "<18", "18-24", "18-24", "25-34", "25-34", "35-44", "35-44"]
    expected += ["45-49", "45-49", "50-55", "50-55", "56+", "56+"]
    assert age_group(ages).tolist() == expected
    assert set(expected) == set(AGE_GROUPS)


def _with_negatives(ml: MovieLens100K, k: int, seed: int) -> pd.DataFrame:
    """The benchmark's ratings-only log with its ``[data.negatives]`` rows added."""
    cfg = movielens_config(seed=seed, negatives=k)
    return add_negatives(Tables(*build_multitask_tables(ml)), cfg).interactions


def test_multitask_tables(ml: MovieLens100K) -> None:
    k = 4
    ratings, users, items = build_multitask_tables(ml)
    # The tables hold the ratings only; the benchmark's config samples the negatives.
    assert len(ratings) == 100_000 and "interact" not in ratings.columns
    inter = _with_negatives(ml, k, 0)
    assert len(inter) == 100_000 * (1 + k)
    pos = inter[inter["interact"] == 1]
    neg = inter[inter["interact"] == 0]
    pd.testing.assert_frame_equal(
        pos[ratings.columns].reset_index(drop=True), ratings, check_dtype=True
    )

    # Exactly one rating and K negatives per event, all at the event's timestamp and user.
    per_event = inter.groupby("event_id")["interact"].agg(["sum", "size"])
    assert (per_event["sum"] == 1).all() and (per_event["size"] == 1 + k).all()
    shared = neg.merge(pos, on="event_id", suffixes=("", "_pos"))
    assert (shared["timestamp"] == shared["timestamp_pos"]).all()
    assert (shared["user_id"] == shared["user_id_pos"]).all()

    # Never a movie the user rated anywhere in the data, never twice in one event.
    rated = ml.ratings[["user_id", "item_id"]].drop_duplicates()
    clash = neg.merge(rated, on=["user_id", "item_id"])
    assert clash.empty
    assert not neg.duplicated(["event_id", "item_id"]).any()
    assert neg["item_id"].isin(ml.items["item_id"]).all()

    # Labels: like/rating only on rated rows.
    assert neg["like"].isna().all() and neg["rating"].isna().all()
    assert (pos["like"] == (pos["rating"] >= 4).astype(float)).all()
    assert pos["rating"].between(1, 5).all()

    # Event ids follow time; rows sorted by (timestamp, event_id, interact desc).
    assert pos["timestamp"].is_monotonic_increasing
    assert (pos["event_id"].to_numpy() == np.arange(100_000)).all()
    order = inter.sort_values(
        ["timestamp", "event_id", "interact"], ascending=[True, True, False], kind="stable"
    )
    assert (order.index == inter.index).all()

    when = pd.to_datetime(inter["timestamp"], unit="s", utc=True)
    assert (inter["hour"] == when.dt.hour).all()
    assert (inter["weekday"] == when.dt.day_of_week).all()

    assert list(users.columns) == ["user_id", "occupation", "zip_prefix", "gender", "age_group"]
    by_user = users.set_index("user_id")
    assert by_user.loc[1, "gender"] == 0.0 and by_user.loc[2, "gender"] == 1.0  # M, F
    assert by_user.loc[1, "zip_prefix"] == "85"  # zip 85711
    raw_zip = ml.users.set_index("user_id")["zip"]
    canadian = raw_zip[raw_zip.str.contains("[A-Z]")].index[0]
    assert by_user.loc[canadian, "zip_prefix"] == raw_zip[canadian][:2]
    assert set(users["age_group"]) <= set(AGE_GROUPS)
    assert list(items.columns) == ["item_id", "genres", "year"]


def test_negative_sampling_is_seeded(ml: MovieLens100K) -> None:
    first = _with_negatives(ml, 2, 7)
    again = _with_negatives(ml, 2, 7)
    other = _with_negatives(ml, 2, 8)
    pd.testing.assert_frame_equal(first, again)
    assert not first["item_id"].equals(other["item_id"])


def test_too_few_unrated_movies_is_a_user_error() -> None:
    ml = MovieLens100K(
        ratings=pd.DataFrame(
            {"user_id": [1, 1], "item_id": [1, 2], "rating": [5, 3], "timestamp": [10, 20]}
        ),
        users=pd.DataFrame(
            {"user_id": [1], "age": [30], "gender": ["F"], "occupation": ["x"], "zip": ["1"]}
        ),
        items=pd.DataFrame({"item_id": [1, 2, 3], "genres": ["", "", ""], "year": [1.0] * 3}),
    )
    assert (_with_negatives(ml, 1, 0)["item_id"] == [1, 3, 2, 3]).all()
    with pytest.raises(MtrsUserError, match=r"data\.negatives\.per_positive = 2: user_id '1'"):
        _with_negatives(ml, 2, 0)


def test_write_tables(ml: MovieLens100K, tmp_path: Path) -> None:
    tables = build_multitask_tables(ml)
    paths = write_tables(tables, tmp_path / "out")
    assert sorted(paths) == ["interactions", "items", "users"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "interactions.parquet",
        "items.parquet",
        "users.parquet",
    ]
    pd.testing.assert_frame_equal(pd.read_parquet(paths["users"]), tables.users, check_dtype=False)
    with pytest.raises(MtrsUserError, match="xlsx"):
        write_tables(tables, tmp_path / "bad", fmt="xlsx")


class _Server:
    """A loopback HTTP server handing out one zip and counting requests."""

    def __init__(self, payload: bytes) -> None:
        self.hits = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:  # keep pytest output quiet
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/ml-100k.zip"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def zip_server(ml_dir: Path, tmp_path: Path) -> Iterator[tuple[_Server, str]]:
    archive = tmp_path / "served.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in FILES:
            zf.write(ml_dir / name, f"ml-100k/{name}")
    payload = archive.read_bytes()
    server = _Server(payload)
    try:
        yield server, hashlib.sha256(payload).hexdigest()
    finally:
        server.close()


def test_fetch_downloads_once(zip_server: tuple[_Server, str], tmp_path: Path) -> None:
    server, sha = zip_server
    cache = tmp_path / "cache"
    data_dir = fetch_movielens_100k(cache, url=server.url, sha256=sha, timeout=5)
    assert data_dir == cache / "ml-100k"
    assert all((data_dir / name).is_file() for name in FILES)
    assert len(load_movielens_100k(data_dir).ratings) == 100_000
    assert server.hits == 1
    assert fetch_movielens_100k(cache, url=server.url, sha256=sha, timeout=5) == data_dir
    assert server.hits == 1
    # Only the verified archive and its folder remain: no temporary files.
    assert sorted(p.name for p in cache.iterdir()) == ["ml-100k", "ml-100k.zip"]


def test_fetch_uses_mtrs_data(
    zip_server: tuple[_Server, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, sha = zip_server
    monkeypatch.setenv("MTRS_DATA", str(tmp_path / "env-cache"))
    assert fetch_movielens_100k(url=server.url, sha256=sha) == tmp_path / "env-cache" / "ml-100k"


def test_fetch_wrong_checksum(zip_server: tuple[_Server, str], tmp_path: Path) -> None:
    server, _ = zip_server
    cache = tmp_path / "cache"
    with pytest.raises(MtrsUserError, match="sha256"):
        fetch_movielens_100k(cache, url=server.url, sha256="0" * 64, timeout=5)
    assert server.hits == 1
    assert list(cache.iterdir()) == []


def test_fetch_unreachable(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(MtrsUserError, match="--data-dir"):
        fetch_movielens_100k(cache, url="http://127.0.0.1:1/ml-100k.zip", sha256="0" * 64)
    assert list(cache.iterdir()) == []
