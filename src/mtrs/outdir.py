"""Output directories: which ``--out`` may be written, and crash-safe replacement of files.

Three concepts, one implementation each:

* :func:`check_out` — the rule for every ``--out`` (``train``, ``quickstart``, ``compare``,
  ``tune``, ``benchmark``, ``data synth``, ``data example``, ``datasets export``): a missing or
  empty directory is written; a previous output of the same kind (an mtrs model directory:
  ``manifest.json`` with the ``mtrs.model/`` format marker) is replaced only with
  ``--overwrite``; anything else that is not empty (a user's notes, a data directory) is
  refused, as is a file, a symbolic link or a directory that holds the config's data files. A
  refusal is an :class:`~mtrs.errors.MtrsUserError` (one line, exit 2) raised before anything
  is touched.
* :func:`atomic_path` / :func:`write_text` — every file mtrs rewrites in place goes to a
  same-directory temporary first and is then ``os.replace``-d over the old one.
* :func:`staged` / :func:`rewrite` — a directory is built completely in a hidden sibling
  ``.NAME.mtrs-XXXX`` and then swapped in (see :func:`swap_in` for the exact guarantee).
  Leftovers of a killed run carry a marker file (:data:`MARKER`) and are removed by the next
  save to the same directory; loaders never read them.

Only the standard library is imported here, so the CLI can check ``--out`` before it imports
torch or reads data.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import platform
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtrs.errors import MtrsUserError

if TYPE_CHECKING:
    from mtrs.config.models import JobConfig

MODEL_FORMAT = "mtrs.model/1"
"""``manifest.json``'s ``format``: what marks a directory as an mtrs model directory."""

MARKER = ".mtrs-temp"
"""File inside every temporary directory mtrs creates next to a target (never in user data)."""

CHECKPOINTS = "checkpoints"
"""The sub-directory of a model directory that holds an unfinished run's checkpoints."""
CHECKPOINT_MARKER = ".mtrs-checkpoints.json"
"""File inside :data:`CHECKPOINTS` that marks it as mtrs's own."""

_TEMP_INFIX = ".mtrs-"
_PAUSE_ENV = "MTRS_TEST_PAUSE_AT"


@dataclass(frozen=True)
class OutKind:
    """What a command writes into ``--out``, and how a previous output of it is recognised.

    Attributes:
        what: Words for a previous output ("an mtrs model directory").
        signature: Glob patterns; a directory matching any holds a previous output (unused
            for model directories, which are recognised by their manifest).
        resumes: A previous output is continued (``tune``), so no ``--overwrite`` is needed.
    """

    what: str
    signature: tuple[str, ...] = ()
    resumes: bool = False


MODEL = OutKind("an mtrs model directory")
QUICKSTART = OutKind("a previous `mtrs quickstart` output", ("models/*/manifest.json",))
COMPARE = OutKind("a previous `mtrs compare` output", ("compare.json",))
BENCHMARK = OutKind("a previous `mtrs benchmark` output", ("results.json",))
TUNE = OutKind("an `mtrs tune` study", ("study.db", "*/study.db"), resumes=True)
SYNTH = OutKind("a previous `mtrs data synth` output", ("truth.*",))
EXAMPLE = OutKind(
    "a previous `mtrs data example` output", ("ratings.csv", "train.csv", "table.csv")
)
EXPORT = OutKind("a previous `mtrs datasets export` output", ("mtrs.toml",))


def is_model_dir(path: str | Path) -> bool:
    """Whether ``path`` is a directory with an mtrs ``manifest.json`` (format marker)."""
    manifest = Path(path) / "manifest.json"
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and str(doc.get("format", "")).startswith("mtrs.model/")


def _model_files(path: Path) -> set[str]:
    """The names a model directory may hold: its manifest's files, the manifest, a marker."""
    try:
        doc = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        listed = set(dict(doc.get("sha256", {})))
    except (OSError, ValueError, TypeError):
        listed = set()
    extra = {CHECKPOINTS} if has_checkpoints(path) else set()
    return {"manifest.json", MARKER, *listed, *extra}


