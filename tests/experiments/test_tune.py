"""``mtrs tune`` end to end on the quickstart config: trials, outputs, resume, ranking metric."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mtrs.cli.main import run
from mtrs.config.load import load_config
from mtrs.config.models import JobConfig
from mtrs.datasets.quickstart import write_synth
from mtrs.datasets.synth import SynthSpec
from mtrs.errors import MtrsUserError
from mtrs.experiments.tune import set_path

SPACE = """
[tune]
metric = "click/auc"
seed = 3

[tune.space]
"train.lr" = { low = 0.0005, high = 0.02, log = true }
"model.shared.hidden" = { choices = [[16], [32, 16]] }
"features.clicked_items.max_length" = { low = 3, high = 8, integer = true }
"""


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tune")
    path = write_synth(root / "data", SynthSpec(num_users=120, num_items=40, num_events=4000))
    text = path.read_text().replace("epochs = 4", "epochs = 2")
    path.write_text(text + SPACE)
    return path


def _trials(out: Path) -> list[dict[str, str]]:
    with (out / "trials.csv").open() as f:
        return list(csv.DictReader(f))


def test_tune_runs_writes_a_trainable_best_config_and_resumes(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "study"
    assert run(["tune", str(config), "--trials", "3", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["shared_bottom"]
    assert summary["metric"] == "click/auc" and summary["direction"] == "maximize"
    rows = _trials(out)
    assert len(rows) == 3 and {r["state"] for r in rows} <= {"complete", "pruned"}
    values = [float(r["click/auc"]) for r in rows if r["state"] == "complete"]
    assert summary["best_value"] == pytest.approx(max(values), abs=5e-4)
    assert 0.5 < summary["best_value"] < 1.0
    # Every suggestion lies in its dimension; the list choice came back as a list.
    for r in rows:
        assert 0.0005 <= float(r["train.lr"]) <= 0.02
        assert 3 <= int(r["features.clicked_items.max_length"]) <= 8
    best = load_config(out / "best.toml")
    assert best.model.shared.hidden in ([16], [32, 16])
    assert best.train.lr == pytest.approx(summary["best_params"]["train.lr"])
    assert (out / "history.png").stat().st_size > 0 and (out / "trials.md").is_file()
    # Resuming: the study keeps its 3 trials and runs only the 4th.
    assert run(["tune", str(config), "--trials", "4", "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    again = _trials(out)
    assert len(again) == 4 and again[:3] == rows
    # The best config trains as it is.
    model = tmp_path / "model"
    assert run(["train", str(out / "best.toml"), "--out", str(model), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tasks"]["click"]["auc"] > 0.5


def test_tune_on_a_ranking_metric_fits_the_merge_into_the_best_config(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rank"
    argv = ["tune", str(config), "--trials", "2", "--out", str(out), "--json",
            "--metric", "merged/ndcg@10", "--architectures", "single,shared_bottom"]  # fmt: skip
    # A sibling of the shared config (its data paths are relative), not an edit of it.
    ranked = config.with_name("ranked.toml")
    ranked.write_text(
        config.read_text().replace(
            'metric = "click/auc"', 'metric = "click/auc"\nrelevant = "click"'
        )
    )
    argv[1] = str(ranked)
    assert run(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary) == {"single", "shared_bottom"}
    for arch in summary:
        assert summary[arch]["metric"] == "merged/ndcg@10"
        assert 0 < summary[arch]["best_value"] <= 1
        assert len(_trials(out / arch)) == 2  # the same budget for each architecture
        best = load_config(out / arch / "best.toml")
        assert best.model.architecture == arch and best.recommend.weights
    assert (out / "summary.md").is_file()


def test_set_path_names_the_bad_path_or_value(config: Path) -> None:
    cfg: JobConfig = load_config(config)
    set_path(cfg, "tasks.click.weight", 2.0)
    assert cfg.tasks[0].weight == 2.0
    with pytest.raises(MtrsUserError, match=r"'train\.nope' is not a config path"):
        set_path(cfg, "train.nope", 1)
    with pytest.raises(MtrsUserError, match="no feature named 'ghost'"):
        set_path(cfg, "features.ghost.max_length", 3)
    with pytest.raises(MtrsUserError, match=r"'train\.lr' = -1"):
        set_path(cfg, "train.lr", -1)


def test_a_ranking_metric_without_relevant_column_is_a_clear_error(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "relevant" not in config.read_text()
    code = run(["tune", str(config), "--trials", "1", "--out", str(tmp_path / "o"),
                "--metric", "click/ndcg@10"])  # fmt: skip
    assert code == 2
    assert "tune.relevant" in capsys.readouterr().err


def test_a_metric_option_the_task_lacks_is_a_config_error(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(["tune", str(config), "--trials", "1", "--out", str(tmp_path / "o"),
                "--metric", "click/rmse"])  # fmt: skip
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "Traceback" not in err
    assert f"{config}: tune.metric: task 'click' has no metric 'rmse'" in err
    assert "(its metrics: auc, gauc, logloss)" in err
    assert not (tmp_path / "o").exists()
