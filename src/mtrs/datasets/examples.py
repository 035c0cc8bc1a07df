"""Small synthetic logs in the layouts people bring (``docs/own-data.md``), with known truth.

Each writer puts CSV files in a directory, in the layout of a kind of public log, for the
matching config in ``configs/examples/`` (copy it next to the files):

* ``ratings``: a ratings-only movie log (userId, movieId, half-star rating, timestamp) and a
  movies table (title, pipe-separated genres) — no negatives, no derived labels.
* ``impressions``: an impression log without user ids, item ids or times (16 categorical
  and 8 numeric fields, click and conversion), shipped as given train/valid/test files.
* ``numeric``: a purely numeric table with two regression targets.

The generating probabilities and means come back too, so tests can compare a trained
model with the best possible one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mtrs.errors import MtrsUserError

GENRES = ("Action", "Comedy", "Drama", "Horror", "Romance", "SciFi", "Thriller", "Animation")
EXAMPLES = ("ratings", "impressions", "numeric")


@dataclass
class Example:
    """A written example: its files and the truth behind them.

    Attributes:
        files: The data files by role (``interactions``, ``items``, ``train`` …).
        truth: Known per-row quantities of the test rows (e.g. ``p_click`` of test.csv).
    """

    files: dict[str, Path]
    truth: dict[str, np.ndarray] = field(default_factory=dict)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def write_ratings(out: Path, users: int = 300, items: int = 150, seed: int = 0) -> Example:
    """A ratings-only log: each user rates the movies whose genres suit them, in time order.

    Users pick movies with probability ∝ popularity × exp(taste · genres), so what a user
    rates is predictable from their taste, and the stars (0.5–5 in halves) rise with it.
    """
    rng = np.random.default_rng(seed)
    n_g = len(GENRES)
    item_genres = (rng.random((items, n_g)) < 0.25).astype(float)
    item_genres[np.arange(items), rng.integers(0, n_g, items)] = 1.0
    quality = rng.normal(0.0, 0.5, items)
    popularity = rng.pareto(1.5, items) + 0.2
    taste = rng.normal(0.0, 1.0, (users, n_g))
    rows = []
    t0 = 1_000_000_000
    for u in range(users):
        n_rated = int(rng.integers(15, 40))
        affinity = taste[u] @ item_genres.T / np.sqrt(item_genres.sum(1))
        w = popularity * np.exp(1.5 * affinity)
        chosen = rng.choice(items, size=n_rated, replace=False, p=w / w.sum())
        stars = 3.0 + 1.2 * affinity[chosen] + quality[chosen] + rng.normal(0, 0.6, n_rated)
        stars = np.clip(np.round(stars * 2) / 2, 0.5, 5.0)
        times = t0 + np.sort(rng.integers(0, 90 * 86400, n_rated))
        rows += [
            (u + 1, int(i) + 1, float(s), int(t))
            for i, s, t in zip(chosen, stars, times, strict=True)
        ]
    ratings = pd.DataFrame(rows, columns=["userId", "movieId", "rating", "timestamp"])
    titles = [f"Movie {i + 1} ({1970 + (i * 7) % 50})" for i in range(items)]
    genres = ["|".join(g for g, on in zip(GENRES, row, strict=True) if on) for row in item_genres]
    movies = pd.DataFrame({"movieId": np.arange(1, items + 1), "title": titles, "genres": genres})
    out.mkdir(parents=True, exist_ok=True)
    files = {"interactions": out / "ratings.csv", "items": out / "movies.csv"}
    ratings.sort_values(["timestamp", "userId"], kind="stable").to_csv(
        files["interactions"], index=False
    )
    movies.to_csv(files["items"], index=False)
    return Example(files)


def write_impressions(out: Path, rows: int = 12_000, seed: int = 0) -> Example:
    """An id-less impression log split into given train (70%), valid (15%) and test files.

    Click: logistic in the effects of fields ``c1``–``c3`` and ``n1``; conversion happens only
    after a click, logistic in ``c4``, ``c5`` and ``n2`` plus a share of the click logit (the
    tasks are related, as in real funnels). The other fields are noise.
    """
    rng = np.random.default_rng(seed)
    cats = {f"c{j}": rng.integers(0, [4, 8, 12, 20, 30, 50, 6, 10][j % 8] + 2, rows) for j in
            range(1, 17)}  # fmt: skip
    nums = {f"n{j}": rng.normal(0, 1, rows) for j in range(1, 9)}
    eff = {c: rng.normal(0, 1.0, 60) for c in ("c1", "c2", "c3", "c4", "c5")}
    z_click = -1.2 + eff["c1"][cats["c1"]] + 0.8 * eff["c2"][cats["c2"]]
    z_click = z_click + 0.6 * eff["c3"][cats["c3"]] + 0.7 * nums["n1"]
    z_conv = -0.6 + eff["c4"][cats["c4"]] + 0.7 * eff["c5"][cats["c5"]] + 0.6 * nums["n2"]
    z_conv = z_conv + 0.4 * z_click
    p_click, p_conv = _sigmoid(z_click), _sigmoid(z_conv)
    click = (rng.random(rows) < p_click).astype(int)
    conversion = click * (rng.random(rows) < p_conv).astype(int)
    frame = pd.DataFrame({**{c: [f"{c}_{v}" for v in x] for c, x in cats.items()}, **nums})
    frame["click"], frame["conversion"] = click, conversion
    cut1, cut2 = int(0.7 * rows), int(0.85 * rows)
    out.mkdir(parents=True, exist_ok=True)
    files = {p: out / f"{p}.csv" for p in ("train", "valid", "test")}
    for path, (a, b) in zip(files.values(), ((0, cut1), (cut1, cut2), (cut2, rows)), strict=True):
        frame.iloc[a:b].round(5).to_csv(path, index=False)
    truth = {"p_click": p_click[cut2:], "p_click_conversion": (p_click * p_conv)[cut2:]}
    return Example(files, truth)


def write_numeric(out: Path, rows: int = 6000, seed: int = 0) -> Example:
    """A numeric table (``x1``–``x10``) with two related regression targets.

    ``y_price`` = 3·x1 − 2·x2 + 1.5·x3·x4 + noise (σ 1); ``y_demand`` = −2·x1 + 2·sin(2·x5) +
    x6 + noise (σ 1). The test rows' noise-free means come back as truth.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (rows, 10))
    mean_price = 3 * x[:, 0] - 2 * x[:, 1] + 1.5 * x[:, 2] * x[:, 3]
    mean_demand = -2 * x[:, 0] + 2 * np.sin(2 * x[:, 4]) + x[:, 5]
    frame = pd.DataFrame(x.round(5), columns=[f"x{j}" for j in range(1, 11)])
    frame["y_price"] = (mean_price + rng.normal(0, 1, rows)).round(5)
    frame["y_demand"] = (mean_demand + rng.normal(0, 1, rows)).round(5)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "table.csv"
    frame.to_csv(path, index=False)
    return Example({"interactions": path}, {"mean_price": mean_price, "mean_demand": mean_demand})


def write_example(name: str, out: Path, seed: int = 0) -> Example:
    """Write the example ``name`` (one of :data:`EXAMPLES`) into ``out``.

    Raises:
        MtrsUserError: An unknown example name.
    """
    if name == "ratings":
        return write_ratings(out, seed=seed)
    if name == "impressions":
        return write_impressions(out, seed=seed)
    if name == "numeric":
        return write_numeric(out, seed=seed)
    raise MtrsUserError(f"unknown example '{name}' (known: {', '.join(EXAMPLES)})")
