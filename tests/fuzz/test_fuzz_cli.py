"""Property-based fuzzing of everything a user can hand the CLI (hypothesis, reproducible).

Generated configs (mutated keys, types and values), data files (missing and extra columns,
wrong types, NaN/inf, empty, duplicated, unicode ids, truncated files), command lines and
tampered model directories. Every case must end in one of two ways:

* success (exit 0) with finite metrics, or
* exit 2 with one ``error:`` line on stderr (a usage error may add the line saying where the
  usage is), no traceback, and the output path untouched.

Anything else — another exit code, an exception escaping ``run`` — is a defect. The seeds
are fixed (``derandomize``) so a failure reproduces; the example counts keep the suite to
about half a minute (``MTRS_FUZZ_SCALE`` multiplies them).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtrs.cli.main import run
from mtrs.datasets.quickstart import write_synth
from mtrs.datasets.synth import SynthSpec

# MTRS_FUZZ_SCALE=10 runs ten times the examples (a deeper search than CI's).
SCALE = int(os.environ.get("MTRS_FUZZ_SCALE", "1"))
FUZZ = settings(
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)

WEIRD_VALUES = st.sampled_from(
    [-1, 0, 1, 2, 10**12, -(10**12), 0.5, -0.5, 1e300, "x", "", "ü∂ 名前", [], [1, "a"], {}, True]
)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic log with its config (one epoch): what every case mutates."""
    root = tmp_path_factory.mktemp("fuzz")
    cfg = write_synth(root / "data", SynthSpec(num_users=40, num_items=20, num_events=1200))
    raw = tomllib.loads(cfg.read_text())
    raw["train"]["epochs"] = 1
    raw["train"]["progress"] = False
    for key in ("interactions", "users", "items"):
        raw["data"][key] = str(root / "data" / raw["data"][key])
    cfg.write_text(tomli_w.dumps(raw))
    return cfg


@pytest.fixture(scope="module")
def model(base: Path) -> Path:
    out = base.parent.parent / "model"
    assert run(["train", str(base), "--out", str(out), "--json"]) == 0
    return out


def _finite(x: Any) -> bool:
    if isinstance(x, dict):
        return all(_finite(v) for v in x.values())
    if isinstance(x, list):
        return all(_finite(v) for v in x)
    if isinstance(x, float):
        return math.isfinite(x)
    return True


def _check(argv: list[str], capsys: pytest.CaptureFixture[str], out: Path | None) -> int:
    """Run ``argv`` and assert one of the two allowed outcomes; returns the exit code."""
    capsys.readouterr()
    code = run(argv)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert "Traceback" not in captured.err, captured.err
    if code == 0:
        if "--json" in argv and captured.out.strip().startswith("{"):
            doc = json.loads(captured.out)
            assert _finite(doc.get("tasks", {})), doc
        return code
    assert code == 2, (argv, code, captured.err)
    errors = [line for line in lines if not line.startswith("warning:")]
    assert errors and errors[0].startswith("error:"), captured.err
    assert len(errors) == 1 or (len(errors) == 2 and errors[1].startswith("Try '")), errors
    if out is not None:
        assert not out.exists(), f"{out} written by a failed run"
    return code


def _train_case(cfg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``mtrs train`` of one generated case into a fresh output path (examples share tmp_path)."""
    out = tmp_path / "out"
    if out.exists():
        shutil.rmtree(out)
    _check(["train", str(cfg), "--out", str(out), "--json"], capsys, out)


def _paths(raw: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Every leaf path of a config document."""
    out: list[tuple[Any, ...]] = []

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, (*path, k))
        elif isinstance(node, list) and node and isinstance(node[0], dict):
            for i, v in enumerate(node):
                walk(v, (*path, i))
        else:
            out.append(path)

    walk(raw, ())
    return out


def _set(raw: dict[str, Any], path: tuple[Any, ...], value: Any, delete: bool) -> None:
    node: Any = raw
    for p in path[:-1]:
        node = node[p]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value


@settings(FUZZ, max_examples=40 * SCALE)
@given(data=st.data())
def test_mutated_configs(
    base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], data: st.DataObject
) -> None:
    raw = tomllib.loads(base.read_text())
    paths = _paths(raw)
    for _ in range(data.draw(st.integers(1, 2), label="mutations")):
        path = data.draw(st.sampled_from(paths), label="path")
        kind = data.draw(st.sampled_from(["value", "delete", "unknown"]), label="kind")
        try:
            if kind == "unknown":
                _set(raw, (*path[:-1], "bogus_key"), 1, delete=False)
            else:
                _set(raw, path, data.draw(WEIRD_VALUES, label="value"), kind == "delete")
        except (KeyError, IndexError, TypeError):
            continue
    cfg = tmp_path / "job.toml"
    cfg.write_text(tomli_w.dumps(raw))
    _train_case(cfg, tmp_path, capsys)


DATA_MUTATIONS = [
    "drop_column",
    "nan",
    "inf",
    "garbage",
    "header_only",
    "truncate",
    "duplicate",
    "unicode_ids",
    "extra_column",
    "empty_file",
]


