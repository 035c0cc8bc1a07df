"""Leftover recognition, the two-rename fallback and atomic file writes (mtrs.outdir)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mtrs import outdir
from mtrs.outdir import MARKER, atomic_path, leftovers, recover, rewrite, staged, write_text


def _marked(path: Path, target: Path, role: str, pid: int) -> Path:
    path.mkdir()
    (path / "model.safetensors").write_bytes(b"x")
    doc = {"target": target.name, "role": role, "pid": pid, "host": socket.gethostname()}
    (path / MARKER).write_text(json.dumps(doc))
    return path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_users_hidden_directories_are_never_leftovers(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    mine = tmp_path / ".model.mtrs-mine"  # mtrs's naming, but no marker and not empty
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    other = tmp_path / ".model.backup"
    other.mkdir()
    (other / MARKER).write_text("{}")
    foreign = _marked(tmp_path / ".model.mtrs-x1", tmp_path / "other", "new", _dead_pid())
    dead = _marked(tmp_path / ".model.mtrs-x2", target, "new", _dead_pid())
    assert leftovers(target) == [dead]
    recover(target)
    assert not dead.exists()
    assert (mine / "notes.txt").read_text() == "mine" and other.is_dir() and foreign.is_dir()


def test_a_leftover_of_a_running_process_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "model"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        busy = _marked(tmp_path / ".model.mtrs-busy", target, "new", sleeper.pid)
        recover(target)
        assert busy.is_dir()
    finally:
        sleeper.kill()
        sleeper.wait()
    recover(target)
    assert not busy.exists()


def test_missing_target_gets_the_moved_aside_model_back(tmp_path: Path) -> None:
    target = tmp_path / "model"
    old = _marked(tmp_path / ".model.mtrs-old", target, "old", _dead_pid())
    new = _marked(tmp_path / ".model.mtrs-new", target, "new", _dead_pid())
    recover(target)
    assert (target / "model.safetensors").read_bytes() == b"x"
    assert not (target / MARKER).exists()
    assert not old.exists() and not new.exists()


def test_two_rename_fallback_replaces_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outdir, "_exchange", lambda a, b: False)
    target = tmp_path / "d"
    for text in ("first", "second"):
        with staged(target) as tmp:
            (tmp / "f.txt").write_text(text)
        assert (target / "f.txt").read_text() == text
        assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
        assert sorted(p.name for p in target.iterdir()) == ["f.txt"]


def test_a_failed_staging_leaves_the_target_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "d"
    with staged(target) as tmp:
        (tmp / "f.txt").write_text("kept")
    with pytest.raises(RuntimeError), staged(target) as tmp:
        (tmp / "f.txt").write_text("lost")
        raise RuntimeError
    assert (target / "f.txt").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_atomic_file_write_keeps_the_old_file_on_error(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    write_text(path, "old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError
    assert path.read_text() == "old"
    write_text(path, "new")
    assert path.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_rewrite_through_a_link_keeps_the_link(tmp_path: Path) -> None:
    real = tmp_path / "real"
    with staged(real) as tmp:
        (tmp / "f.txt").write_text("one")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    with rewrite(link) as tmp:
        (tmp / "f.txt").write_text("two")
    assert link.is_symlink() and (link / "f.txt").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]