def has_checkpoints(path: str | Path) -> bool:
    """Whether ``path`` holds an unfinished run's checkpoints (a marked ``checkpoints/``)."""
    c = Path(path) / CHECKPOINTS
    return c.is_dir() and not c.is_symlink() and (c / CHECKPOINT_MARKER).is_file()


def _is_previous(path: Path, kind: OutKind) -> bool:
    if kind is MODEL:
        return is_model_dir(path)
    return any(any(path.glob(pattern)) for pattern in kind.signature)


def _listing(names: Iterable[str], shown: int = 3) -> str:
    names = sorted(names)
    text = ", ".join(names[:shown])
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "")


def data_files(cfg: JobConfig) -> list[Path]:
    """The config's data files (log, users, items), as the config resolved them."""
    d = cfg.data
    return [Path(p) for p in (*d.log_files, d.users, d.items) if p]


def check_out(
    out: str | Path,
    kind: OutKind = MODEL,
    overwrite: bool = False,
    protect: Iterable[str | Path] = (),
    resume: bool = False,
) -> None:
    """Refuse an ``--out`` whose writing would lose data; touches nothing.

    Args:
        out: The directory to write.
        kind: What is written there (:data:`MODEL`, :data:`COMPARE`, …).
        overwrite: Whether a previous output of ``kind`` may be replaced (``--overwrite``).
        protect: Files that must survive (the config's data): ``out`` may be none of them
            and no directory above one.
        resume: An unfinished run's checkpoints in ``out`` are to be continued (``mtrs
            train --resume``); without it (or ``overwrite``, which starts afresh) they are
            refused rather than silently discarded.

    Raises:
        MtrsUserError: ``out`` is a file or a link, holds protected data, is a previous output
            and ``overwrite`` is off, is a model directory that also holds other files, or is
            a non-empty directory of something else.
    """
    p = Path(out)
    if p.is_symlink():
        raise MtrsUserError(f"{p}: is a symbolic link; give --out a real directory")
    if p.exists() and not p.is_dir():
        raise MtrsUserError(f"{p}: exists and is a file, not a directory; choose another --out")
    target = p.resolve()
    for f in protect:
        data = Path(f).resolve()
        if data == target or target in data.parents:
            raise MtrsUserError(
                f"{p}: holds the config's data ({data.name}); it is never replaced, "
                "choose another --out"
            )
    if not p.exists():
        return
    try:
        entries = [e.name for e in p.iterdir()]
    except OSError as err:
        raise MtrsUserError(f"{p}: cannot be read ({err.strerror}); choose another --out") from None
    if kind is MODEL and has_checkpoints(p):
        if not (resume or overwrite):
            raise MtrsUserError(
                f"{p}: holds the checkpoints of an unfinished training run ({CHECKPOINTS}/); "
                "pass --resume to continue it, or --overwrite to start afresh"
            )
        entries = [e for e in entries if e != CHECKPOINTS]
    if not entries:
        return
    if _is_previous(p, kind):
        if kind.resumes:
            return
        if not overwrite:
            raise MtrsUserError(f"{p}: already holds {kind.what}; pass --overwrite to replace it")
        if kind is MODEL:
            extra = set(entries) - _model_files(p)
            if extra:
                raise MtrsUserError(
                    f"{p}: an mtrs model directory that also holds files not part of the model "
                    f"({_listing(extra)}); move them away to replace it"
                )
        return
    raise MtrsUserError(
        f"{p}: not empty and not {kind.what} (holds {_listing(entries)}); "
        "nothing was written, choose a new or empty --out"
    )


# --------------------------------------------------------------------------- atomic files


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path next to ``path`` to write; on success it replaces ``path`` atomically.

    Every file mtrs rewrites goes through here (``os.replace`` of a same-directory temporary),
    so a concurrent reader sees the old file or the new one, never a half-written one. On an
    error the temporary is removed and ``path`` is untouched.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------- crash-safe replace


def pause_point(name: str) -> None:
    """Test hook: with ``MTRS_TEST_PAUSE_AT=name=FILE`` set, create FILE and sleep.

    Crash tests use it to land a ``kill -9`` at a named point; unset, it does nothing. FILE
    holds the pausing process's id. Under torchrun only the first attempt pauses (a restarted
    job runs on), and with ``MTRS_TEST_PAUSE_RANK=R`` only rank R.
    """
    spec = os.environ.get(_PAUSE_ENV, "")
    point, _, flag = spec.partition("=")
    if os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0":
        return
    rank = os.environ.get("MTRS_TEST_PAUSE_RANK")
    if rank is not None and os.environ.get("RANK", "0") != rank:
        return
    if point == name and flag:
        Path(flag).write_text(str(os.getpid()), encoding="utf-8")
        time.sleep(600)


