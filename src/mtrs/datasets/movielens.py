"""MovieLens 100K: load, fetch and turn into multi-task interaction, user and item tables."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd

from mtrs.errors import MtrsUserError

OFFICIAL_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
OFFICIAL_SHA256 = "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"

GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
]  # fmt: skip
AGE_GROUPS = ["<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+"]
# Lower bounds of AGE_GROUPS[1:], the MovieLens-1M age brackets.
_AGE_EDGES = np.array([18, 25, 35, 45, 50, 56])

_FILES = ("u.data", "u.item", "u.user")
_NO_NETWORK_HINT = (
    "without network, pass --data-dir pointing at a directory with u.data, u.item, u.user "
    "(e.g. ../shared/datasets/ml-100k)"
)


@dataclass
class MovieLens100K:
    """The three MovieLens 100K tables, typed.

    Attributes:
        ratings: ``user_id``, ``item_id``, ``rating``, ``timestamp`` (all int64).
        users: ``user_id`` (int64), ``age`` (int64), ``gender`` ("M"/"F"), ``occupation``, ``zip``.
        items: ``item_id`` (int64), ``title``, ``release_date`` ("" if missing), ``year`` (float,
            NaN if unknown), ``genres`` (names joined with "|" in README order, "" if none).
    """

    ratings: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame


class MultitaskTables(NamedTuple):
    """The multi-task formulation: one row per rating (event), plus user and item side tables."""

    interactions: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame


def _read_table(path: Path, sep: str, n_cols: int) -> pd.DataFrame:
    """Reads a header-less MovieLens file as strings, UTF-8 first, then Latin-1."""
    if not path.is_file():
        raise MtrsUserError(
            f"MovieLens file {path} not found; run `mtrs datasets fetch` to download the official "
            f"archive, or {_NO_NETWORK_HINT}."
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        # The official zip ships Latin-1; every byte string is valid Latin-1, so this cannot fail.
        text = raw.decode("latin-1")
    try:
        df = pd.read_csv(
            io.StringIO(text), sep=sep, header=None, dtype=str, keep_default_na=False,
            quoting=csv.QUOTE_NONE, engine="c",
        )  # fmt: skip
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise MtrsUserError(f"{path} is not a valid MovieLens file: {exc}.") from exc
    if df.shape[1] != n_cols:
        raise MtrsUserError(f"{path} has {df.shape[1]} columns per row, expected {n_cols}.")
    return df


def _ints(df: pd.DataFrame, col: int, name: str, path: Path) -> npt.NDArray[np.int64]:
    """Column ``col`` as int64, naming the first row (1-based line) that is not an integer."""
    values = pd.to_numeric(df[col], errors="coerce")
    bad = values.isna().to_numpy() | (values.to_numpy(dtype=float) % 1 != 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise MtrsUserError(
            f"{path} line {row + 1}: column {name} is {df[col].iloc[row]!r}, not an integer."
        )
    return values.to_numpy(dtype=np.int64)


def _check_known(
    ids: npt.NDArray[np.int64], known: npt.NDArray[np.int64], what: str, path: Path, table: str
) -> None:
    """Names the first rating whose user or movie is missing from its side table."""
    unknown = ~np.isin(ids, known)
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise MtrsUserError(f"{path} line {row + 1}: {what} {ids[row]} is not listed in {table}.")


def load_movielens_100k(data_dir: str | Path) -> MovieLens100K:
    """Loads ``u.data``, ``u.user`` and ``u.item`` from a directory.

    Args:
        data_dir: Directory holding the three files in the layout of the official ``ml-100k.zip``.

    Returns:
        The typed tables.

    Raises:
        MtrsUserError: A file is missing or malformed (the message names the file and line).
    """
    root = Path(data_dir)
    data_path, item_path, user_path = (root / name for name in _FILES)

    data = _read_table(data_path, "\t", 4)
    ratings = pd.DataFrame(
        {name: _ints(data, i, name, data_path) for i, name in
         enumerate(["user_id", "item_id", "rating", "timestamp"])}
    )  # fmt: skip

    user = _read_table(user_path, "|", 5)
    gender = user[2].astype(str)
    bad_gender = ~gender.isin(["M", "F"]).to_numpy()
    if bad_gender.any():
        row = int(np.flatnonzero(bad_gender)[0])
        raise MtrsUserError(
            f"{user_path} line {row + 1}: gender {gender.iloc[row]!r} is not M or F."
        )
    users = pd.DataFrame(
        {
            "user_id": _ints(user, 0, "user_id", user_path),
            "age": _ints(user, 1, "age", user_path),
            "gender": gender,
            "occupation": user[3].astype(str),
            "zip": user[4].astype(str),
        }
    )

    item = _read_table(item_path, "|", 5 + len(GENRES))
    flags = np.stack(
        [_ints(item, 5 + g, name, item_path) != 0 for g, name in enumerate(GENRES)], axis=1
    )
    # Object-dtype addition concatenates strings column by column without a per-row loop.
    pieces = np.where(flags, np.array([g + "|" for g in GENRES], dtype=object), "")
    genres = pd.Series(pieces.sum(axis=1) if len(item) else [], dtype=object).str.rstrip("|")
    release = item[2].astype(str)
    # The year is parsed from the digits rather than with %b, whose month names follow the locale.
    year = pd.to_numeric(release.str.extract(r"(\d{4})\s*$")[0], errors="coerce").astype(float)
    items = pd.DataFrame(
        {
            "item_id": _ints(item, 0, "item_id", item_path),
            "title": item[1].astype(str),
            "release_date": release,
            "year": year.to_numpy(),
            "genres": genres.astype(str).to_numpy(),
        }
    )

    _check_known(
        ratings["user_id"].to_numpy(), users["user_id"].to_numpy(), "user_id", data_path, "u.user"
    )
    _check_known(
        ratings["item_id"].to_numpy(), items["item_id"].to_numpy(), "item_id", data_path, "u.item"
    )
    return MovieLens100K(ratings=ratings, users=users, items=items)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(url: str, target: Path, sha256: str, timeout: float) -> None:
    """Streams ``url`` into a temporary file beside ``target``; renames it only once verified."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "mtrs"})
        try:
            with (
                os.fdopen(fd, "wb") as out,
                urllib.request.urlopen(request, timeout=timeout) as resp,
            ):
                while chunk := resp.read(1 << 16):
                    digest.update(chunk)
                    out.write(chunk)
        except (OSError, ValueError) as exc:  # URLError, HTTPError and timeouts are OSErrors
            raise MtrsUserError(f"could not download {url} ({exc}); {_NO_NETWORK_HINT}.") from exc
        if digest.hexdigest() != sha256.lower():
            raise MtrsUserError(
                f"downloaded {url} has sha256 {digest.hexdigest()}, expected {sha256.lower()}; "
                "the file was deleted, so check the URL and the expected checksum."
            )
        os.replace(tmp, target)
    finally:
        # Also on Ctrl-C: a partial download must never be left behind.
        tmp.unlink(missing_ok=True)


