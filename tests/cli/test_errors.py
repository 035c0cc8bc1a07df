"""Bad config or data: exit code 2, one clear message naming the culprit, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mtrs.cli.main import run
from mtrs.datasets.quickstart import write_synth
from mtrs.datasets.synth import SynthSpec


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data")
    write_synth(out, SynthSpec(num_users=80, num_items=30, num_events=2000))
    return out


def _config(data_dir: Path, tmp_path: Path, edit: callable) -> Path:  # type: ignore[valid-type]
    text = (data_dir / "mtrs.toml").read_text()
    text = text.replace('"interactions.csv"', f'"{data_dir / "interactions.csv"}"')
    text = text.replace('"users.csv"', f'"{data_dir / "users.csv"}"')
    text = text.replace('"items.csv"', f'"{data_dir / "items.csv"}"')
    path = tmp_path / "job.toml"
    path.write_text(edit(text))
    return path


def _train(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    out = tmp_path / "model"
    code = run(["train", str(config), "--out", str(out), "--epochs", "1"])
    err = capsys.readouterr().err
    assert not out.exists(), "a failed run must not leave an output directory"
    assert "Traceback" not in err
    return code, " ".join(err.split())


CASES = [
    (
        "misspelt key",
        lambda t: t.replace("[model]\n", "[model]\narchitecure = 'mmoe'\n"),
        ["unknown key", "model.architecure"],
    ),
    (
        "missing key",
        lambda t: t.replace('name = "device"\nkind = "categorical"', 'name = "device"'),
        ["missing", "kind"],
    ),
    (
        "missing column",
        lambda t: t.replace('name = "brand"', 'name = "brandx"'),
        ["brandx", "not found"],
    ),
    (
        "label is a feature",
        lambda t: t + '\n[[features]]\nname = "click"\nkind = "numeric"\ngroup = "context"\n',
        ["click", "label may not be used as a feature"],
    ),
    (
        "unknown task type",
        lambda t: t.replace('type = "binary"\nlabel = "click"', 'type = "binry"\nlabel = "click"'),
        ["tasks.0.type"],
    ),
    (
        "unknown architecture",
        lambda t: t.replace('architecture = "shared_bottom"', 'architecture = "nope"'),
        ["model.architecture", "nope"],
    ),
    ("not toml", lambda t: t + "\n[[[", ["not valid TOML"]),
    (
        "early-stop metric the task lacks",
        lambda t: t.replace('early_stop = "click/auc"', 'early_stop = "click/rmse"'),
        ["train.early_stop", "'rmse'", "(its metrics: auc, gauc, logloss)"],
    ),
    (
        "early-stop unknown task",
        lambda t: t.replace('early_stop = "click/auc"', 'early_stop = "clik/auc"'),
        ["train.early_stop", "'clik'", "(tasks: click, purchase, gender, click_purchase)"],
    ),
    (
        "esmm without a funnel",
        lambda t: _without_relations(t).replace(
            'architecture = "shared_bottom"', 'architecture = "esmm"'
        ),
        ["model.architecture: 'esmm' needs a [[relations]] funnel", "parent and child binary"],
    ),
]


def _without_relations(text: str) -> str:
    start = text.index("[[relations]]")
    return text[:start] + text[text.index("[model]") :]


@pytest.mark.parametrize(("name", "edit", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_config_exits_2(
    data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    edit: callable,
    expected: list[str],
) -> None:  # type: ignore[valid-type]
    code, err = _train(_config(data_dir, tmp_path, edit), tmp_path, capsys)
    assert code == 2, err
    for fragment in expected:
        assert fragment in err, f"{name}: {fragment!r} not in {err!r}"
    assert err.count("error:") == 1


def test_wrong_type_names_column_and_row(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = pd.read_csv(data_dir / "items.csv")
    items["price"] = items["price"].astype(object)
    items.loc[3, "price"] = "cheap"
    bad = tmp_path / "items_bad.csv"
    items.to_csv(bad, index=False)
    cfg = _config(data_dir, tmp_path, lambda t: t.replace(str(data_dir / "items.csv"), str(bad)))
    code, err = _train(cfg, tmp_path, capsys)
    assert code == 2
    assert "'price'" in err and "'cheap'" in err and "row" in err


def test_empty_table(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("user_id,item_id,timestamp,click,purchase,hour,device\n")
    cfg = _config(
        data_dir, tmp_path, lambda t: t.replace(str(data_dir / "interactions.csv"), str(empty))
    )
    code, err = _train(cfg, tmp_path, capsys)
    assert code == 2
    assert "empty.csv" in err and "empty" in err


def test_console_script_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mtrs.cli.main",
            "train",
            str(missing),
            "--out",
            str(tmp_path / "m"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "config file not found" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "m").exists()


def test_recommend_bad_request(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["recommend", str(tmp_path / "missing_model"), "--user", "1"])
    assert code == 2
    assert "model directory not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["trian"], "No such command"),
        (["train", "cfg.toml", "--out", "x", "--epochs", "abc"], "--epochs"),
        (["recommend", "model_dir"], "--user"),
        (["train", "cfg.toml", "--out", "x", "--no-such-option"], "--no-such-option"),
    ],
)
def test_usage_errors_exit_2_without_traceback(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Typer's own usage errors (it no longer raises click's classes) give exit 2 and a line."""
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert "Traceback" not in err


def test_user_text_with_brackets_is_printed_literally(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rich markup in user text (``[/x]``) neither crashes the printer nor loses brackets."""
    missing = tmp_path / "[/x]" / "[[tasks]].toml"
    assert run(["train", str(missing), "--out", str(tmp_path / "m")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "[[tasks]].toml: config file not found" in err


def test_architecture_option_esmm_without_a_funnel_exits_2(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(data_dir, tmp_path, _without_relations)
    out = tmp_path / "model"
    code = run(["train", str(config), "--out", str(out), "--architecture", "esmm"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and not out.exists() and "Traceback" not in err
    assert err.count("error:") == 1
    assert "model.architecture: 'esmm' needs a [[relations]] funnel of type 'esmm'" in err


def test_bad_option_value_is_a_config_error(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(data_dir, tmp_path, lambda t: t)
    assert run(["train", str(config), "--out", str(tmp_path / "m"), "--epochs", "0"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{config}: train.epochs:" in err and "Traceback" not in err


@pytest.mark.parametrize("metric", ["ndcg", "auc", "ndgc@10", "recall@0"])
def test_fit_merge_metric_that_is_not_a_ranking_metric_exits_2(
    metric: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["fit-merge", str(tmp_path / "model"), "--relevant", "click", "--metric", metric]
    assert run(argv) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"--metric: '{metric}' is not a ranking metric" in err and "ndcg@<k>" in err
    assert "Traceback" not in err
