"""Fast start (help and config errors without torch), full table headers in pipes, --seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mtrs.cli.main import run
from mtrs.config.models import JobConfig
from mtrs.datasets.quickstart import write_synth
from mtrs.datasets.synth import SynthSpec

HEAVY = (
    "torch",
    "pandas",
    "pyarrow",
    "matplotlib",
    "optuna",
    "sklearn",
    "scipy",
    "onnx",
    "onnxruntime",
)

PROBE = """
import json, sys
from mtrs.cli.main import run
codes = [
    run(["--help"]),
    run(["train", "--help"]),
    run(["tune", "--help"]),
    run(["compare", "--help"]),
    run(["data", "synth", "--help"]),
    run(["export", "--help"]),
    run(["train", sys.argv[1], "--out", sys.argv[2]]),
]
import mtrs
from mtrs import JobConfig, load_config, __version__
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[3].split(",")))
print(json.dumps({"codes": codes, "heavy": heavy}))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("COLUMNS", None)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    return env


def test_help_and_config_errors_import_no_torch_nor_pandas(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[data]\ninteractions = "x.csv"\nbogus = 1\n', encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(bad), str(tmp_path / "m"), ",".join(HEAVY)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["codes"] == [0, 0, 0, 0, 0, 0, 2]
    assert f"{bad}: unknown key 'data.bogus'" in proc.stderr
    assert got["heavy"] == [], f"imported at start-up: {got['heavy']}"


@pytest.fixture(scope="module")
def job_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("startup")
    config = write_synth(out, SynthSpec(num_users=60, num_items=20, num_events=1500))
    text = config.read_text(encoding="utf-8").replace('method = "temporal"', 'method = "random"')
    config.write_text(text, encoding="utf-8")
    return config


def test_piped_metrics_table_keeps_every_column_name(job_config: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mtrs.cli.main",
            "train",
            str(job_config),
            "--out",
            str(tmp_path / "model"),
            "--epochs",
            "1",
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    headers = [
        "click/auc",
        "click/gauc",
        "click/logloss",
        "purchase/gauc",
        "gender/logloss",
        "click_purchase/auc",
        "click_purchase/gauc",
        "click_purchase/logloss",
    ]
    missing = [h for h in headers if h not in proc.stdout]
    assert not missing, f"cut from the piped table: {missing}\n{proc.stdout}"
    assert "…" not in proc.stdout


class _Stop(Exception):
    """Raised by the stand-in job once it has recorded what it was given."""


def _split_of(config: Path, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple:
    from mtrs.data.log import FrameLog

    seen: list[tuple] = []

    def fake_run_job(cfg: JobConfig, **_: object) -> None:
        seeds = (cfg.train.seed, cfg.split.seed, cfg.tune.seed)
        seen.append((seeds, FrameLog(cfg).split.copy()))
        raise _Stop

    monkeypatch.setattr("mtrs.job.run_job", fake_run_job)
    with pytest.raises(_Stop):
        run(["train", str(config), "--out", "unused", *argv])
    return seen[0]


def test_seed_option_sets_every_seed_and_so_the_split(
    job_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeds_a, split_a = _split_of(job_config, ["--seed", "1"], monkeypatch)
    seeds_b, split_b = _split_of(job_config, ["--seed", "1"], monkeypatch)
    seeds_c, split_c = _split_of(job_config, ["--seed", "2"], monkeypatch)
    _, split_default = _split_of(job_config, [], monkeypatch)
    assert seeds_a == seeds_b == (1, 1, 1) and seeds_c == (2, 2, 2)
    assert (split_a == split_b).all(), "the same --seed must give the same split"
    assert (split_a != split_c).mean() > 0.05, "another --seed must give another split"
    assert (split_a != split_default).any()