def _unpack(archive: Path, final: Path) -> Path:
    """Extracts into a temporary directory, then moves the folder holding u.data to ``final``."""
    staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(staging)  # zipfile drops absolute paths and ".." parts itself
        except zipfile.BadZipFile as exc:
            raise MtrsUserError(f"{archive} is not a valid zip archive: {exc}.") from exc
        found = [p.parent for p in sorted(staging.rglob("u.data"))]
        found = [d for d in found if all((d / name).is_file() for name in _FILES)]
        if not found:
            raise MtrsUserError(f"{archive} holds no directory with u.data, u.item and u.user.")
        if final.exists():
            shutil.rmtree(final)
        os.replace(found[0], final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def fetch_movielens_100k(
    cache_dir: str | Path | None = None,
    url: str = OFFICIAL_URL,
    sha256: str = OFFICIAL_SHA256,
    timeout: float = 30,
) -> Path:
    """Downloads, verifies and unpacks ``ml-100k.zip`` unless a verified copy is already cached.

    Args:
        cache_dir: Where to keep the archive; defaults to ``$MTRS_DATA``, else ``~/.cache/mtrs``.
        url: Archive address.
        sha256: Expected SHA-256 of the archive (hex).
        timeout: Socket timeout in seconds.

    Returns:
        The directory holding ``u.data``, ``u.item`` and ``u.user`` (``<cache_dir>/ml-100k``).

    Raises:
        MtrsUserError: The download failed, the checksum does not match (the archive is deleted)
            or the archive does not hold the MovieLens files.
    """
    if cache_dir is None:
        cache_dir = os.environ.get("MTRS_DATA") or Path.home() / ".cache" / "mtrs"
    cache = Path(cache_dir).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    archive, final = cache / "ml-100k.zip", cache / "ml-100k"

    if archive.is_file() and _sha256(archive) != sha256.lower():
        archive.unlink()  # a stale or corrupt copy: fetch it again rather than trust it
    if not archive.is_file():
        _download(url, archive, sha256, timeout)
    elif all((final / name).is_file() for name in _FILES):
        return final
    return _unpack(archive, final)


def age_group(age: npt.ArrayLike) -> npt.NDArray[np.str_]:
    """Maps ages in years to the labels of ``AGE_GROUPS`` (e.g. 24 → "18-24", 56 → "56+").

    Args:
        age: Ages, any integer or float array.

    Returns:
        String array of the same shape.
    """
    index = np.digitize(np.asarray(age), _AGE_EDGES, right=False)
    return np.asarray(AGE_GROUPS)[index]


def build_multitask_tables(ml: MovieLens100K) -> MultitaskTables:
    """Builds the multi-task formulation of MovieLens 100K (see ``docs/movielens.md``).

    Every rating is an event, one row each. The non-interactions are not sampled here: the
    job's ``[data.negatives]`` (:mod:`mtrs.data.negatives`) adds them when the log is read,
    with the generated label ``interact`` (see ``movielens_job.movielens_config``).

    Args:
        ml: Loaded tables.

    Returns:
        ``interactions``: ``event_id`` (ordered by time, ties by user then item), ``user_id``,
        ``item_id``, ``timestamp``, ``hour`` (0-23, UTC), ``weekday`` (0 = Monday), ``like``
        (1.0 if rating >= 4), ``rating``; sorted by timestamp, then event_id.
        ``users``: ``user_id``, ``occupation``, ``zip_prefix`` (first 2 characters), ``gender``
        (positive class F: 1.0 = F, 0.0 = M), ``age_group`` (from ``AGE_GROUPS``).
        ``items``: ``item_id``, ``genres`` ("|"-joined), ``year`` (NaN when unknown).

    Raises:
        MtrsUserError: A rating names a movie missing from the items table.
    """
    ratings = ml.ratings.sort_values(["timestamp", "user_id", "item_id"], kind="stable")
    item_ids = ratings["item_id"].to_numpy(np.int64)
    unknown = ~np.isin(item_ids, ml.items["item_id"].to_numpy(np.int64))
    if unknown.any():
        raise MtrsUserError(f"ratings: item_id {item_ids[unknown][0]} is not in the items table.")
    ts = ratings["timestamp"].to_numpy(np.int64)
    rating = ratings["rating"].to_numpy(np.float64)
    interactions = pd.DataFrame(
        {
            "event_id": np.arange(len(ratings), dtype=np.int64),
            "user_id": ratings["user_id"].to_numpy(np.int64),
            "item_id": item_ids,
            "timestamp": ts,
            "hour": (ts // 3600) % 24,
            # Day 0 of the Unix epoch (1970-01-01) was a Thursday, weekday 3.
            "weekday": (ts // 86400 + 3) % 7,
            "like": (rating >= 4).astype(np.float64),
            "rating": rating,
        }
    )
    users = pd.DataFrame(
        {
            "user_id": ml.users["user_id"].to_numpy(np.int64),
            "occupation": ml.users["occupation"].astype(str).to_numpy(),
            "zip_prefix": ml.users["zip"].astype(str).str[:2].to_numpy(),
            "gender": (ml.users["gender"] == "F").to_numpy(np.float64),
            "age_group": age_group(ml.users["age"].to_numpy()),
        }
    )
    items = ml.items[["item_id", "genres", "year"]].reset_index(drop=True)
    return MultitaskTables(interactions=interactions, users=users, items=items)


def write_tables(
    tables: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
    out_dir: str | Path,
    fmt: str = "parquet",
) -> dict[str, Path]:
    """Writes ``interactions``, ``users`` and ``items`` to ``out_dir``.

    Each file is written under a temporary name and renamed, so no half-written table is left.

    Args:
        tables: ``(interactions, users, items)`` as returned by :func:`build_multitask_tables`.
        out_dir: Output directory (created if needed).
        fmt: ``"parquet"`` or ``"csv"``.

    Returns:
        Table name → written path.
    """
    if fmt not in ("parquet", "csv"):
        raise MtrsUserError(f"output format {fmt!r} is not supported; use 'parquet' or 'csv'.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, frame in zip(MultitaskTables._fields, tables, strict=True):
        path = out / f"{name}.{fmt}"
        tmp = out / f".{name}.{fmt}.part"
        if fmt == "parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)
        os.replace(tmp, path)
        paths[name] = path
    return paths
