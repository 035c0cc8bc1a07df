"""The commands end to end on small synthetic data: synth → train → evaluate → recommend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtrs.cli.main import run


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    assert (
        run(
            [
                "data",
                "synth",
                "--out",
                str(root / "data"),
                "--users",
                "150",
                "--items",
                "40",
                "--events",
                "6000",
                "--seed",
                "1",
            ]
        )
        == 0
    )
    assert (
        run(
            [
                "train",
                str(root / "data" / "mtrs.toml"),
                "--out",
                str(root / "model"),
                "--epochs",
                "1",
                "--json",
            ]
        )
        == 0
    )
    return root


def test_train_writes_a_complete_model_directory(trained: Path) -> None:
    model = trained / "model"
    names = {p.name for p in model.iterdir()}
    assert {
        "model.safetensors",
        "processor.json",
        "config.toml",
        "metrics.json",
        "manifest.json",
    } <= names
    metrics = json.loads((model / "metrics.json").read_text())
    assert set(metrics["tasks"]) == {"click", "purchase", "gender", "click_purchase"}
    assert 0.4 < metrics["tasks"]["click"]["auc"] < 1.0
    assert metrics["architecture"] == "shared_bottom"
    assert metrics["num_parameters"] > 1000


def test_evaluate_reproduces_training_metrics(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = json.loads((trained / "model" / "metrics.json").read_text())["tasks"]
    capsys.readouterr()
    assert run(["evaluate", str(trained / "model"), "--json"]) == 0
    after = json.loads(capsys.readouterr().out)["tasks"]
    for task, ms in before.items():
        for m, v in ms.items():
            assert after[task][m] == pytest.approx(v, abs=1e-6), f"{task}/{m}"


def test_recommend_json(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert (
        run(
            [
                "recommend",
                str(trained / "model"),
                "--user",
                "3",
                "--k",
                "5",
                "--json",
                "--merge",
                "rrf",
                "--weights",
                "click=1,purchase=0.5",
            ]
        )
        == 0
    )
    rec = json.loads(capsys.readouterr().out)
    assert rec["source"] == "model"
    assert set(rec["lists"]) == {"click", "purchase", "click_purchase"}
    assert all(len(v) == 5 for v in rec["lists"].values())
    assert len(rec["merged"]) == 5
    assert rec["merge"] == {"strategy": "rrf", "weights": {"click": 1.0, "purchase": 0.5}}
    assert 0.0 <= rec["profile"]["gender"] <= 1.0
    scores = [r["score"] for r in rec["merged"]]
    assert scores == sorted(scores, reverse=True)


def test_recommend_table_and_bad_weights(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert run(["recommend", str(trained / "model"), "--user", "3", "--k", "3"]) == 0
    out = capsys.readouterr().out
    assert "merged" in out and "predicted profile" in out
    assert run(["recommend", str(trained / "model"), "--user", "3", "--weights", "clik=1"]) == 2
    assert "clik" in capsys.readouterr().err


QUICKSTART_IDS = Path(__file__).resolve().parents[2] / "configs" / "quickstart-ids.toml"
TINY_LOG = ["--events", "4000", "--users", "120", "--items", "40", "--epochs", "1"]


def test_quickstart_with_a_config_and_architectures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "qs"
    argv = ["quickstart", "--out", str(out), *TINY_LOG, "--config", str(QUICKSTART_IDS)]
    assert run([*argv, "--architectures", "esmm,mmoe"]) == 0
    text = capsys.readouterr().out
    assert "oracle" in text and "esmm" in text and "mmoe" in text and "single" not in text
    assert sorted(p.name for p in (out / "models").iterdir()) == ["esmm", "mmoe"]
    saved = (out / "models" / "esmm" / "config.toml").read_text()
    # The given config's features are trained, on the generated tables.
    assert 'name = "shown_items"' in saved and 'name = "user_id"' in saved
    assert str(out / "data" / "interactions.csv") in saved


@pytest.mark.parametrize("existing", [False, True])
def test_quickstart_with_a_config_that_does_not_fit_leaves_nothing_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], existing: bool
) -> None:
    bad = Path(__file__).resolve().parents[2] / "configs" / "examples" / "ratings.toml"
    out = tmp_path / "qs"
    if existing:
        out.mkdir()  # an empty directory of the user's: kept, and left empty
    assert run(["quickstart", "--out", str(out), *TINY_LOG, "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "data.user_col: column 'userId' not found" in err and "Traceback" not in err
    assert out.exists() == existing
    assert not existing or not any(out.iterdir())


def test_quickstart_rejects_an_unknown_architecture_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "qs"
    assert run(["quickstart", "--out", str(out), *TINY_LOG, "--architectures", "esmm,mmoee"]) == 2
    assert "mmoee" in capsys.readouterr().err
    assert not out.exists()


def test_quickstart_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run(
            [
                "quickstart",
                "--out",
                str(tmp_path),
                "--events",
                "4000",
                "--users",
                "120",
                "--items",
                "40",
                "--epochs",
                "1",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "oracle" in out and "single" in out and "shared_bottom" in out
    html = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64" in html and "oracle" in html
    assert (tmp_path / "models" / "single" / "model.safetensors").is_file()