def _write_marker(directory: Path, target: Path, role: str) -> None:
    doc = {
        "mtrs": "temporary directory",
        "target": target.name,
        "role": role,
        "pid": os.getpid(),
        "host": socket.gethostname(),
    }
    (directory / MARKER).write_text(json.dumps(doc), encoding="utf-8")


def _read_marker(directory: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads((directory / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _alive(marker: dict[str, Any]) -> bool:
    """Whether the process that wrote ``marker`` may still be running (then leave it alone)."""
    pid = marker.get("pid")
    if not isinstance(pid, int) or marker.get("host") != socket.gethostname():
        return False
    if pid == os.getpid():
        return False
    if os.name != "posix":
        return True  # no safe liveness probe: keep it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_temp(directory: Path) -> None:
    """Remove a temporary directory, its marker last (a crash leaves it recognisable)."""
    if directory.is_symlink():
        directory.unlink()  # never what a link points to
        return
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            if entry.name == MARKER:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        (directory / MARKER).unlink(missing_ok=True)
        directory.rmdir()


def leftovers(target: str | Path) -> list[Path]:
    """Hidden siblings ``.NAME.mtrs-*`` that mtrs created for ``target`` (marker, or empty)."""
    t = Path(target)
    prefix = f".{t.name}{_TEMP_INFIX}"
    found: list[Path] = []
    if not t.parent.is_dir():
        return found
    for entry in t.parent.iterdir():
        if not entry.name.startswith(prefix) or entry.is_symlink() or not entry.is_dir():
            continue
        marker = _read_marker(entry)
        ours = marker.get("target") == t.name if marker is not None else not any(entry.iterdir())
        if ours:
            found.append(entry)
    return sorted(found)


def recover(target: str | Path) -> None:
    """Repair what a killed save left next to ``target``.

    If ``target`` is missing and a moved-aside previous directory (role ``old``, of a process
    no longer running) exists, it is renamed back to ``target``. Every other leftover of a
    process no longer running is removed; a user's own hidden directory (no marker) never is.
    """
    t = Path(target)
    stale = []
    for d in leftovers(t):
        marker = _read_marker(d)
        if marker is None:
            # An empty directory from just before its marker was written: old ones only.
            if time.time() - d.stat().st_mtime > 60:
                stale.append(d)
        elif not _alive(marker):
            stale.append(d)
    if not os.path.lexists(t):
        olds = [d for d in stale if (_read_marker(d) or {}).get("role") == "old"]
        if olds:
            keep = max(olds, key=lambda d: d.stat().st_mtime)
            with contextlib.suppress(OSError):
                os.rename(keep, t)
                stale.remove(keep)
                (t / MARKER).unlink(missing_ok=True)
    for d in stale:
        with contextlib.suppress(OSError):
            _remove_temp(d)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_SYSCALL_RENAMEAT2 = {"x86_64": 316, "aarch64": 276}


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns:
        False where the system or file system does not offer it (nothing was changed).
    """
    if sys.platform != "linux" or os.environ.get("MTRS_NO_RENAME_EXCHANGE"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return False
    args = (
        ctypes.c_int(_AT_FDCWD),
        ctypes.c_char_p(os.fsencode(a)),
        ctypes.c_int(_AT_FDCWD),
        ctypes.c_char_p(os.fsencode(b)),
        ctypes.c_uint(_RENAME_EXCHANGE),
    )
    fn = getattr(libc, "renameat2", None)
    if fn is not None:
        fn.restype = ctypes.c_int
        result = fn(*args)
    elif platform.machine() in _SYSCALL_RENAMEAT2:
        libc.syscall.restype = ctypes.c_long
        result = libc.syscall(ctypes.c_long(_SYSCALL_RENAMEAT2[platform.machine()]), *args)
    else:
        return False
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


def swap_in(new: Path, target: Path) -> None:
    """Put the complete directory ``new`` (a sibling of ``target``) in place of ``target``.

    Guarantee where Linux ``renameat2(RENAME_EXCHANGE)`` works (ext4, xfs, btrfs, tmpfs, …):
    whatever instant the process is killed at, ``target`` is the previous directory or
    ``new``, each whole — the swap is that one system call; the previous directory then sits
    at ``new``'s hidden name and is removed. A missing ``target`` is a single rename, atomic
    everywhere (``target`` is then absent or ``new``).

    Elsewhere (other systems, file systems without the exchange) two renames are used: the
    previous directory is moved aside to a marked ``.NAME.mtrs-*`` sibling, then ``new`` is
    renamed to ``target``. A kill between the two leaves ``target`` absent (never partial);
    the next save to ``target`` or :func:`~mtrs.artifact.load_model` of it moves the previous
    one back (:func:`recover`).
    """
    if not os.path.lexists(target):
        os.rename(new, target)
        (target / MARKER).unlink(missing_ok=True)
        return
    with contextlib.suppress(OSError):
        shutil.copymode(target, new)
    _write_marker(target, target, "old")
    pause_point("swap:before")
    if _exchange(new, target):
        pause_point("swap:exchanged")
        (target / MARKER).unlink(missing_ok=True)
        _remove_temp(new)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}{_TEMP_INFIX}", dir=target.parent))
    os.rename(target, aside)  # onto the empty directory: replaces it
    pause_point("swap:aside")
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(aside, target)
        raise
    (target / MARKER).unlink(missing_ok=True)
    _remove_temp(aside)


def fsync(path: Path) -> None:
    """Flush a file or directory to disk (best effort where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(directory: Path) -> None:
    """Flush every file under ``directory`` and the directories themselves to disk."""
    for root, _, files in os.walk(directory):
        for name in files:
            fsync(Path(root) / name)
        fsync(Path(root))


@contextlib.contextmanager
def staged(target: str | Path) -> Iterator[Path]:
    """Build a directory in a marked hidden sibling; on success it replaces ``target``.

    Leftovers of killed runs for ``target`` are repaired or removed first (:func:`recover`).
    On an error the partial directory is removed and ``target`` is untouched.

    Yields:
        The empty staging directory to write into.
    """
    t = Path(target)
    t.parent.mkdir(parents=True, exist_ok=True)
    recover(t)
    tmp = Path(tempfile.mkdtemp(prefix=f".{t.name}{_TEMP_INFIX}", dir=t.parent))
    try:
        _write_marker(tmp, t, "new")
        yield tmp
        fsync_tree(tmp)  # the new files are on disk before any rename makes them the target
        pause_point("save:written")
        swap_in(tmp, t)
        fsync(t.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            _remove_temp(tmp)
        raise


@contextlib.contextmanager
def rewrite(directory: str | Path) -> Iterator[Path]:
    """Change files of an existing directory crash-safely: edit a copy, then swap it in.

    Every entry is copied (a user's extra files too), so the body only rewrites what it
    changes; concurrent readers see the old directory or the new one, never a mix of a new
    ``metrics.json`` and an old ``manifest.json``.

    Yields:
        The staging copy to edit.
    """
    d = Path(directory)
    if d.is_symlink():
        d = d.resolve()  # swap the directory the link points to; the link stays as it is
    with staged(d) as tmp:
        for entry in d.iterdir():
            if entry.name == MARKER:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.copytree(entry, tmp / entry.name, symlinks=True)
            else:
                shutil.copy2(entry, tmp / entry.name, follow_symlinks=False)
        yield tmp


__all__ = [
    "BENCHMARK",
    "CHECKPOINTS",
    "CHECKPOINT_MARKER",
    "COMPARE",
    "EXAMPLE",
    "EXPORT",
    "MARKER",
    "MODEL",
    "MODEL_FORMAT",
    "QUICKSTART",
    "SYNTH",
    "TUNE",
    "OutKind",
    "atomic_path",
    "check_out",
    "data_files",
    "fsync",
    "fsync_tree",
    "has_checkpoints",
    "is_model_dir",
    "leftovers",
    "recover",
    "rewrite",
    "staged",
    "swap_in",
    "write_text",
]
