"""Readable lists: item titles and display columns with every item, popularity fallback labelled.

A tiny synthetic job whose items table has a ``title`` column (and ``category`` shown as a
display column); every title and popularity value is checked against the tables by hand.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import tomli_w

from mtrs.artifact import load_model, save_job, write_manifest
from mtrs.cli.main import run
from mtrs.config.load import config_from_dict
from mtrs.data.split import TRAIN
from mtrs.data.tables import check_item_columns
from mtrs.datasets.synth import SynthSpec, generate, write
from mtrs.errors import MtrsUserError
from mtrs.job import run_job

NUM_ITEMS = 30
UNTITLED = 29  # an item whose title cell is empty


@dataclass
class Titled:
    root: Path
    raw: dict[str, Any]
    items: pd.DataFrame  # the items table as written (read back from items.csv)
    train: pd.DataFrame  # the job's training rows
    model: Path
    user: str  # a known user with many clicks


def _title(item: int) -> str:
    # Not a function of the catalog order, and no title contains an item id as a word.
    return f"Title {(7 * item) % NUM_ITEMS + 100}"


@pytest.fixture(scope="module")
def titled(tmp_path_factory: pytest.TempPathFactory) -> Titled:
    root = tmp_path_factory.mktemp("titled")
    data = generate(SynthSpec(num_users=80, num_items=NUM_ITEMS, num_events=3000, seed=3))
    titles: list[str | None] = [_title(i) for i in data.items["item_id"]]
    titles[UNTITLED] = None
    data.items["title"] = titles
    write(data, root)
    raw = tomllib.loads(resources.files("mtrs").joinpath("configs/quickstart.toml").read_text())
    for key in ("interactions", "users", "items"):
        raw["data"][key] = str(root / raw["data"][key])
    raw["data"].update({"item_title_col": "title", "display_cols": ["category"]})
    raw["train"].update({"epochs": 1, "progress": False, "device": "cpu"})
    job = run_job(config_from_dict(raw))
    model = save_job(job, root / "model")
    memory = job.prepared.in_memory()
    train = memory.frame[memory.split == TRAIN]
    ev = data.interactions
    user = str(int(ev[ev["click"] == 1].groupby("user_id").size().idxmax()))
    items = pd.read_csv(root / "items.csv")
    return Titled(root, raw, items, train, model, user)


def _recommend(model: Path, user: str, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    capsys.readouterr()
    assert run(["recommend", str(model), "--user", user, "--k", "5", *extra]) == 0
    return capsys.readouterr().out


def _by_hand(t: Titled, item: str) -> tuple[str | None, str]:
    """The item's title and category, read from items.csv."""
    row = t.items.set_index("item_id").loc[int(item)]
    return (None if pd.isna(row["title"]) else row["title"]), row["category"]


def _row(out: str, item: str, *cells: str) -> str:
    """The table line whose item cell is ``item``, followed by ``cells`` (in order)."""
    pattern = rf"\b{re.escape(item)}\b" + "".join(rf"\W+{re.escape(c)}" for c in cells)
    lines = [line for line in out.splitlines() if re.search(pattern, line)]
    assert lines, f"no row with item {item} then {cells} in:\n{out}"
    return lines[0]


# ----- the catalog carries the titles -------------------------------------------------------
def test_saved_catalog_has_every_items_title(titled: Titled) -> None:
    cat = load_model(titled.model).catalog
    assert cat.titles is not None and len(cat.titles) == len(cat.item_ids) == NUM_ITEMS
    shown = zip(cat.item_ids, cat.titles, cat.display["category"], strict=True)
    for item, title, category in shown:
        assert (title, category) == _by_hand(titled, item)
    assert cat.titles[cat.item_ids.index(str(UNTITLED))] is None
    doc = json.loads((titled.model / "catalog.json").read_text())
    assert doc["titles"] == cat.titles and list(doc["display"]) == ["category"]


