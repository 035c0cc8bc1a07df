"""Synthetic e-commerce impression log with known ground-truth click and purchase probabilities."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from mtrs.errors import MtrsUserError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

AGE_GROUPS: tuple[str, ...] = ("18-24", "25-34", "35-44", "45-54", "55+")
GENDERS: tuple[str, ...] = ("F", "M")
DEVICES: tuple[str, ...] = ("ios", "android", "web")
CITY_TIERS: tuple[int, ...] = (1, 2, 3, 4)

#: 2026-01-01T00:00:00Z; the log starts at midnight UTC so that ``hour`` is the UTC hour.
START_TIMESTAMP = 1_767_225_600
LATENT_DIM = 8
#: Weight of the user × item affinity (latent dot product / sqrt(LATENT_DIM)) in the click logit.
CLICK_AFFINITY = 0.85

# Target base rates; the intercepts are solved for so any spec lands on them.
_TARGET_CTR = 0.10
_TARGET_CVR = 0.22

_AGE_PROBS = np.array([0.18, 0.32, 0.24, 0.15, 0.11])
_TIER_PROBS = np.array([0.20, 0.30, 0.30, 0.20])
# Younger users skew to phones, older users to the web: device carries a weak age signal.
_DEVICE_BY_AGE = np.array(
    [
        [0.45, 0.45, 0.10],
        [0.42, 0.40, 0.18],
        [0.35, 0.38, 0.27],
        [0.28, 0.35, 0.37],
        [0.20, 0.30, 0.50],
    ]
)
# Traffic is low overnight, rises through the day and peaks in the evening (UTC taken as local).
_HOUR_TRAFFIC = np.array(
    [
        [1.0, 0.6, 0.4, 0.3, 0.3, 0.4, 0.8, 1.4, 2.0, 2.2, 2.3, 2.4],
        [2.6, 2.5, 2.4, 2.4, 2.5, 2.8, 3.2, 3.6, 3.9, 3.7, 2.9, 1.8],
    ]
).ravel()
# Higher tiers are smaller cities, whose users react more strongly to price.
_TIER_PRICE_SENSITIVITY = np.array([0.15, 0.30, 0.45, 0.60])
_DEVICE_CLICK_EFFECT = np.array([0.10, 0.0, -0.15])
_DEVICE_PURCHASE_EFFECT = np.array([0.15, -0.05, 0.10])

# Share of impressions drawn from global popularity rather than the user's interests.
_POPULARITY_EXPOSURE = 0.5
_SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class SynthSpec:
    """Size and seed of a synthetic log.

    Args:
        num_users: Number of users.
        num_items: Number of items.
        num_events: Number of impressions (rows of ``interactions``).
        num_categories: Number of item categories.
        num_brands: Number of brands.
        days: Length of the log in days, starting 2026-01-01 UTC.
        seed: Seed of every random draw; equal specs give identical data.
    """

    num_users: int = 2000
    num_items: int = 500
    num_events: int = 100_000
    num_categories: int = 12
    num_brands: int = 60
    days: int = 30
    seed: int = 0


@dataclass(frozen=True)
class ClickFactors:
    """The click logit split into its user × item affinity and everything else.

    ``logit(p_click) = CLICK_AFFINITY * (user_latent[u] · item_latent[i]) / sqrt(LATENT_DIM)
    + rest_logit``, per impression. It lets an analysis ask how well the affinity can be learnt
    from the log at all (e.g. ``benchmarks/synth_bound.py``); it is never written to disk.

    Args:
        user_latent: float [num_users, LATENT_DIM], the users' taste vectors.
        item_latent: float [num_items, LATENT_DIM], the items' vectors.
        rest_logit: float [num_events], the click logit less the affinity term (intercept,
            popularity, hour, device, price), aligned with ``interactions``.
    """

    user_latent: FloatArray
    item_latent: FloatArray
    rest_logit: FloatArray


@dataclass
class SynthData:
    """A generated log and its ground truth.

    Args:
        interactions: One row per impression: ``event_id``, ``user_id``, ``item_id``,
            ``timestamp``, ``hour``, ``device``, ``click``, ``purchase`` (click and purchase).
        users: ``user_id``, ``age_group``, ``gender``, ``city_tier``.
        items: ``item_id``, ``category``, ``brand``, ``price``.
        truth: ``event_id``, ``p_click`` (true click probability) and ``p_purchase``
            (true purchase probability given a click), aligned with ``interactions``.
        factors: The latent vectors behind ``p_click`` (not written by :func:`write`).
    """

    interactions: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame
    truth: pd.DataFrame
    factors: ClickFactors | None = None


@dataclass(frozen=True)
class _Users:
    age: IntArray
    gender: IntArray
    tier: IntArray
    latent: FloatArray
    activity: FloatArray
    price_sensitivity: FloatArray
    primary_device: IntArray


@dataclass(frozen=True)
class _Items:
    category: IntArray
    brand: IntArray
    latent: FloatArray
    popularity: FloatArray
    log_price: FloatArray


@dataclass(frozen=True)
class _Events:
    user: IntArray
    item: IntArray
    timestamp: IntArray
    hour: IntArray
    device: IntArray


def _validate(spec: SynthSpec) -> None:
    for name in ("num_users", "num_items", "num_events", "num_categories", "num_brands", "days"):
        value = getattr(spec, name)
        if not isinstance(value, int) or value < 1:
            raise MtrsUserError(
                f"synth spec field '{name}' must be a positive integer, got {value!r}."
            )
    if spec.num_categories > spec.num_items:
        raise MtrsUserError(
            f"synth spec field 'num_categories' ({spec.num_categories}) must not exceed "
            f"'num_items' ({spec.num_items})."
        )


def _sigmoid(x: FloatArray) -> FloatArray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)), dtype=np.float64)


def _solve_intercept(logits: FloatArray, target: float, weights: FloatArray | None = None) -> float:
    """Finds ``b`` with weighted mean of ``sigmoid(b + logits)`` equal to ``target`` (bisection)."""
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        mean = float(np.average(_sigmoid(mid + logits), weights=weights))
        if mean < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _zscore(x: FloatArray) -> FloatArray:
    std = float(x.std())
    return (x - x.mean()) / (std if std > 0 else 1.0)


def _categorical(rng: np.random.Generator, cdf: FloatArray) -> IntArray:
    """Draws one category per row of a row-wise CDF matrix ``(n, k)``."""
    u: FloatArray = rng.random(size=(cdf.shape[0], 1))
    idx = (cdf < u * cdf[:, -1:]).sum(axis=1)
    return np.minimum(idx, cdf.shape[1] - 1).astype(np.int64)


def _make_users(
    spec: SynthSpec, rng: np.random.Generator, centroids: FloatArray
) -> tuple[_Users, FloatArray]:
    n = spec.num_users
    age = rng.choice(len(AGE_GROUPS), size=n, p=_AGE_PROBS).astype(np.int64)
    gender = rng.integers(0, 2, size=n).astype(np.int64)
    tier = rng.choice(len(CITY_TIERS), size=n, p=_TIER_PROBS).astype(np.int64)
    # Demographics set the mean of the taste vector so that behaviour reveals them; gender is
    # the strongest axis, age a smaller smooth drift, the rest is individual taste.
    gender_axis = rng.normal(size=LATENT_DIM)
    gender_axis *= 1.1 / np.linalg.norm(gender_axis)
    age_axis = rng.normal(size=LATENT_DIM)
    age_axis *= 0.35 / np.linalg.norm(age_axis)
    age_pos = age.astype(np.float64) - 2.0
    latent = (
        np.where(gender == 0, -1.0, 1.0)[:, None] * gender_axis
        + age_pos[:, None] * age_axis
        + rng.normal(scale=0.7, size=(n, LATENT_DIM))
    )
    activity = rng.lognormal(mean=0.0, sigma=1.0, size=n)
    price_sensitivity = _TIER_PRICE_SENSITIVITY[tier] + rng.normal(scale=0.1, size=n)
    device_cdf = np.cumsum(_DEVICE_BY_AGE[age], axis=1)
    primary_device = _categorical(rng, device_cdf)
    # Exposure follows interests at the category level, as a deployed recommender's would.
    category_logits = 1.2 * (latent @ centroids.T) / np.sqrt(LATENT_DIM)
    category_logits -= category_logits.max(axis=1, keepdims=True)
    category_cdf = np.cumsum(np.exp(category_logits), axis=1)
    users = _Users(age, gender, tier, latent, activity, price_sensitivity, primary_device)
    return users, category_cdf


def _make_items(
    spec: SynthSpec, rng: np.random.Generator, centroids: FloatArray
) -> tuple[_Items, FloatArray]:
    n, k = spec.num_items, spec.num_categories
    # Every category gets at least one item; the rest are spread with uneven category sizes.
    category_weights = rng.dirichlet(np.full(k, 2.0))
    extra = rng.choice(k, size=n - k, p=category_weights)
    category = np.concatenate([np.arange(k), extra]).astype(np.int64)
    rng.shuffle(category)
    # Brands have a home category; most items carry a brand from their own category.
    brand_home = np.arange(spec.num_brands) % k
    counts = np.bincount(brand_home, minlength=k)[category]
    home_slot = np.floor(rng.random(n) * counts).astype(np.int64)
    random_brand = rng.integers(0, spec.num_brands, size=n)
    # Brand b's home category is b % k, so slot j of category c is brand j * k + c.
    home_brand = np.where(counts > 0, home_slot * k + category, random_brand)
    brand = np.where(rng.random(n) < 0.85, home_brand, random_brand).astype(np.int64)
    latent = centroids[category] + rng.normal(scale=0.6, size=(n, LATENT_DIM))
    # Zipf-like popularity over a random ranking of the items.
    rank = rng.permutation(n).astype(np.float64) + 1.0
    popularity = rank**-0.9
    category_log_price = rng.uniform(np.log(8.0), np.log(300.0), size=k)
    brand_premium = rng.normal(scale=0.35, size=spec.num_brands)
    raw_log_price = category_log_price[category] + brand_premium[brand] + rng.normal(0.0, 0.3, n)
    # Prices are published in cents; the truth uses the published price, so a model sees all of it.
    log_price = np.log(np.maximum(np.round(np.exp(raw_log_price), 2), 0.01))
    brand_quality = rng.normal(scale=0.4, size=spec.num_brands)
    return _Items(category, brand, latent, popularity, log_price), brand_quality


def _draw_items(
    rng: np.random.Generator, items: _Items, category_cdf: FloatArray, user: IntArray
) -> IntArray:
    """Draws an item per impression from popularity, partly steered by the user's interests."""
    n = user.shape[0]
    # Items sorted by category so each category is one contiguous slice of the cumulative mass.
    order = np.argsort(items.category, kind="stable")
    cum = np.cumsum(items.popularity[order])
    k = category_cdf.shape[1]
    cat_sorted = items.category[order]
    ends = np.searchsorted(cat_sorted, np.arange(k), side="right")
    starts = np.searchsorted(cat_sorted, np.arange(k), side="left")
    cum_end = cum[ends - 1]
    cum_start = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0.0)
    steered_cat = _categorical(rng, category_cdf[user])
    u = rng.random(n)
    steered = cum_start[steered_cat] + u * (cum_end[steered_cat] - cum_start[steered_cat])
    global_draw = u * cum[-1]
    target = np.where(rng.random(n) < _POPULARITY_EXPOSURE, global_draw, steered)
    pos = np.searchsorted(cum, target, side="right")
    return order[np.minimum(pos, len(order) - 1)].astype(np.int64)


