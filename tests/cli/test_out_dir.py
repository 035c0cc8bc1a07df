"""``--out`` never loses data: a user's directory, the data and a model without --overwrite.

Every refusal: exit 2, exactly one line on stderr, no traceback, every file byte-identical.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mtrs.artifact import load_model
from mtrs.cli.main import run
from mtrs.datasets.quickstart import write_synth
from mtrs.datasets.synth import SynthSpec
from mtrs.outdir import MARKER, leftovers


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` (and ``root`` itself) with its bytes (None for directories)."""
    if not root.exists():
        return {}
    out: dict[str, bytes | None] = {".": None if root.is_dir() else root.read_bytes()}
    if root.is_dir():
        for p in sorted(root.rglob("*")):
            out[str(p.relative_to(root))] = None if p.is_dir() else p.read_bytes()
    return out


def siblings(target: Path) -> list[str]:
    """Hidden ``.NAME.*`` entries next to ``target`` (temporaries of a save)."""
    return sorted(p.name for p in target.parent.iterdir() if p.name.startswith(f".{target.name}."))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic log with its config (relative data paths) in one directory."""
    root = tmp_path_factory.mktemp("outdir")
    config = write_synth(root / "synth", SynthSpec(num_users=60, num_items=20, num_events=1500))
    return config


@pytest.fixture(scope="module")
def model(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models") / "model"
    assert run(["train", str(data), "--out", str(out), "--epochs", "1", "--json"]) == 0
    return out


def refused(argv: list[str], capsys: pytest.CaptureFixture[str], *watched: Path) -> str:
    """Run ``argv``; assert exit 2, one stderr line, no traceback, ``watched`` unchanged."""
    before = {str(w): snapshot(w) for w in watched}
    capsys.readouterr()
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for w in watched:
        assert snapshot(w) == before[str(w)], f"{w} changed"
        assert siblings(w) == []
    return lines[0]


@pytest.fixture()
def notes(tmp_path: Path) -> Path:
    d = tmp_path / "mine"
    (d / "sub").mkdir(parents=True)
    (d / "my_notes.txt").write_text("do not lose me\n")
    (d / "sub" / "data.csv").write_text("a,b\n1,2\n")
    return d


def test_train_refuses_a_users_directory(
    data: Path, notes: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = refused(["train", str(data), "--out", str(notes), "--epochs", "1"], capsys, notes)
    assert str(notes) in line and "my_notes.txt" in line and "sub" in line
    assert "not an mtrs model directory" in line
    # --overwrite replaces models only, never a directory of something else.
    argv = ["train", str(data), "--out", str(notes), "--epochs", "1", "--overwrite"]
    assert "my_notes.txt" in refused(argv, capsys, notes)


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_train_never_replaces_the_data_directory(
    data: Path, overwrite: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", str(data), "--out", str(data.parent), "--epochs", "1", *overwrite]
    line = refused(argv, capsys, data.parent)
    assert str(data.parent) in line and "holds the config's data" in line
    # Nor a directory above it.
    argv = ["train", str(data), "--out", str(data.parent.parent), "--epochs", "1", *overwrite]
    assert "holds the config's data" in refused(argv, capsys, data.parent)


def test_data_inside_a_model_directory_is_never_replaced(
    data: Path, model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model directory that also holds the config's data keeps it, even with --overwrite."""
    both = tmp_path / "both"
    shutil.copytree(model, both)
    for name in ("interactions.csv", "users.csv", "items.csv", "mtrs.toml"):
        shutil.copy(data.parent / name, both / name)
    argv = ["train", str(both / "mtrs.toml"), "--out", str(both), "--epochs", "1", "--overwrite"]
    assert "holds the config's data" in refused(argv, capsys, both)