@settings(FUZZ, max_examples=30 * SCALE)
@given(data=st.data())
def test_mutated_data_files(
    base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], data: st.DataObject
) -> None:
    raw = tomllib.loads(base.read_text())
    table = data.draw(st.sampled_from(["interactions", "users", "items"]), label="table")
    source = Path(raw["data"][table])
    df = pd.read_csv(source)
    column = data.draw(st.sampled_from(list(df.columns)), label="column")
    how = data.draw(st.sampled_from(DATA_MUTATIONS), label="mutation")
    rows = data.draw(st.lists(st.integers(0, len(df) - 1), min_size=1, max_size=5), label="rows")
    target = tmp_path / source.name
    if how == "drop_column":
        df = df.drop(columns=[column])
    elif how in ("nan", "inf", "garbage"):
        df[column] = df[column].astype(object)
        value = {"nan": float("nan"), "inf": float("inf"), "garbage": "??"}[how]
        df.loc[rows, column] = value
    elif how == "duplicate":
        df = pd.concat([df, df.iloc[rows]], ignore_index=True)
    elif how == "unicode_ids":
        df[column] = df[column].astype(str) + "·名"
    elif how == "extra_column":
        df["ünïcode extra"] = 1
    if how == "header_only":
        df.iloc[:0].to_csv(target, index=False)
    elif how == "empty_file":
        target.write_bytes(b"")
    else:
        df.to_csv(target, index=False)
    if how == "truncate":
        text = target.read_bytes()
        cut = data.draw(st.integers(1, len(text) - 1), label="cut")
        target.write_bytes(text[:cut])
    raw["data"][table] = str(target)
    cfg = tmp_path / "job.toml"
    cfg.write_text(tomli_w.dumps(raw))
    _train_case(cfg, tmp_path, capsys)


TOKENS = st.sampled_from(
    [
        "train", "evaluate", "recommend", "predict", "compare", "tune", "fit-merge", "data",
        "synth", "example", "datasets", "fetch", "export", "benchmark", "quickstart", "trian",
        "--out", "--user", "--k", "--epochs", "--seed", "--weights", "--merge", "--json",
        "--trials", "--candidates", "--architecture", "--help-me", "-x", "0", "-3", "ten",
        "nan", "click=nan", "click=1,purchase=-1", "rrf", "movielens-100k", "MODEL", "CONFIG",
        "ü", "",
    ]
)  # fmt: skip


@settings(FUZZ, max_examples=80 * SCALE)
@given(tokens=st.lists(TOKENS, min_size=1, max_size=6))
def test_generated_command_lines(
    base: Path,
    model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tokens: list[str],
) -> None:
    # Long jobs (downloads, benchmarks, searches, 100k-event logs) are not what this is about.
    if any(t in tokens for t in ("quickstart", "benchmark", "compare", "tune", "fetch", "synth")):
        return
    monkeypatch.chdir(tmp_path)
    argv = [str(model) if t == "MODEL" else str(base) if t == "CONFIG" else t for t in tokens]
    # Whatever a generated command would write goes to a fresh path, never the shared model.
    out = tmp_path / f"o{len(list(tmp_path.iterdir()))}"
    for i, a in enumerate(argv):
        if a == "--out":
            argv[i + 1 : i + 2] = [str(out)]
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    _check(argv, capsys, None)
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before


TAMPERS = ["flip_byte", "truncate", "delete", "empty", "json_key"]


@settings(FUZZ, max_examples=30 * SCALE)
@given(data=st.data())
def test_tampered_model_directories(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], data: st.DataObject
) -> None:
    copy = tmp_path / "m"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(model, copy)
    files = sorted(p.name for p in copy.iterdir())
    name = data.draw(st.sampled_from(files), label="file")
    how = data.draw(st.sampled_from(TAMPERS), label="tamper")
    path = copy / name
    blob = path.read_bytes()
    if how == "flip_byte" and blob:
        i = data.draw(st.integers(0, len(blob) - 1), label="byte")
        path.write_bytes(blob[:i] + bytes([blob[i] ^ 0x5A]) + blob[i + 1 :])
    elif how == "truncate":
        path.write_bytes(blob[: len(blob) // 2])
    elif how == "delete":
        path.unlink()
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "json_key" and name.endswith(".json"):
        doc = json.loads(blob)
        if isinstance(doc, dict) and doc:
            doc.pop(sorted(doc)[0])
        path.write_text(json.dumps(doc))
    command = data.draw(st.sampled_from(["recommend", "evaluate"]), label="command")
    argv = (
        ["recommend", str(copy), "--user", "1"]
        if command == "recommend"
        else ["evaluate", str(copy)]
    )
    before = {p.name: p.read_bytes() for p in copy.iterdir()}
    code = _check(argv, capsys, None)
    if code == 2:
        after = {p.name: p.read_bytes() for p in copy.iterdir()}
        assert after == before, "a refused model directory was modified"
