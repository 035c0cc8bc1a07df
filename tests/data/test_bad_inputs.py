"""Bad values in the data: named where they are (file, column, row), never silently used."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mtrs.cli.main import run
from mtrs.config.models import JobConfig
from mtrs.data.log import FrameLog
from mtrs.errors import MtrsUserError
from mtrs.prepare import prepare


def _events(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "user_id": rng.integers(0, 10, n),
            "item_id": rng.integers(0, 8, n),
            "timestamp": np.arange(n) * 10,
            "click": rng.integers(0, 2, n),
        }
    )


def _cfg(tmp_path: Path, events: pd.DataFrame, items: pd.DataFrame | None = None,
         **extra: Any) -> JobConfig:  # fmt: skip
    events.to_csv(tmp_path / "events.csv", index=False)
    data: dict[str, Any] = {"interactions": str(tmp_path / "events.csv")}
    features = [{"name": "item_id", "kind": "categorical", "group": "item"}]
    if items is not None:
        items.to_csv(tmp_path / "items.csv", index=False)
        data["items"] = str(tmp_path / "items.csv")
        features.append({"name": "price", "kind": "numeric", "group": "item"})
    return JobConfig.model_validate(
        {
            "data": data,
            "features": features,
            "tasks": [{"name": "click", "type": "binary", "label": "click"}],
            "split": {"method": "temporal"},
            "train": {"progress": False, "epochs": 2},
            **extra,
        }
    )


def _job_toml(tmp_path: Path, interactions: str | None, item_extra: str = "", epochs: int = 1,
              tail: str = "") -> Path:  # fmt: skip
    """A one-task CLI config over ``interactions`` (the item id its only feature)."""
    path = tmp_path / "job.toml"
    path.write_text(
        f'[data]\ninteractions = "{interactions}"\n'
        '[[features]]\nname = "item_id"\nkind = "categorical"\ngroup = "item"\n'
        f"{item_extra}"
        '[[tasks]]\nname = "click"\ntype = "binary"\nlabel = "click"\n'
        f"[train]\nepochs = {epochs}\nprogress = false\n{tail}"
    )
    return path


def test_empty_timestamps_are_named_with_their_count(tmp_path: Path) -> None:
    ev = _events().astype({"timestamp": float})
    ev.loc[[5, 17, 40], "timestamp"] = np.nan
    with pytest.raises(MtrsUserError) as err:
        FrameLog(_cfg(tmp_path, ev))
    msg = str(err.value)
    assert "time column 'timestamp' is empty at data row 6 (3 of 60 rows" in msg
    assert 'data.time_col = ""' in msg


def test_a_garbage_date_is_named_without_a_pandas_warning(tmp_path: Path) -> None:
    ev = _events()
    ev["timestamp"] = pd.date_range("2024-01-01", periods=len(ev), freq="h").astype(str)
    ev.loc[9, "timestamp"] = "not a date"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(MtrsUserError, match=r"is 'not a date' at data row 10 \(1 of 60"):
            FrameLog(_cfg(tmp_path, ev))
    assert not [w for w in caught if issubclass(w.category, UserWarning)]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("cheap", "non-numeric value 'cheap' at data row 4"),
        (np.inf, "infinite value inf at data row 4"),
    ],
)
def test_a_bad_number_in_the_items_table_names_that_file_and_row(
    tmp_path: Path, value: object, fragment: str
) -> None:
    items = pd.DataFrame({"item_id": range(8), "price": np.arange(8, dtype=object) * 1.5})
    items.loc[3, "price"] = value
    with pytest.raises(MtrsUserError) as err:
        FrameLog(_cfg(tmp_path, _events(), items))
    msg = str(err.value)
    assert msg.startswith(str(tmp_path / "items.csv")) and fragment in msg
    assert "events.csv" not in msg


def test_an_infinite_regression_label_is_an_error(tmp_path: Path) -> None:
    ev = _events()
    ev["stars"] = 3.0
    ev.loc[7, "stars"] = -np.inf
    cfg = _cfg(tmp_path, ev, tasks=[{"name": "stars", "type": "regression", "label": "stars"}])
    with pytest.raises(MtrsUserError, match="task 'stars' label column 'stars' has infinite"):
        FrameLog(cfg)


@pytest.mark.parametrize("weights", ["click=nan", "click=-1", "click=0"])
def test_bad_merge_weights_are_refused(weights: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    cfg = _cfg(tmp_path, _events(200))
    _job_toml(tmp_path, cfg.data.interactions)
    model = tmp_path / "model"
    assert run(["train", str(tmp_path / "job.toml"), "--out", str(model), "--json"]) == 0
    capsys.readouterr()
    code = run(["recommend", str(model), "--user", "1", "--weights", weights])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "merge weights:" in err[0]
    bad = (tmp_path / "job.toml").read_text() + "[recommend]\nweights = { click = -2.0 }\n"
    (tmp_path / "bad.toml").write_text(bad)
    assert run(["train", str(tmp_path / "bad.toml"), "--out", str(tmp_path / "m2")]) == 2
    assert "recommend.weights.click: -2.0 is not a finite number >= 0" in capsys.readouterr().err


def test_one_class_validation_labels_warn_and_keep_the_last_epoch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ev = _events(300)
    ev.loc[ev.index >= 240, "click"] = 0  # the validation and test periods have no click
    cfg = _cfg(tmp_path, ev, split={"method": "temporal", "valid_fraction": 0.1,
                                    "test_fraction": 0.1})  # fmt: skip
    _job_toml(tmp_path, cfg.data.interactions, epochs=3, tail='[split]\nmethod = "temporal"\n')
    model = tmp_path / "model"
    assert run(["train", str(tmp_path / "job.toml"), "--out", str(model)]) == 0
    err = capsys.readouterr().err
    assert "warning: train.early_stop: 'click/auc' is undefined on the validation split" in err
    doc = json.loads((model / "metrics.json").read_text())
    assert doc["best_epoch"] == 3
    assert any("the last epoch (3) is kept" in w for w in doc["warnings"])


def test_embedding_tables_too_large_for_memory_are_refused_before_allocating(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _cfg(tmp_path, _events(100))
    _job_toml(tmp_path, cfg.data.interactions, item_extra="hash_buckets = 100_000_000_000\n")
    out = tmp_path / "model"
    assert run(["train", str(tmp_path / "job.toml"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "features.item_id: the embedding tables need about" in err[0]
    assert "100,000,000,002 rows" in err[0] and not out.exists()


def test_a_streamed_log_names_the_files_row_not_the_chunks(tmp_path: Path) -> None:
    ev = _events(300).astype({"timestamp": float})
    ev.loc[249, "timestamp"] = np.nan  # the 250th data row, in the third chunk of 100
    ev.to_parquet(tmp_path / "events.parquet", index=False)
    cfg = JobConfig.model_validate(
        {
            "data": {
                "interactions": str(tmp_path / "events.parquet"),
                "streaming": "always",
                "chunk_rows": 100,
            },
            "features": [{"name": "item_id", "kind": "categorical", "group": "item"}],
            "tasks": [{"name": "click", "type": "binary", "label": "click"}],
            "train": {"progress": False},
        }
    )
    with pytest.raises(MtrsUserError, match=r"is empty at data row 250 \(1 of 100 rows"):
        prepare(cfg)