def test_model_directory_needs_overwrite(
    data: Path, model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = refused(["train", str(data), "--out", str(model), "--epochs", "1"], capsys, model)
    assert str(model) in line and "already holds an mtrs model directory" in line
    assert "--overwrite" in line


def test_overwrite_replaces_a_model_directory(
    data: Path, model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "model"
    shutil.copytree(model, target)
    old = json.loads((target / "manifest.json").read_text())["sha256"]
    argv = ["train", str(data), "--out", str(target), "--epochs", "1", "--seed", "7"]
    assert run([*argv, "--overwrite", "--json"]) == 0
    new = json.loads((target / "manifest.json").read_text())["sha256"]
    assert new["model.safetensors"] != old["model.safetensors"]
    assert load_model(target).cfg.train.seed == 7
    assert not (target / MARKER).exists()
    assert siblings(target) == []


def test_model_directory_with_a_users_file_is_not_replaced(
    data: Path, model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "model"
    shutil.copytree(model, target)
    (target / "my_notes.txt").write_text("results of the week\n")
    argv = ["train", str(data), "--out", str(target), "--epochs", "1", "--overwrite"]
    line = refused(argv, capsys, target)
    assert "my_notes.txt" in line and "not part of the model" in line


def test_out_that_is_a_file_is_refused(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "model"
    f.write_text("a file\n")
    for extra in ([], ["--overwrite"]):
        argv = ["train", str(data), "--out", str(f), "--epochs", "1", *extra]
        line = refused(argv, capsys, f)
        assert str(f) in line and "is a file" in line


def test_out_that_is_a_link_is_refused(
    data: Path, model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    link = tmp_path / "link"
    link.symlink_to(model, target_is_directory=True)
    argv = ["train", str(data), "--out", str(link), "--epochs", "1", "--overwrite"]
    assert "symbolic link" in refused(argv, capsys, model)
    assert link.is_symlink()


def test_empty_directory_is_written(data: Path, tmp_path: Path) -> None:
    target = tmp_path / "empty"
    target.mkdir()
    assert run(["train", str(data), "--out", str(target), "--epochs", "1", "--json"]) == 0
    assert load_model(target).cfg.train.epochs == 1


def test_other_commands_refuse_a_users_directory(
    data: Path, notes: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every command that writes an output directory applies the same rule before any work."""
    for argv in (
        ["quickstart", "--out", str(notes), "--events", "1000"],
        ["compare", str(data), "--out", str(notes), "--seeds", "1"],
        ["tune", str(data), "--out", str(notes), "--trials", "1"],
        ["benchmark", "movielens-100k", "--out", str(notes), "--data-dir", str(data.parent)],
        ["data", "synth", "--out", str(notes), "--events", "500"],
        ["data", "example", "ratings", "--out", str(notes)],
        ["datasets", "export", "movielens-100k", "--out", str(notes), "--data-dir", str(notes)],
    ):
        line = refused([*argv, *(["--overwrite"] if argv[0] != "tune" else [])], capsys, notes)
        assert str(notes) in line, argv


def test_previous_outputs_need_overwrite(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    compare = tmp_path / "cmp"
    compare.mkdir()
    (compare / "compare.json").write_text("{}")
    line = refused(["compare", str(data), "--out", str(compare)], capsys, compare)
    assert "previous `mtrs compare` output" in line and "--overwrite" in line
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "results.json").write_text("{}")
    line = refused(["benchmark", "movielens-100k", "--out", str(bench)], capsys, bench)
    assert "--overwrite" in line


def test_data_synth_twice_needs_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "synth"
    argv = ["data", "synth", "--out", str(out), "--events", "500", "--users", "30"]
    assert run(argv) == 0
    assert "previous `mtrs data synth` output" in refused([*argv, "--seed", "4"], capsys, out)
    before = (out / "interactions.csv").read_bytes()
    assert run([*argv, "--seed", "4", "--overwrite"]) == 0
    assert (out / "interactions.csv").read_bytes() != before


def test_console_script_refusal_is_one_line(notes: Path, data: Path) -> None:
    """The installed entry point: the same single line and exit 2 in a real process."""
    proc = subprocess.run(
        [sys.executable, "-m", "mtrs.cli.main", "train", str(data), "--out", str(notes)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "my_notes.txt" in proc.stderr and "Traceback" not in proc.stderr
    assert (notes / "my_notes.txt").read_text() == "do not lose me\n"
    assert leftovers(notes) == []