def _make_events(
    spec: SynthSpec,
    rng: np.random.Generator,
    users: _Users,
    items: _Items,
    category_cdf: FloatArray,
) -> _Events:
    n = spec.num_events
    user = rng.choice(spec.num_users, size=n, p=users.activity / users.activity.sum())
    user = user.astype(np.int64)
    day = rng.integers(0, spec.days, size=n)
    hour = rng.choice(24, size=n, p=_HOUR_TRAFFIC / _HOUR_TRAFFIC.sum())
    second = rng.integers(0, 3600, size=n)
    timestamp = START_TIMESTAMP + day * _SECONDS_PER_DAY + hour * 3600 + second
    # Users mostly stay on their own device, sometimes switching.
    other_device = _categorical(rng, np.cumsum(_DEVICE_BY_AGE[users.age[user]], axis=1))
    device = np.where(rng.random(n) < 0.8, users.primary_device[user], other_device)
    item = _draw_items(rng, items, category_cdf, user)
    order = np.argsort(timestamp, kind="stable")
    return _Events(
        user=user[order],
        item=item[order].astype(np.int64),
        timestamp=timestamp[order].astype(np.int64),
        hour=hour[order].astype(np.int64),
        device=device[order].astype(np.int64),
    )


def _true_probabilities(
    rng: np.random.Generator, users: _Users, items: _Items, brand_quality: FloatArray, ev: _Events
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The true p(click), p(purchase | click) and the click logit less its affinity term."""
    affinity = np.einsum("ij,ij->i", users.latent[ev.user], items.latent[ev.item]) / np.sqrt(
        LATENT_DIM
    )
    log_pop = np.log(items.popularity)
    pop_effect = _zscore(log_pop)[ev.item]
    price = _zscore(items.log_price)[ev.item]
    sensitivity = users.price_sensitivity[ev.user]
    # Browsing peaks in the evening; people click more then, and less in the small hours.
    hour_effect = 0.25 * np.cos(2.0 * np.pi * (ev.hour - 21.0) / 24.0)
    click_logit = (
        CLICK_AFFINITY * affinity
        + 0.25 * pop_effect
        + hour_effect
        + _DEVICE_CLICK_EFFECT[ev.device]
        - 0.6 * sensitivity * price
    )
    # A user's brand taste is a fixed random projection of their latent taste.
    num_brands = brand_quality.shape[0]
    brand_axes = rng.normal(scale=1.0 / np.sqrt(LATENT_DIM), size=(num_brands, LATENT_DIM))
    brand_affinity = np.einsum("ij,ij->i", users.latent[ev.user], brand_axes[items.brand[ev.item]])
    purchase_logit = (
        0.45 * affinity
        + brand_quality[items.brand[ev.item]]
        + 0.3 * brand_affinity
        + _DEVICE_PURCHASE_EFFECT[ev.device]
        - 2.2 * sensitivity * price
    )
    b0 = _solve_intercept(click_logit, _TARGET_CTR)
    p_click = _sigmoid(b0 + click_logit)
    # The purchase intercept targets the rate among clicks, so it is solved weighting by p_click.
    c0 = _solve_intercept(purchase_logit, _TARGET_CVR, weights=p_click)
    p_purchase = _sigmoid(c0 + purchase_logit)
    return p_click, p_purchase, b0 + click_logit - CLICK_AFFINITY * affinity


def generate(spec: SynthSpec) -> SynthData:
    """Generates a synthetic impression log whose true probabilities are known.

    Users have demographics (age group, gender, city tier) that shape a latent taste vector;
    items have a category, brand, price and a latent vector near their category's centroid.
    Impressions are drawn by user activity and item popularity, partly steered towards the
    user's interests. ``click ~ Bernoulli(p_click)`` and ``purchase = click * Bernoulli(
    p_purchase)``, with both probabilities returned in ``truth``.

    Args:
        spec: Sizes and seed.

    Returns:
        The interactions, user and item tables and the per-event ground truth.

    Raises:
        MtrsUserError: If a size in ``spec`` is not a positive integer.
    """
    _validate(spec)
    rng = np.random.default_rng(spec.seed)
    centroids = rng.normal(size=(spec.num_categories, LATENT_DIM))
    users, category_cdf = _make_users(spec, rng, centroids)
    items, brand_quality = _make_items(spec, rng, centroids)
    ev = _make_events(spec, rng, users, items, category_cdf)
    p_click, p_purchase, rest_logit = _true_probabilities(rng, users, items, brand_quality, ev)
    click = (rng.random(spec.num_events) < p_click).astype(np.int64)
    purchase = click * (rng.random(spec.num_events) < p_purchase).astype(np.int64)

    event_id = np.arange(spec.num_events, dtype=np.int64)
    interactions = pd.DataFrame(
        {
            "event_id": event_id,
            "user_id": ev.user,
            "item_id": ev.item,
            "timestamp": ev.timestamp,
            "hour": ev.hour,
            "device": pd.array(np.array(DEVICES)[ev.device], dtype="str"),
            "click": click,
            "purchase": purchase,
        }
    )
    users_df = pd.DataFrame(
        {
            "user_id": np.arange(spec.num_users, dtype=np.int64),
            "age_group": pd.array(np.array(AGE_GROUPS)[users.age], dtype="str"),
            "gender": pd.array(np.array(GENDERS)[users.gender], dtype="str"),
            "city_tier": np.array(CITY_TIERS, dtype=np.int64)[users.tier],
        }
    )
    width_b = max(3, len(str(spec.num_brands - 1)))
    width_c = max(2, len(str(spec.num_categories - 1)))
    items_df = pd.DataFrame(
        {
            "item_id": np.arange(spec.num_items, dtype=np.int64),
            "category": pd.array([f"cat_{c:0{width_c}d}" for c in items.category], dtype="str"),
            "brand": pd.array([f"brand_{b:0{width_b}d}" for b in items.brand], dtype="str"),
            "price": np.round(np.exp(items.log_price), 2).astype(np.float64),
        }
    )
    truth = pd.DataFrame({"event_id": event_id, "p_click": p_click, "p_purchase": p_purchase})
    factors = ClickFactors(users.latent, items.latent, rest_logit)
    return SynthData(interactions, users_df, items_df, truth, factors)


def write(
    data: SynthData, out_dir: str | Path, fmt: Literal["csv", "parquet"] = "csv"
) -> dict[str, Path]:
    """Writes the four tables of ``data`` into ``out_dir``.

    Each table goes to a temporary file first and is renamed into place, so a failure never
    leaves a half-written table behind.

    Args:
        data: The generated data.
        out_dir: Directory to write into; created if missing.
        fmt: ``"csv"`` or ``"parquet"``.

    Returns:
        Table name (``interactions``, ``users``, ``items``, ``truth``) to the written path.

    Raises:
        MtrsUserError: If ``fmt`` is not ``"csv"`` or ``"parquet"``.
    """
    if fmt not in ("csv", "parquet"):
        raise MtrsUserError(f"synth output format must be 'csv' or 'parquet', got {fmt!r}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = {
        "interactions": data.interactions,
        "users": data.users,
        "items": data.items,
        "truth": data.truth,
    }
    staged = {name: (out / f".{name}.{fmt}.tmp", out / f"{name}.{fmt}") for name in tables}
    try:
        for name, frame in tables.items():
            tmp = staged[name][0]
            if fmt == "csv":
                frame.to_csv(tmp, index=False)
            else:
                frame.to_parquet(tmp, index=False)
    except BaseException:
        for tmp, _ in staged.values():
            tmp.unlink(missing_ok=True)
        raise
    for tmp, final in staged.values():
        os.replace(tmp, final)
    return {name: final for name, (_, final) in staged.items()}