# ----- a known user -------------------------------------------------------------------------
def test_known_user_json_has_the_title_of_each_item(
    titled: Titled, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = json.loads(_recommend(titled.model, titled.user, capsys, "--json"))
    assert doc["fallback"] is False and doc["source"] == "model"
    entries = [*doc["merged"], *(e for v in doc["lists"].values() for e in v)]
    assert len(entries) == 4 * 5
    for e in entries:
        title, category = _by_hand(titled, e["item"])
        assert e["title"] == title and e["display"] == {"category": category}
        assert isinstance(e["score"], float) and "popularity" not in e


def test_known_user_table_shows_the_title_next_to_each_item(
    titled: Titled, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = json.loads(_recommend(titled.model, titled.user, capsys, "--json"))
    out = _recommend(titled.model, titled.user, capsys)
    assert "merged (weighted_product: click=1, purchase=2)" in out and "title" in out
    assert "popularity" not in out
    for e in [*doc["merged"], *doc["lists"]["click"]]:
        title, category = _by_hand(titled, e["item"])
        _row(out, e["item"], *([title] if title else []), category, f"{e['score']:.3f}")


# ----- an unknown user: popularity, labelled -------------------------------------------------
def test_unknown_user_gets_normalised_popularity_not_scores(
    titled: Titled, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = json.loads(_recommend(titled.model, "nobody", capsys, "--json"))
    assert doc["fallback"] is True and doc["source"] == "popularity (unknown user)"
    assert doc["merge"] == {"strategy": "popularity", "weights": {}} and doc["profile"] == {}
    # Shares of the training clicks (the merged list: the training interactions, which the
    # quickstart's history counts as clicks) and of the training purchases, by hand.
    clicks = titled.train.groupby("item_id")["click"].sum()
    purchases = titled.train.groupby("item_id")["purchase"].sum()
    both = (titled.train["click"] * titled.train["purchase"]).groupby(titled.train["item_id"]).sum()
    expected = {
        "merged": clicks / clicks.sum(),
        "click": clicks / clicks.sum(),
        "purchase": purchases / purchases.sum(),
        "click_purchase": both / both.sum(),  # the funnel's joint task: clicked and purchased
    }
    for name, share in expected.items():
        entries = doc["merged"] if name == "merged" else doc["lists"][name]
        top = sorted(share.to_numpy(), reverse=True)[:5]
        assert [e["popularity"] for e in entries] == pytest.approx(top, rel=1e-6), name
        for e in entries:
            assert "score" not in e
            assert e["popularity"] == pytest.approx(share[int(e["item"])], rel=1e-6)
            assert e["title"] == _by_hand(titled, e["item"])[0]
    assert sum(clicks / clicks.sum()) == pytest.approx(1.0)

    out = _recommend(titled.model, "nobody", capsys)
    assert "unknown user — popularity fallback" in out and "share of training interactions" in out
    assert "merged (popularity)" in out and "score" not in out
    for e in doc["merged"]:
        title, category = _by_hand(titled, e["item"])
        pct = f"{100 * expected['merged'][int(e['item'])]:.2f}%"
        line = _row(out, e["item"], *([title] if title else []), category, pct)
        # Never the raw count the fallback used to print as a task score.
        assert f"({clicks[int(e['item'])]:.3f})" not in line


# ----- bad config: exit 2, one line naming the field ----------------------------------------
@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("item_title_col", "name", "data.item_title_col = 'name'"),
        ("display_cols", ["category", "colour"], "data.display_cols = 'colour'"),
    ],
)
def test_bad_item_column_is_a_one_line_user_error(
    titled: Titled,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    key: str,
    value: Any,
    named: str,
) -> None:
    raw = json.loads(json.dumps(titled.raw))
    raw["data"][key] = value
    config = tmp_path / "job.toml"
    config.write_text(tomli_w.dumps(raw))
    capsys.readouterr()
    assert run(["train", str(config), "--out", str(tmp_path / "model")]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert named in err and str(titled.root / "items.csv") in err
    assert not (tmp_path / "model").exists()


def test_title_column_without_items_table_is_a_user_error(titled: Titled) -> None:
    cfg = config_from_dict(titled.raw)
    with pytest.raises(MtrsUserError, match=r"data.item_title_col = 'title' needs an items table"):
        check_item_columns(cfg.data, None)
    cfg.data.item_title_col = None
    cfg.data.display_cols = []
    check_item_columns(cfg.data, None)  # nothing named, nothing needed


# ----- a model directory saved before titles ----------------------------------------------------
def test_old_catalog_without_titles_loads_and_recommends(
    titled: Titled, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    old = tmp_path / "old"
    shutil.copytree(titled.model, old)
    meta = json.loads((old / "catalog.json").read_text())
    (old / "catalog.json").write_text(
        json.dumps({"item_ids": meta["item_ids"], "user_ids": meta["user_ids"]})
    )
    # An edited file no longer matches its checksum; the old format's own manifest does.
    with pytest.raises(MtrsUserError, match="checksum"):
        load_model(old)
    write_manifest(old)
    cat = load_model(old).catalog
    assert cat.titles is None and cat.display == {}
    doc = json.loads(_recommend(old, titled.user, capsys, "--json"))
    assert all(e["title"] is None and e["display"] == {} for e in doc["merged"])
    new = json.loads(_recommend(titled.model, titled.user, capsys, "--json"))
    assert [e["item"] for e in doc["merged"]] == [e["item"] for e in new["merged"]]
    out = _recommend(old, titled.user, capsys)
    assert "title" not in out and "category" not in out
    for e in doc["merged"]:
        _row(out, e["item"], f"{e['score']:.3f}")
